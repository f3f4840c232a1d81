"""The real agent CLI, as a subprocess, against the real PolicyHub server (pytest-django's
live_server on PostgreSQL): enrol, sync, 304, a new publish, key rotation, revocation."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from policyhub.credentials import fetch_credential
from policyhub.fleet.models import Device
from policyhub.fleet.selectors import device_statuses
from policyhub.fleet.services import (
    device_credential_rotate,
    device_move,
    device_revoke,
    enrollment_token_create,
)
from policyhub.policies.services import policy_apply
from policyhub.releases.models import Release
from policyhub.releases.services.keys import signing_key_rotate
from policyhub.releases.services.runs import publish_run_request
from providers.codex_versions import NEWEST_MEASURED, version_text
from tests.agent.support import HOME, MISSING_CODEX, snapshot
from tests.agent.test_sync import fake_codex
from tests.conftest import acting, make_policy
from tests.delivery.conftest import fresh_cache

__all__ = ["fresh_cache"]  # autouse: publishing runs at commit, the delivery cache starts empty

pytestmark = [pytest.mark.django_db(transaction=True)]

TEAM = "engineering/web"
POLICY = """
[config]
model = "gpt-5.5"
model_provider = "openai"
[teams.engineering]
[teams."engineering/web".config]
model = "codex-ci"
model_provider = "azure-eng"
[teams."engineering/web".profiles.deep]
model_reasoning_effort = "high"
[teams."engineering/web".profiles.quick]
model_reasoning_effort = "low"
"""
ETC = "etc/codex"
CODEX_HOME = "home/dev/.codex"
STATE = "var/lib/policyhub-agent"


@pytest.fixture
def publish(cast: dict[str, Any]) -> Callable[[str], Release]:
    """Apply a policy to acme and publish it; returns the team's current release."""

    def run(text: str = POLICY) -> Release:
        policy_apply(
            organization=cast["acme"], wanted=make_policy(text), actor=acting(cast["admin"])
        )
        requested = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
        requested.refresh_from_db()
        assert requested.status == "succeeded", requested.error
        return Release.objects.get(organization=cast["acme"], team_path=TEAM, current=True)

    return run


@pytest.fixture
def new_token(cast: dict[str, Any]) -> Callable[[], str]:
    """A fresh enrolment token for the team (which the policy must have created)."""

    def make() -> str:
        _, secret = enrollment_token_create(
            organization=cast["acme"], team_path=TEAM, actor=acting(cast["admin"])
        )
        return secret

    return make


@dataclass
class Machine:
    """A developer machine: an empty root, and the agent run there as a subprocess."""

    root: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "CODEX_HOME"}
        return subprocess.run(
            [sys.executable, "-m", "policyhub_agent", "--root", str(self.root), *args],
            env={**env, "HOME": HOME},
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def agent(tmp_path: Path) -> Machine:
    (tmp_path / "root").mkdir()
    return Machine(tmp_path / "root")


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def assert_release_on_disk(root: Path, release: Release) -> None:
    """The release's files, byte for byte, where Codex reads them, and nothing else."""
    files = release.files
    assert (root / ETC / "requirements.toml").read_text() == files["requirements.toml"]
    assert (root / ETC / "config.toml").read_text() == files["config.toml"]
    profiles = {
        name.removeprefix("profiles/"): text
        for name, text in files.items()
        if name.startswith("profiles/")
    }
    on_disk = {path.name: path.read_text() for path in (root / CODEX_HOME).iterdir()}
    assert on_disk == profiles


def test_enrol_sync_publish_and_revoke_against_the_real_server(
    live_server: Any,
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
) -> None:
    root = agent.root
    first = publish()
    enrolled = agent(
        "enroll", "--server", live_server.url, "--token", new_token(), "--codex-bin", MISSING_CODEX
    )
    assert enrolled.returncode == 0, enrolled.stderr
    assert last_line(enrolled.stdout) == f"revision {first.revision} applied"
    assert_release_on_disk(root, first)
    assert "config_server" not in tomllib.loads((root / ETC / "requirements.toml").read_text())
    device = Device.objects.get()
    assert (device.team.path, device.hostname) == (TEAM, os.uname().nodename)

    again = agent("sync")
    assert again.returncode == 0, again.stderr
    assert last_line(again.stdout) == f"revision {first.revision} unchanged"

    without_quick = POLICY.replace('[teams."engineering/web".profiles.quick]\n', "")
    second = publish(without_quick.replace('model_reasoning_effort = "low"\n', ""))
    assert second.revision == first.revision + 1
    assert "profiles/quick.config.toml" not in second.files
    applied = agent("sync")
    assert applied.returncode == 0, applied.stderr
    assert last_line(applied.stdout) == f"revision {second.revision} applied"
    assert_release_on_disk(root, second)

    status = json.loads(agent("status", "--json").stdout)
    assert (status["organization"], status["team"]) == ("acme", TEAM)
    assert (status["device_id"], status["applied_revision"]) == (str(device.pk), second.revision)
    assert status["last_error"] is None
    text = agent("status").stdout
    assert f"applied revision: {second.revision}" in text and str(device.pk) in text
    device.refresh_from_db()
    assert (device.applied_revision, device.agent_version, device.errors) == (
        second.revision,
        "0.3.2",
        [],
    )
    credential = json.loads((root / STATE / "state.json").read_text())["credential"]
    assert all(credential not in out for out in (enrolled.stdout, enrolled.stderr, text))

    before = snapshot(root, skip=(STATE,))
    device_revoke(device=device, actor=acting(cast["admin"]), reason="laptop lost")
    refused = agent("sync")
    assert refused.returncode == 1
    assert "answered 401: unknown or revoked device credential" in refused.stderr
    assert snapshot(root, skip=(STATE,)) == before


def test_a_rotated_signing_key_is_pinned_through_its_endorsement(
    live_server: Any,
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
) -> None:
    root = agent.root
    first = publish()
    assert agent("enroll", "--server", live_server.url, "--token", new_token()).returncode == 0
    new_key = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    second = publish(POLICY.replace('"high"', '"medium"'))
    assert second.signing_key == new_key and first.signing_key != new_key
    result = agent("sync")
    assert result.returncode == 0, result.stderr
    assert last_line(result.stdout) == f"revision {second.revision} applied"
    assert_release_on_disk(root, second)
    pinned = json.loads(agent("status", "--json").stdout)["pinned_keys"]
    assert sorted(pinned) == sorted([first.signing_key.key_id, new_key.key_id])


def test_uninstall_after_a_real_enrolment_leaves_an_empty_root(
    live_server: Any,
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
) -> None:
    root = agent.root
    publish()
    assert agent("enroll", "--server", live_server.url, "--token", new_token()).returncode == 0
    assert agent("install", "--platform", "linux").returncode == 0
    done = agent("uninstall")
    assert done.returncode == 0, done.stderr
    assert snapshot(root) == {}


def test_enrolling_in_a_team_without_a_release_succeeds_and_writes_nothing(
    live_server: Any,
    new_token: Callable[[], str],
    cast: dict[str, Any],
    agent: Machine,
) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    root = agent.root
    done = agent("enroll", "--server", live_server.url, "--token", new_token())
    assert done.returncode == 0, done.stderr
    assert f"no release is published for team {TEAM} yet" in done.stdout
    assert not (root / ETC).exists()


def test_a_codex_newer_than_the_measured_end_applies_the_files_with_a_warning(
    live_server: Any,
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
    tmp_path: Path,
) -> None:
    """The server signs where measurement ended; the agent verifies it and warns above it."""
    newest = version_text(NEWEST_MEASURED)
    release = publish(f'[codex]\nmin_version = "{newest}"\nmax_version = "{newest}"\n' + POLICY)
    assert release.codex["measured_until"] == newest
    later = version_text((NEWEST_MEASURED[0], NEWEST_MEASURED[1] + 1, 0))
    binary = str(fake_codex(tmp_path, later))
    enrolled = agent(
        "enroll", "--server", live_server.url, "--token", new_token(), "--codex-bin", binary
    )
    assert enrolled.returncode == 0, enrolled.stderr
    warning = f"warning: Codex {later} is newer than {newest}, the newest release PolicyHub had "
    assert warning in enrolled.stderr
    assert last_line(enrolled.stdout) == f"revision {release.revision} applied"
    assert_release_on_disk(agent.root, release)
    (shown,) = json.loads(agent("status", "--json").stdout)["warnings"]
    assert shown.startswith(warning)
    device = Device.objects.get()
    assert (device.codex_version, device.errors) == (later, [])
    (status,) = device_statuses(cast["acme"], codex_window="unmeasured")
    assert status.device == device and status.codex_unmeasured
    # The same machine on the newest measured release: no warning.
    binary = str(fake_codex(tmp_path, newest))
    state = agent.root / STATE / "state.json"
    recorded = json.loads(state.read_text())
    state.write_text(json.dumps({**recorded, "codex_bin": binary}))
    again = agent("sync")
    assert again.returncode == 0, again.stderr
    assert "newer than" not in again.stderr
    assert json.loads(agent("status", "--json").stdout)["warnings"] == []


def test_a_moved_device_takes_its_new_teams_release_on_the_servers_signed_word(
    live_server: Any,
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
) -> None:
    publish()
    assert agent("enroll", "--server", live_server.url, "--token", new_token()).returncode == 0
    device = Device.objects.get()
    assert device.assignment == 0
    device_move(device=device, team_path="engineering", actor=acting(cast["admin"]))
    device.refresh_from_db()
    assert (device.team.path, device.assignment) == ("engineering", 1)
    moved = agent("sync")
    assert moved.returncode == 0, moved.stderr
    there = Release.objects.get(organization=cast["acme"], team_path="engineering", current=True)
    assert last_line(moved.stdout) == f"revision {there.revision} applied"
    status = json.loads(agent("status", "--json").stdout)
    assert status["team"] == "engineering"
    state = json.loads((agent.root / STATE / "state.json").read_text())
    assert state["assignment"] == 1 and state["high_water"]["engineering"] == there.revision


def state_file(agent: Machine) -> Path:
    return agent.root / STATE / "state.json"


def test_a_device_enrolled_before_fetch_credentials_rotates_off_its_exposed_credential(
    live_server: Any,
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
    client: Any,
) -> None:
    first = publish()
    enrolled = agent(
        "enroll", "--server", live_server.url, "--token", new_token(), "--codex-bin", MISSING_CODEX
    )
    assert enrolled.returncode == 0, enrolled.stderr
    state = json.loads(state_file(agent).read_text())
    assert state["fetch_credential"] == fetch_credential(state["credential"])
    # As an agent before 0.3.2 left it: the device credential was the native channel's.
    old = state["credential"]
    state.pop("fetch_credential")
    state_file(agent).write_text(json.dumps(state))
    Device.objects.update(fetch_credential_hash=None)

    synced = agent("sync")
    assert synced.returncode == 0, synced.stderr
    assert "fetch-only" in synced.stdout
    assert last_line(synced.stdout) == f"revision {first.revision} unchanged"
    state = json.loads(state_file(agent).read_text())
    assert state["credential"] != old and state["pending_credential"] is None
    assert state["fetch_credential"] == fetch_credential(state["credential"])
    keys = client.get("/api/v1/keys", headers={"Authorization": f"Bearer {old}"})
    assert keys.status_code == 401  # the copy an earlier requirements.toml held opens nothing
    assert Device.objects.get().fetch_credential_hash is not None
    assert old not in synced.stdout + synced.stderr


def test_a_rotation_whose_answer_was_lost_is_completed_at_the_next_sync(
    live_server: Any,
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
) -> None:
    first = publish()
    enrolled = agent(
        "enroll", "--server", live_server.url, "--token", new_token(), "--codex-bin", MISSING_CODEX
    )
    assert enrolled.returncode == 0, enrolled.stderr
    state = json.loads(state_file(agent).read_text())
    # The agent kept the new credential and the server took it, but the answer never came.
    pending = "phd_" + secrets.token_urlsafe(32)
    Device.objects.update(fetch_credential_hash=None)  # enrolled before fetch credentials
    assert device_credential_rotate(device_id=Device.objects.get().pk, new_credential=pending)
    state.update(pending_credential=pending, fetch_credential=None)
    state_file(agent).write_text(json.dumps(state))

    synced = agent("sync")
    assert synced.returncode == 0, synced.stderr
    assert last_line(synced.stdout) == f"revision {first.revision} unchanged"
    state = json.loads(state_file(agent).read_text())
    assert (state["credential"], state["pending_credential"]) == (pending, None)
    assert state["fetch_credential"] == fetch_credential(pending)
