"""Facts about this machine that the server is told: host name, OS and Codex version."""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import stat
import subprocess

CODEX_VERSION_RE = re.compile(r"codex-cli (\d+\.\d+\.\d+(?:[-+.][0-9A-Za-z.+-]*)?)")
MAX_CODEX_VERSION = 64
MAX_OS = 128


def hostname() -> str:
    return socket.gethostname()[:255]


def os_description() -> str:
    """E.g. 'Linux-6.1.0-x86_64-with-glibc2.36' or 'macOS-14.5-arm64-arm-64bit'."""
    return platform.platform()[:MAX_OS]


def _safe_to_run(executable: str) -> bool:
    """As root, run only a binary no one else could have changed: owned by root, not writable by
    group or others (npm and Homebrew installs are often the user's to write)."""
    if os.geteuid() != 0:
        return True
    try:
        info = os.stat(executable)
    except OSError:
        return False
    return info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def codex_version(codex_bin: str | None) -> str | None:
    """X.Y.Z from `codex --version` ('codex-cli X.Y.Z'); None when Codex is not found or silent."""
    executable = shutil.which(codex_bin or "codex")
    if executable is None or not _safe_to_run(executable):
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
