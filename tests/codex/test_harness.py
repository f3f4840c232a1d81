"""The Codex harness must reject what the real binary rejects; it may not pass blindly."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.codex.harness import (
    check_file_set,
    check_profile,
    check_startup,
    run_codex,
)

pytestmark = pytest.mark.codex

CORP_PROVIDER = """
[model_providers.corp]
name = "Corp"
base_url = "https://gw.corp.example/v1"
env_key = "CORP_KEY"
"""
# No env_key: the session keeps retrying a connection the network namespace cannot make.
RETRYING_PROVIDER = """
[model_providers.retrying]
name = "Retrying"
base_url = "https://gw.corp.example/v1"
"""
POLICY = """
allowed_approval_policies = ["on-request"]
allowed_sandbox_modes = ["read-only", "workspace-write"]
"""
BASE_CONFIG = f"""
model = "corp-model"
model_provider = "corp"
approval_policy = "on-request"
sandbox_mode = "workspace-write"
{CORP_PROVIDER}"""

MakeFileSet = Callable[..., Path]


@pytest.fixture(autouse=True)
def _codex_installed(codex_ready: None) -> None:
    """Every test here runs the real binary."""


@pytest.fixture
def make_file_set(tmp_path: Path) -> MakeFileSet:
    def make(
        *,
        requirements: str = POLICY,
        config: str = BASE_CONFIG,
        managed: str | None = None,
        profiles: dict[str, str] | None = None,
    ) -> Path:
        root = tmp_path / "file-set"
        (root / "profiles").mkdir(parents=True)
        (root / "requirements.toml").write_text(requirements, encoding="utf-8")
        (root / "config.toml").write_text(config, encoding="utf-8")
        if managed is not None:
            (root / "managed_config.toml").write_text(managed, encoding="utf-8")
        for name, text in (profiles or {}).items():
            (root / "profiles" / f"{name}.config.toml").write_text(text, encoding="utf-8")
        return root

    return make


def test_valid_file_set_passes_every_check(make_file_set: MakeFileSet) -> None:
    file_set = make_file_set(profiles={"fast": 'model = "fast-model"\n'})

    result = check_file_set(file_set)

    assert result.ok, result.report()
    assert result.startup.requirements is not None
    assert result.startup.requirements["allowedApprovalPolicies"] == ["on-request"]
    assert [session.profile for session in result.sessions] == [None, "fast"]
    base = result.sessions[0]
    assert base.header["provider"] == "corp"
    assert base.header["approval"] == "on-request"
    assert base.header["sandbox"].startswith("workspace-write")
    # `exec` always asks for approval `never`; the harness must not blame the file set for it.
    assert base.exec_forced_warnings and not base.fallback_warnings


def test_unknown_sandbox_mode_fails_startup(make_file_set: MakeFileSet) -> None:
    file_set = make_file_set(config=f'sandbox_mode = "full-access"\n{CORP_PROVIDER}')

    startup = check_startup(file_set)

    assert not startup.ok
    assert startup.run.rc == 1
    assert startup.error is not None
    assert "unknown variant `full-access`" in startup.error
    assert not check_file_set(file_set).ok


def test_sandbox_modes_without_read_only_fail_startup(make_file_set: MakeFileSet) -> None:
    file_set = make_file_set(requirements='allowed_sandbox_modes = ["workspace-write"]\n')

    startup = check_startup(file_set)

    assert not startup.ok
    assert startup.error is not None
    assert "allowed_sandbox_modes" in startup.error
    assert "read-only" in startup.error


def test_disallowed_approval_passes_startup_but_session_falls_back(
    make_file_set: MakeFileSet,
) -> None:
    file_set = make_file_set(config=BASE_CONFIG.replace('"on-request"', '"never"'))

    assert check_startup(file_set).ok
    session = check_profile(file_set, None)

    assert not session.ok
    assert any("`approval_policy`" in line for line in session.fallback_warnings)
    assert session.header["approval"] == "on-request"
    result = check_file_set(file_set)
    assert not result.ok
    assert "falling back to required value OnRequest" in result.report()


def test_disallowed_sandbox_mode_falls_back_to_read_only(make_file_set: MakeFileSet) -> None:
    file_set = make_file_set(config=BASE_CONFIG.replace("workspace-write", "danger-full-access"))

    session = check_profile(file_set, None)

    assert not session.ok
    assert any("DangerFullAccess" in line for line in session.fallback_warnings)
    assert session.header["sandbox"] == "read-only"


def test_approval_hidden_by_exec_is_still_compared_with_requirements(
    make_file_set: MakeFileSet,
) -> None:
    file_set = make_file_set(
        requirements='allowed_approval_policies = ["never"]\n',
        config=BASE_CONFIG.replace('"on-request"', '"never"'),
        profiles={"careful": 'approval_policy = "on-request"\n'},
    )

    result = check_file_set(file_set)

    # exec runs with `never` (allowed), so only the harness's own comparison sees the conflict.
    assert all(not session.fallback_warnings for session in result.sessions)
    assert not result.ok
    assert "approval_policy = 'on-request' (profile careful)" in result.report()
    assert "base config" not in result.report()


def test_profile_file_is_applied(make_file_set: MakeFileSet) -> None:
    file_set = make_file_set(profiles={"review": 'model = "profile-model"\n'})

    session = check_profile(file_set, "review")

    assert session.ok, session.stderr
    assert session.header["model"] == "profile-model"
    assert check_profile(file_set, None).header["model"] == "corp-model"


def test_unknown_key_in_profile_fails_strict_config(make_file_set: MakeFileSet) -> None:
    file_set = make_file_set(profiles={"review": 'model = "m"\nbogus_key = 1\n'})

    session = check_profile(file_set, "review")

    assert not session.ok
    assert not session.header
    assert any("unknown configuration field `bogus_key`" in line for line in session.config_errors)
    result = check_file_set(file_set)
    assert result.startup.ok
    assert not result.ok
    assert "--profile review" in result.report()


def test_unknown_requirement_key_is_reported(make_file_set: MakeFileSet) -> None:
    file_set = make_file_set(requirements=f"{POLICY}allowed_sandbox_mode = ['read-only']\n")

    assert check_startup(file_set).ok  # requirements.toml has no strict mode
    session = check_profile(file_set, None)

    assert not session.ok
    assert any("`allowed_sandbox_mode` is ignored" in line for line in session.ignored_settings)


def test_retrying_provider_is_cut_off_after_the_header(make_file_set: MakeFileSet) -> None:
    file_set = make_file_set(config=f'model_provider = "retrying"\n{RETRYING_PROVIDER}')

    session = check_profile(file_set, None)

    assert session.ok, session.stderr
    assert session.killed
    assert session.header["provider"] == "retrying"
    assert session.duration < 10


def test_session_without_header_before_deadline_fails(make_file_set: MakeFileSet) -> None:
    session = check_profile(make_file_set(), None, deadline=0.05)

    assert not session.ok
    assert session.killed
    assert session.config_errors[0].startswith("no session header within 0.05s")


def test_sessions_cannot_reach_a_server_on_host_loopback(make_file_set: MakeFileSet) -> None:
    # Outside the network namespace this config makes Codex POST /v1/responses at once.
    with _RecordingServer() as server:
        file_set = make_file_set(
            config=f"""model_provider = "local"
[model_providers.local]
name = "Local"
base_url = "http://127.0.0.1:{server.port}/v1"
"""
        )
        session = check_profile(file_set, None)

    assert session.header["provider"] == "local"
    assert server.requests == []


def test_run_uses_user_config_minimal_env_and_cleans_up(
    make_file_set: MakeFileSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORP_KEY", "must-not-leak")
    file_set = make_file_set()
    user_config = tmp_path / "user.toml"
    user_config.write_text('model = "user-model"\n', encoding="utf-8")

    run = run_codex(
        file_set, ["exec", "--skip-git-repo-check", "hi"], timeout=20, user_config=user_config
    )

    assert "model: user-model" in run.stderr
    assert "Missing environment variable: `CORP_KEY`" in run.stderr
    workdir = next(line for line in run.stderr.splitlines() if line.startswith("workdir: "))
    assert not Path(workdir.removeprefix("workdir: ")).exists()


class _RecordingServer:
    """HTTP server on 127.0.0.1 that records every request line it receives."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                requests.append(self.requestline)
                self.send_response(500)
                self.end_headers()

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> _RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
