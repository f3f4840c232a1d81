"""Run rendered Codex file sets through the real Codex CLI, offline.

Every run gets a throw-away work dir holding a fresh ``CODEX_HOME`` (profile files and an optional
user ``config.toml``) and the upper dir of a private overlay of ``/etc`` (``requirements.toml``,
``config.toml``, ``managed_config.toml``). Codex runs inside ``unshare -mn``: the overlay exists
only in that mount namespace, and the empty network namespace keeps every request on the host
(docs/codex.md, "Checking files with the real binary"); needs root (or user namespaces).

Runs share no state, so callers may run several at once from a thread pool.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.codex_versions import SUITE_VERSIONS, capabilities

# The binary used unless a test names another: the newest release the suite installs.
DEFAULT_VERSION = SUITE_VERSIONS[-1]
REPO_ROOT = Path(__file__).resolve().parents[2]
BINARY_ROOT = REPO_ROOT / ".codex-bin"

REQUIREMENTS_FILE = "requirements.toml"
SYSTEM_CONFIG_FILE = "config.toml"
MANAGED_CONFIG_FILE = "managed_config.toml"
PROFILES_DIR = "profiles"
PROFILE_SUFFIX = ".config.toml"

STARTUP_ARGS = ("app-server", "--print-startup-config", "--strict-config")
STARTUP_TIMEOUT = 30.0
SESSION_DEADLINE = 25.0
# Warnings (fallbacks, ignored settings) follow the header within ~0.1 s; 1.5 s leaves headroom
# on a loaded CI machine without making every session check slow.
SESSION_GRACE = 1.5
HEADER_RULE = "--------"

# /tmp makes Codex print a warning about PATH aliases; /var/tmp does not. Both work.
_WORK_ROOT_CANDIDATES = (Path("/var/tmp"), Path(tempfile.gettempdir()))

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_FALLBACK_MARKERS = (
    "is disallowed by requirements; falling back",
    "is overridden by the required value",
)
# `codex exec` always runs with approval_policy = never, whatever the config says, so under
# requirements that exclude "never" it warns even for a config that asks for an allowed value.
_EXEC_FORCED_APPROVAL = re.compile(
    r"Configured value for `approval_policy` is disallowed by requirements;.*`Never` is not in"
)
# 0.169.0 reads "on-failure" as "on-request", in config and in requirements alike.
_APPROVAL_ALIASES = {"on-failure": "on-request"}
_IGNORED_SETTING = re.compile(r"^\s+\S.*: `[^`]+` is ignored\.$")
_CONFIG_ERROR = re.compile(r"^(Error\b|error:)")
_BACKTRACE = re.compile(r"^\s+\d+: <unknown>$|^Stack backtrace:$")


class CodexBinaryMissing(RuntimeError):
    """The project-local Codex install for a version is absent."""


class FileSetError(ValueError):
    """The given path is not a rendered file set."""


def codex_install_dir(version: str = DEFAULT_VERSION) -> Path:
    """Folder that `make codex` installs `@openai/codex@<version>` into."""
    return BINARY_ROOT / version


def codex_binary(version: str = DEFAULT_VERSION) -> Path:
    """Path of the project-local Codex CLI for ``version``; raises if it is not installed."""
    binary = codex_install_dir(version) / "node_modules" / ".bin" / "codex"
    if not binary.exists():
        raise CodexBinaryMissing(
            f"Codex CLI {version} is not installed at {binary}. Run `make codex` (npm install of "
            f"@openai/codex@{version} into {codex_install_dir(version)})."
        )
    return binary


def profile_names(file_set: Path) -> list[str]:
    """Names of the profiles: ``file_set/profiles/<name>.config.toml`` files (Codex 0.134 and
    later) or ``[profiles.<name>]`` tables of config.toml (before 0.134), sorted."""
    folder = file_set / PROFILES_DIR
    if folder.is_dir():
        return sorted(
            path.name.removesuffix(PROFILE_SUFFIX)
            for path in folder.iterdir()
            if path.is_file() and path.name.endswith(PROFILE_SUFFIX)
        )
    config = file_set / SYSTEM_CONFIG_FILE
    try:
        tables = tomllib.loads(config.read_text(encoding="utf-8")).get("profiles", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []
    return sorted(tables) if isinstance(tables, dict) else []


# --- running Codex -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodexRun:
    """Outcome of one Codex invocation."""

    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False


@dataclass(frozen=True)
class _Sandbox:
    work: Path
    env: dict[str, str]
    command_prefix: tuple[str, ...]


def _work_root() -> Path:
    for candidate in _WORK_ROOT_CANDIDATES:
        if candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return Path(tempfile.gettempdir())


@dataclass(frozen=True)
class Machine:
    """Where Codex runs when it is not alone: a network namespace it shares with servers (instead
    of an empty one), a CODEX_HOME that outlives the run (Codex caches fetched bundles there),
    and extra environment such as CODEX_CA_CERTIFICATE."""

    netns: str | None = None
    codex_home: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def _sandbox(
    file_set: Path,
    *,
    version: str,
    timeout: float,
    user_config: Path | None,
    machine: Machine | None = None,
) -> Iterator[_Sandbox]:
    """Lay out a private CODEX_HOME and /etc overlay for one run; remove it afterwards."""
    if not file_set.is_dir():
        raise FileSetError(f"{file_set} is not a directory")
    machine = machine or Machine()
    binary = codex_binary(version)
    work = Path(tempfile.mkdtemp(prefix="policyhub-codex-", dir=_work_root()))
    try:
        home = machine.codex_home or work / "home"
        upper = work / "upper"
        overlay_work = work / "overlay-work"
        project = work / "project"
        home.mkdir(parents=True, exist_ok=True)
        for folder in (upper / "codex", overlay_work, project):
            folder.mkdir(parents=True)
        for name in (REQUIREMENTS_FILE, SYSTEM_CONFIG_FILE, MANAGED_CONFIG_FILE):
            if (file_set / name).is_file():
                shutil.copyfile(file_set / name, upper / "codex" / name)
        profiles = file_set / PROFILES_DIR
        for name in profile_names(file_set) if profiles.is_dir() else ():
            profile_file = f"{name}{PROFILE_SUFFIX}"
            shutil.copyfile(profiles / profile_file, home / profile_file)
        if user_config is not None:
            shutil.copyfile(user_config, home / "config.toml")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(work),
            "CODEX_HOME": str(home),
            "LANG": "C.UTF-8",
            **machine.env,
        }
        # Paths travel as positional parameters, so no shell quoting is involved. mkdtemp names
        # contain no commas, which the overlay option string could not carry.
        script = (
            "mount --make-rprivate / && "
            'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc && '
            'cd "$3" && shift 3 && exec "$@"'
        )
        # In a named namespace Codex reaches the servers started there; otherwise nothing.
        network = ("ip", "netns", "exec", machine.netns) if machine.netns else ()
        prefix = (
            *network,
            "unshare",
            "--mount",
            *(() if machine.netns else ("--net",)),
            # A PID namespace: whatever Codex starts (MCP servers, helpers) dies with it.
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "bash",
            "-c",
            script,
            "policyhub-codex",
            str(upper),
            str(overlay_work),
            str(project),
            "timeout",
            "--kill-after=2",
            f"{timeout:g}",
            str(binary),
        )
        yield _Sandbox(work=work, env=env, command_prefix=prefix)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill unshare, timeout, the node wrapper and the Codex binary (one process group)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def run_codex(
    file_set: Path,
    args: Sequence[str],
    *,
    version: str = DEFAULT_VERSION,
    timeout: float,
    user_config: Path | None = None,
    machine: Machine | None = None,
    stdin: bytes = b"",
) -> CodexRun:
    """Run ``codex ARGS`` against ``file_set`` offline (``stdin`` on its standard input)."""
    with _sandbox(
        file_set, version=version, timeout=timeout, user_config=user_config, machine=machine
    ) as box:
        started = time.monotonic()
        proc = subprocess.Popen(
            [*box.command_prefix, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=box.env,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, err = proc.communicate(stdin, timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()
        finally:
            if proc.poll() is None:
                _kill_group(proc)
        rc = proc.returncode
        # 124/137: the in-namespace `timeout` fired (SIGTERM, then SIGKILL).
        timed_out = timed_out or rc in (124, 137)
        return CodexRun(
            args=tuple(args),
            rc=rc,
            stdout=_decode(out),
            stderr=_decode(err),
            duration=time.monotonic() - started,
            timed_out=timed_out,
        )


def meaningful_lines(stderr: str) -> list[str]:
    """stderr without blank lines, backtrace frames and the PATH-alias notice."""
    lines = []
    for raw in stderr.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        if not line.strip() or _BACKTRACE.match(line):
            continue
        if line.startswith("WARNING: proceeding, even though we could not create PATH aliases"):
            continue
        lines.append(line)
    return lines


# --- startup check -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartupCheck:
    """Result of `app-server --print-startup-config --strict-config`."""

    ok: bool
    requirements: dict[str, Any] | None
    error: str | None
    run: CodexRun


def _last_json_object(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def check_startup(
    file_set: Path, version: str = DEFAULT_VERSION, *, machine: Machine | None = None
) -> StartupCheck:
    """Validate requirements, system/managed config (strictly) and provider resolution.

    With `app-server --print-startup-config` where the version has it (0.164 and later), else
    with the session-free `exec` check (`check_without_session`).
    """
    if not capabilities(version).print_startup_config:
        return check_without_session(file_set, version, machine=machine)
    run = run_codex(
        file_set, STARTUP_ARGS, version=version, timeout=STARTUP_TIMEOUT, machine=machine
    )
    payload = _last_json_object(run.stdout)
    config_requirements = payload.get("configRequirements") if payload else None
    if run.rc == 0 and isinstance(config_requirements, dict):
        requirements = config_requirements.get("requirements")
        return StartupCheck(
            ok=True,
            requirements=requirements if isinstance(requirements, dict) else {},
            error=None,
            run=run,
        )
    error: str | None = None
    if payload and isinstance(payload.get("error"), dict):
        data = payload["error"].get("data")
        detail = data.get("detail") if isinstance(data, dict) else None
        error = str(detail or payload["error"].get("message") or "")
    if not error:
        error = "\n".join(meaningful_lines(run.stderr)) or f"rc={run.rc}, no JSON on stdout"
    if run.timed_out:
        error = f"timed out after {STARTUP_TIMEOUT:g}s; {error}"
    return StartupCheck(ok=False, requirements=None, error=error, run=run)


NO_PROMPT = "No prompt provided via stdin."


def session_free_args(version: str, profile: str | None = None) -> list[str]:
    """`exec` that loads the whole stack and stops before any model call (docs/codex.md, "Checking files with the real binary")."""
    strict = ["--strict-config"] if capabilities(version).strict_config else []
    selected = ["--profile", profile] if profile else []
    return ["exec", *strict, "--skip-git-repo-check", *selected]


def check_without_session(
    file_set: Path,
    version: str = DEFAULT_VERSION,
    *,
    profile: str | None = None,
    machine: Machine | None = None,
) -> StartupCheck:
    """Every version's own check: `exec ... </dev/null` says `No prompt provided via stdin.` when
    the files load and `Error...` when they do not (both exit 1). No requirements are reported."""
    run = run_codex(
        file_set,
        session_free_args(version, profile),
        version=version,
        timeout=STARTUP_TIMEOUT,
        machine=machine,
    )
    lines = meaningful_lines(run.stderr)
    if NO_PROMPT in lines and not any(_CONFIG_ERROR.match(line.strip()) for line in lines):
        return StartupCheck(ok=True, requirements=None, error=None, run=run)
    error = "\n".join(lines) or f"rc={run.rc}, nothing on stderr"
    if run.timed_out:
        error = f"timed out after {STARTUP_TIMEOUT:g}s; {error}"
    return StartupCheck(ok=False, requirements=None, error=error, run=run)


# --- session (profile) check ---------------------------------------------------------------------


@dataclass(frozen=True)
class SessionCheck:
    """Result of starting an `exec` session with one profile (or none) until its header."""

    profile: str | None
    ok: bool
    header: dict[str, str]
    fallback_warnings: list[str]
    config_errors: list[str]
    ignored_settings: list[str]
    # Approval fallbacks caused by exec's own forced `never`, not by the file set (see module).
    exec_forced_warnings: list[str]
    noise: list[str]
    rc: int | None
    stderr: str
    duration: float
    killed: bool

    args: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        return " ".join(self.args)


def _read_session_stderr(
    proc: subprocess.Popen[bytes], deadline: float, grace: float
) -> tuple[list[str], bool]:
    """Read stderr lines until EOF, the deadline, or ``grace`` seconds after the header closed.

    Returns the lines and whether the process had to be killed.
    """
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    lines: list[str] = []
    pending = b""
    rules_seen = 0
    stop_at = deadline
    eof = False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = stop_at - time.monotonic()
            if remaining <= 0:
                break
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                eof = True
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = _decode(raw)
                lines.append(line)
                if line.strip() == HEADER_RULE:
                    rules_seen += 1
                    if rules_seen == 2:
                        stop_at = min(deadline, time.monotonic() + grace)
        if eof:
            # stderr closes a moment before the process exits.
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
        killed = False
        if proc.poll() is None:
            _kill_group(proc)
            killed = True
        # The writers are gone now; collect what is still buffered in the pipe. The bound guards
        # against a descendant that left the process group and still holds the pipe open.
        drain_until = time.monotonic() + 2.0
        while not eof and selector.select(max(0.0, drain_until - time.monotonic())):
            chunk = os.read(fd, 65536)
            eof = not chunk
            pending += chunk
    proc.wait()
    lines.extend(_decode(pending).splitlines())
    return lines, killed


def _requested_approval_policy(
    file_set: Path, profile: str | None, user_config: Path | None
) -> object | None:
    """The approval_policy the file set asks for (highest config layer that sets it)."""
    layers = [file_set / MANAGED_CONFIG_FILE]
    if profile:
        layers.append(file_set / PROFILES_DIR / f"{profile}{PROFILE_SUFFIX}")
    if user_config is not None:
        layers.append(user_config)
    layers.append(file_set / SYSTEM_CONFIG_FILE)
    for layer in layers:
        if not layer.is_file():
            continue
        try:
            document = tomllib.loads(layer.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return None  # Codex reports the broken file itself.
        table = document.get("profiles", {}).get(profile, {}) if profile else {}
        if isinstance(table, dict) and "approval_policy" in table:
            return table["approval_policy"]  # a profile table (before 0.134) beats its file
        if "approval_policy" in document:
            requested: object = document["approval_policy"]
            return requested
    return None


@dataclass
class _SessionStderr:
    header_complete: bool = False
    header: dict[str, str] = field(default_factory=dict)
    fallback_warnings: list[str] = field(default_factory=list)
    exec_forced_warnings: list[str] = field(default_factory=list)
    config_errors: list[str] = field(default_factory=list)
    ignored_settings: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)


def _classify_session(lines: list[str], *, requested_approval: object | None) -> _SessionStderr:
    parts = _SessionStderr()
    rules_seen = 0
    for line in meaningful_lines("\n".join(lines)):
        stripped = line.strip()
        if stripped == HEADER_RULE:
            rules_seen += 1
            continue
        if rules_seen == 1:
            key, sep, value = stripped.partition(": ")
            if sep:
                parts.header[key] = value
            continue
        if any(marker in line for marker in _FALLBACK_MARKERS):
            if _EXEC_FORCED_APPROVAL.search(line) and requested_approval != "never":
                parts.exec_forced_warnings.append(line)
            else:
                parts.fallback_warnings.append(line)
        elif _IGNORED_SETTING.match(line):
            if stripped not in parts.ignored_settings:  # exec prints the whole block twice
                parts.ignored_settings.append(stripped)
        elif rules_seen == 0 and (parts.config_errors or _CONFIG_ERROR.match(stripped)):
            parts.config_errors.append(line)  # the error and its `Caused by:` lines
        else:
            parts.noise.append(line)
    parts.header_complete = rules_seen >= 2
    return parts


def check_profile(
    file_set: Path,
    profile: str | None,
    version: str = DEFAULT_VERSION,
    *,
    user_config: Path | None = None,
    deadline: float = SESSION_DEADLINE,
    grace: float = SESSION_GRACE,
    machine: Machine | None = None,
) -> SessionCheck:
    """Start `codex exec` (optionally with ``--profile``) and judge its header and warnings.

    There is no network, so the session never gets an answer: it either exits right after the
    header (e.g. missing API-key variable) or retries until it is killed ``grace`` seconds after
    the header.
    """
    if profile is not None and profile not in profile_names(file_set):
        raise FileSetError(f"{file_set} has no profile {profile}")
    args = [*session_free_args(version, profile), "hi"]
    with _sandbox(
        file_set,
        version=version,
        timeout=deadline + 5,
        user_config=user_config,
        machine=machine,
    ) as box:
        started = time.monotonic()
        with open(box.work / "stdout", "wb") as stdout:
            proc = subprocess.Popen(
                [*box.command_prefix, *args],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=box.env,
                start_new_session=True,
            )
            try:
                lines, killed = _read_session_stderr(proc, started + deadline, grace)
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
                if proc.stderr is not None:
                    proc.stderr.close()
        duration = time.monotonic() - started
    parts = _classify_session(
        lines, requested_approval=_requested_approval_policy(file_set, profile, user_config)
    )
    errors = parts.config_errors
    if not parts.header_complete and not errors:
        errors = [f"no session header within {deadline:g}s (rc={proc.returncode})", *parts.noise]
    ok = (
        parts.header_complete
        and not errors
        and not parts.fallback_warnings
        and not parts.ignored_settings
    )
    return SessionCheck(
        profile=profile,
        ok=ok,
        header=parts.header,
        fallback_warnings=parts.fallback_warnings,
        config_errors=errors,
        ignored_settings=parts.ignored_settings,
        exec_forced_warnings=parts.exec_forced_warnings,
        noise=parts.noise,
        rc=None if killed else proc.returncode,
        stderr="\n".join(lines),
        duration=duration,
        killed=killed,
        args=tuple(args),
    )


# --- whole file set ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSetResult:
    """Startup check plus one session per profile (and one without), with a readable report."""

    file_set: Path
    startup: StartupCheck
    sessions: list[SessionCheck]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        status = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return "\n".join([f"Codex file set {self.file_set}: {status}", *self.problems])


def _session_problems(session: SessionCheck) -> list[str]:
    if session.ok:
        return []
    rc = "killed after header" if session.killed else f"rc={session.rc}"
    lines = [*session.config_errors, *session.fallback_warnings]
    if session.ignored_settings:
        lines.append("unrecognized settings (ignored by Codex, i.e. not enforced):")
        lines += session.ignored_settings
    body = "\n".join(f"    {line}" for line in lines)
    return [f"- codex {session.command}: {rc}\n{body}"]


def _approval_problems(file_set: Path, startup: StartupCheck, profile: str | None) -> list[str]:
    """Approval conflicts that `exec` hides because it always runs with approval `never`."""
    allowed = (startup.requirements or {}).get("allowedApprovalPolicies")
    requested = _requested_approval_policy(file_set, profile, None)
    if not isinstance(allowed, list) or not isinstance(requested, str) or requested == "never":
        return []  # "never" conflicts show up in exec's own warnings; granular tables are skipped
    if _APPROVAL_ALIASES.get(requested, requested) in allowed:
        return []
    where = f"profile {profile}" if profile else "base config"
    return [
        f"- approval_policy = {requested!r} ({where}) is not in the required set {allowed}; "
        "Codex would fall back (exec cannot show this, it forces `never`)"
    ]


def check_file_set(file_set: Path, version: str = DEFAULT_VERSION) -> FileSetResult:
    """Run the startup check and a session for the base config and for every profile."""
    problems = [
        f"- missing {name}"
        for name in (REQUIREMENTS_FILE, SYSTEM_CONFIG_FILE)
        if not (file_set / name).is_file()
    ]
    startup = check_startup(file_set, version)
    if not startup.ok:
        problems.append(
            f"- codex {' '.join(startup.run.args)}: rc={startup.run.rc}\n    {startup.error}"
        )
    sessions = [
        check_profile(file_set, profile, version) for profile in [None, *profile_names(file_set)]
    ]
    for session in sessions:
        problems += _session_problems(session)
        if startup.ok:
            problems += _approval_problems(file_set, startup, session.profile)
    return FileSetResult(file_set=file_set, startup=startup, sessions=sessions, problems=problems)
