"""The login hook that runs `sync` at login and periodically: systemd user units on Linux, a
LaunchAgent on macOS."""

from __future__ import annotations

import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from policyhub_agent import files, state
from policyhub_agent.errors import UsageError
from policyhub_agent.sync import Output, ensure_state_dir

SERVICE = "policyhub-agent.service"
TIMER = "policyhub-agent.timer"
LABEL = "com.policyhub.agent"
SYNC_JITTER = 60
MIN_INTERVAL = 60
HEADER = "# Written by `policyhub-agent install`; `policyhub-agent uninstall` removes it.\n"
_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9/._+=:@,-]+")


def sync_command(layout: files.Layout) -> list[str]:
    """This interpreter running the agent's sync, with the same root and Codex home."""
    command = [sys.executable, "-m", "policyhub_agent"]
    if layout.rerooted:
        command += ["--root", str(layout.root)]
    if layout.codex_home_override is not None:
        command += ["--codex-home", str(layout.codex_home_override)]
    return [*command, "sync", "--jitter", str(SYNC_JITTER)]


def _systemd_quote(arg: str) -> str:
    """One ExecStart argument: quoted when needed, specifiers (%) and variables ($) escaped."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.fullmatch(arg):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(layout: files.Layout, interval: int) -> dict[str, str]:
    """The service (one sync; also run at login) and the timer that repeats it."""
    exec_start = " ".join(_systemd_quote(arg) for arg in sync_command(layout))
    service = (
        f"{HEADER}[Unit]\n"
        "Description=PolicyHub agent: pull this team's signed Codex policy\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={exec_start}\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )
    # Spread a fleet's requests; sync adds up to a minute of its own jitter on top.
    delay = max(1, min(interval // 10, 600))
    timer = (
        f"{HEADER}[Unit]\n"
        f"Description=Run the PolicyHub agent every {interval} seconds\n\n"
        "[Timer]\n"
        "OnStartupSec=30s\n"
        f"OnUnitActiveSec={interval}s\n"
        f"RandomizedDelaySec={delay}s\n"
        "Persistent=true\n"
        f"Unit={SERVICE}\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {SERVICE: service, TIMER: timer}


def launchd_plist(layout: files.Layout, interval: int) -> bytes:
    """The LaunchAgent: sync at load (login) and every `interval` seconds."""
    return plistlib.dumps(
        {
            "Label": LABEL,
            "ProgramArguments": sync_command(layout),
            "RunAtLoad": True,
            "StartInterval": interval,
            "ProcessType": "Background",
        }
    )


def unit_dir(layout: files.Layout) -> Path:
    return layout.home / ".config" / "systemd" / "user"


def plist_path(layout: files.Layout) -> Path:
    return layout.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def _run(command: list[str], layout: files.Layout, out: Output) -> None:
    """Run a service-manager command, except under --root (never touch the real machine's)."""
    shown = shlex.join(command)
    if layout.rerooted:
        out.info(f"re-rooted under {layout.root}: would run `{shown}`")
        return
    if shutil.which(command[0]) is None:
        out.info(f"{command[0]} not found: run `{shown}` yourself")
        return
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        out.warn(f"warning: `{shown}` failed: {exc}")
        return
    if result.returncode != 0:
        reason = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        out.warn(f"warning: `{shown}` failed: {reason}")
    else:
        out.info(f"ran `{shown}`")


def hook_files(layout: files.Layout, platform: str, interval: int) -> dict[Path, bytes]:
    """The hook's files for `platform`, by path."""
    if platform == "linux":
        directory = unit_dir(layout)
        units = systemd_units(layout, interval)
        return {directory / name: text.encode() for name, text in units.items()}
    return {plist_path(layout): launchd_plist(layout, interval)}


def install(layout: files.Layout, platform: str, interval: int, out: Output) -> None:
    """`install`: write the hook for `platform` and activate it (not under --root)."""
    if interval < MIN_INTERVAL:
        raise UsageError(f"--interval must be at least {MIN_INTERVAL} seconds")
    record = state.load_hook(layout.hook_file) or state.HookRecord(platform, [], [])
    created: list[str] = []
    written: list[str] = []
    try:
        ensure_state_dir(layout, created)
        for path, data in hook_files(layout, platform, interval).items():
            files.ensure_dir(path.parent, created)
            files.write_atomic(path, data)
            written.append(str(path))
            out.info(f"wrote {path}")
    finally:
        # Record even a partial install, so uninstall removes exactly what was made.
        if layout.state_dir.is_dir():
            record.platform = platform
            record.created_dirs += created
            record.files = sorted(set(record.files) | set(written))
            state.save_hook(layout.hook_file, record)
    if platform == "linux":
        _run(["systemctl", "--user", "daemon-reload"], layout, out)
        _run(["systemctl", "--user", "enable", "--now", TIMER, SERVICE], layout, out)
    else:
        # Reload so a changed interval takes effect; unloading what is not loaded is harmless.
        if not layout.rerooted and shutil.which("launchctl"):
            subprocess.run(["launchctl", "unload", written[0]], capture_output=True, check=False)
        _run(["launchctl", "load", "-w", written[0]], layout, out)


def uninstall(layout: files.Layout, out: Output) -> list[str]:
    """Deactivate and remove the hook files `install` wrote; returns the directories it made."""
    record = state.load_hook(layout.hook_file)
    if record is None:
        return []
    units = [Path(p) for p in record.files if Path(p).name in (SERVICE, TIMER)]
    plists = [Path(p) for p in record.files if Path(p).name == f"{LABEL}.plist"]
    if units:
        _run(["systemctl", "--user", "disable", "--now", TIMER, SERVICE], layout, out)
    for plist in plists:
        _run(["launchctl", "unload", "-w", str(plist)], layout, out)
    for path in units + plists:
        if path.exists():
            path.unlink()
            out.info(f"removed {path}")
    if units:
        _run(["systemctl", "--user", "daemon-reload"], layout, out)
    return record.created_dirs
