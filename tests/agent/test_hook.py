"""The login hook: systemd user units and a LaunchAgent written under --root, never activated
there, and removed again by uninstall."""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess
import sys
from pathlib import Path

from tests.agent.support import run, snapshot

UNITS = "home/dev/.config/systemd/user"
PLIST = "home/dev/Library/LaunchAgents/com.policyhub.agent.plist"


def _unit_value(text: str, key: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"{key}=")]
    return line.partition("=")[2]


def test_install_on_linux_writes_a_user_service_and_timer_under_the_root(root: Path) -> None:
    result = run(root, "install", "--platform", "linux", "--interval", "900")
    assert result.code == 0, result.err
    service = (root / UNITS / "policyhub-agent.service").read_text()
    timer = (root / UNITS / "policyhub-agent.timer").read_text()
    assert _unit_value(service, "Type") == "oneshot"
    assert shlex.split(_unit_value(service, "ExecStart")) == [
        sys.executable,
        "-m",
        "policyhub_agent",
        "--root",
        str(root),
        "sync",
        "--jitter",
        "60",
    ]
    assert _unit_value(service, "WantedBy") == "default.target"
    assert _unit_value(timer, "OnStartupSec") == "30s"
    assert _unit_value(timer, "OnUnitActiveSec") == "900s"
    assert _unit_value(timer, "RandomizedDelaySec") == "90s"
    assert _unit_value(timer, "Persistent") == "true"
    assert _unit_value(timer, "WantedBy") == "timers.target"
    assert "would run `systemctl --user daemon-reload`" in result.out
    assert (
        "would run `systemctl --user enable --now policyhub-agent.timer policyhub-agent.service`"
        in result.out
    )


def test_a_root_with_spaces_and_percent_signs_is_quoted_for_systemd(root: Path) -> None:
    spaced = root / "my root 100%"
    spaced.mkdir()
    assert run(spaced, "install", "--platform", "linux").code == 0
    exec_start = _unit_value((spaced / UNITS / "policyhub-agent.service").read_text(), "ExecStart")
    assert "100%%" in exec_start  # a lone % would be a systemd specifier
    assert shlex.split(exec_start.replace("%%", "%"))[3:5] == ["--root", str(spaced)]


def test_install_on_macos_writes_a_launch_agent_under_the_root(root: Path) -> None:
    result = run(root, "install", "--platform", "macos", "--interval", "7200")
    assert result.code == 0, result.err
    agent = plistlib.loads((root / PLIST).read_bytes())
    assert agent["Label"] == "com.policyhub.agent"
    assert agent["ProgramArguments"] == [
        sys.executable,
        "-m",
        "policyhub_agent",
        "--root",
        str(root),
        "sync",
        "--jitter",
        "60",
    ]
    assert (agent["RunAtLoad"], agent["StartInterval"]) == (True, 7200)
    assert f"would run `launchctl load -w {root / PLIST}`" in result.out


def test_uninstall_removes_the_hooks_and_every_directory_install_made(root: Path) -> None:
    (root / "home" / "dev").mkdir(parents=True)
    before = snapshot(root)
    assert run(root, "install", "--platform", "linux").code == 0
    assert run(root, "install", "--platform", "macos").code == 0
    result = run(root, "uninstall")
    assert result.code == 0, result.err
    assert f"removed {root / PLIST}" in result.out
    assert snapshot(root) == before


def test_under_root_systemctl_and_launchctl_are_never_called(root: Path, tmp_path: Path) -> None:
    bin_dir, marker = tmp_path / "bin", tmp_path / "called"
    bin_dir.mkdir()
    for tool in ("systemctl", "launchctl"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{marker}"\n')
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    # The stand-ins work: had the agent called one, the marker would exist.
    subprocess.run(["systemctl", "--version"], env=env, check=True)
    assert marker.read_text() == "systemctl --version\n"
    marker.unlink()
    agent = [sys.executable, "-m", "policyhub_agent", "--root", str(root)]
    for args in (
        ["install", "--platform", "linux"],
        ["install", "--platform", "macos"],
        ["uninstall"],
    ):
        done = subprocess.run([*agent, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "would run" in done.stdout
    assert not marker.exists()
