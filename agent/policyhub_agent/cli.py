"""The `policyhub-agent` command line: parse, run one command, map failures to exit codes."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from policyhub_agent import __version__, files, hook, state, sync
from policyhub_agent.errors import AgentError, NotEnrolled, UsageError
from policyhub_agent.sync import Output

# Belt and braces: whatever a message says, a device credential (or its fetch credential) never
# reaches the terminal.
_CREDENTIAL = re.compile(r"(ph[df]_)[A-Za-z0-9._~-]+")


def _redact(text: str) -> str:
    return _CREDENTIAL.sub(r"\1<redacted>", text)


def _printable(text: str) -> str:
    """Server-supplied text as the terminal may show it: no escape sequences, no lone
    surrogates (which would make print raise)."""
    return (
        "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)
        .encode("utf-8", "replace")
        .decode("utf-8")
    )


def _print(text: str) -> None:
    print(_printable(_redact(text)), flush=True)


def _print_err(text: str) -> None:
    print(_printable(_redact(text)), file=sys.stderr, flush=True)


def _non_negative(value: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError("must be a finite number of seconds, not negative")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policyhub-agent",
        description="Pull this device's signed Codex policy from PolicyHub and keep it in place.",
    )
    parser.add_argument("--version", action="version", version=f"policyhub-agent {__version__}")
    parser.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="treat DIR as / for every path the agent reads or writes (default: /)",
    )
    parser.add_argument(
        "--codex-home",
        metavar="DIR",
        help="where Codex reads profile files (default: $CODEX_HOME or ~/.codex, under --root)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enroll = commands.add_parser("enroll", help="enrol this device with a token, then sync")
    enroll.add_argument("--server", required=True, metavar="URL", help="PolicyHub base URL")
    enroll.add_argument(
        "--token", required=True, metavar="T", help="enrolment token ('-' reads it from stdin)"
    )
    enroll.add_argument("--ca-bundle", metavar="FILE", help="PEM CA certificates to trust")
    enroll.add_argument(
        "--no-native-channel",
        dest="native_channel",
        action="store_false",
        help="do not point Codex's own config-server channel at PolicyHub",
    )
    enroll.add_argument("--codex-bin", metavar="PATH", help="the Codex executable (default: codex)")

    sync_parser = commands.add_parser("sync", help="fetch, verify and apply the current release")
    sync_parser.add_argument(
        "--jitter",
        type=_non_negative,
        default=0.0,
        metavar="SECONDS",
        help="first sleep a random time up to SECONDS",
    )

    status = commands.add_parser("status", help="show the enrolment and the last sync")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    install = commands.add_parser("install", help="run sync at login and periodically")
    install.add_argument(
        "--interval",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="time between syncs (default: 3600)",
    )
    install.add_argument(
        "--platform", choices=files.PLATFORMS, help="write this platform's hook (default: this one)"
    )

    commands.add_parser("uninstall", help="remove the hook, every file the agent wrote, its state")
    return parser


def build_layout(args: argparse.Namespace) -> files.Layout:
    root = Path(os.path.abspath(args.root))
    if not root.is_dir():
        raise UsageError(f"--root {root} is not a directory")
    override = Path(os.path.abspath(args.codex_home)) if args.codex_home else None
    return files.Layout(root=root, platform=files.current_platform(), codex_home_override=override)


def cmd_enroll(args: argparse.Namespace, layout: files.Layout, out: Output) -> int:
    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    out.info(
        sync.enroll(
            layout,
            server=args.server,
            token=token,
            ca_bundle=args.ca_bundle,
            native=args.native_channel,
            codex_bin=args.codex_bin,
            out=out,
        )
    )
    return 0


def cmd_sync(args: argparse.Namespace, layout: files.Layout, out: Output) -> int:
    out.info(sync.sync(layout, args.jitter, out))
    return 0


def cmd_status(args: argparse.Namespace, layout: files.Layout, out: Output) -> int:
    current = state.load(layout.state_file)
    if current is None:
        raise NotEnrolled()
    record = state.load_hook(layout.hook_file)
    native = current.native_channel and current.server.startswith("https://")
    if current.native_written is not None:
        native = current.native_written  # what the last sync did for this machine's Codex
    report = {
        "server": current.server,
        "organization": current.organization,
        "team": current.team,
        "device_id": current.device_id,
        "applied_revision": current.applied_revision,
        "applied_signed_at": current.applied_signed_at,
        "last_sync": current.last_sync,
        "last_attempt": current.last_attempt,
        "last_error": current.last_error,
        "files": current.written,
        "codex_home": current.codex_home,
        "native_channel": native,
        "pinned_keys": sorted(current.keys),
        "revoked_keys": sorted(current.revoked_keys),
        "login_hook": record.platform if record and record.files else None,
        "warnings": current.warnings,
    }
    if args.json:
        out.info(json.dumps(report, indent=2))
        return 0
    never = "never"
    lines = [
        f"server:           {current.server}",
        f"organisation:     {current.organization}",
        f"team:             {current.team}",
        f"device id:        {current.device_id}",
        f"applied revision: {current.applied_revision or 'none'}"
        + (f" (signed {current.applied_signed_at})" if current.applied_signed_at else ""),
        f"last sync:        {current.last_sync or never}",
        f"last attempt:     {current.last_attempt or never}",
        f"last error:       {current.last_error or 'none'}",
        f"native channel:   {'on' if native else 'off'}",
        f"login hook:       {report['login_hook'] or 'not installed'}",
        *current.warnings,
        "files written:" + ("" if current.written else " none"),
        *(f"  {path}" for path in current.written),
    ]
    out.info("\n".join(lines))
    return 0


def cmd_install(args: argparse.Namespace, layout: files.Layout, out: Output) -> int:
    hook.install(layout, args.platform or layout.platform, args.interval, out)
    return 0


def cmd_uninstall(args: argparse.Namespace, layout: files.Layout, out: Output) -> int:
    had_state = layout.state_file.exists() or layout.hook_file.exists()
    created = hook.uninstall(layout, out)
    if layout.state_dir.is_dir():
        with files.locked(layout.lock_file):
            created += sync.forget(layout, state.load(layout.state_file), out)
    files.remove_dirs(created)
    out.info("uninstalled" if had_state else "nothing to uninstall: the agent has no state here")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, files.Layout, Output], int]] = {
    "enroll": cmd_enroll,
    "sync": cmd_sync,
    "status": cmd_status,
    "install": cmd_install,
    "uninstall": cmd_uninstall,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 success, 1 failure, 2 usage error or not enrolled."""
    args = build_parser().parse_args(argv)
    out = Output(info=_print, warn=_print_err)
    try:
        return COMMANDS[args.command](args, build_layout(args), out)
    except AgentError as exc:
        _print_err(f"policyhub-agent: {' '.join(str(exc).split())}")
        return exc.exit_code
    except OSError as exc:  # a file system refusal the modules did not word themselves
        where = f" {exc.filename}" if exc.filename else ""
        _print_err(f"policyhub-agent: cannot access{where}: {exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        _print_err("policyhub-agent: interrupted")
        return 130
