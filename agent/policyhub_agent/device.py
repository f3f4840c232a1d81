"""Facts about this machine that the server is told: host name, OS and Codex version."""

from __future__ import annotations

import platform
import re
import shutil
import socket
import subprocess

CODEX_VERSION_RE = re.compile(r"codex-cli (\d+\.\d+\.\d+(?:[-+.][0-9A-Za-z.+-]*)?)")
MAX_CODEX_VERSION = 64
MAX_OS = 128


def hostname() -> str:
    return socket.gethostname()[:255]


def os_description() -> str:
    """E.g. 'Linux-6.1.0-x86_64-with-glibc2.36' or 'macOS-14.5-arm64-arm-64bit'."""
    return platform.platform()[:MAX_OS]


def codex_version(codex_bin: str | None) -> str | None:
    """X.Y.Z from `codex --version` ('codex-cli X.Y.Z'); None when Codex is not found or silent."""
    executable = shutil.which(codex_bin or "codex")
    if executable is None:
        return None
    try:
        result = subprocess.run(
            [executable, "--version"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = CODEX_VERSION_RE.search(result.stdout)
    return match.group(1)[:MAX_CODEX_VERSION] if match else None
