"""The whole delivery path with real parts: PostgreSQL, a Celery task, granian behind nginx
with TLS from a throw-away CA, `policyhub-agent`, and Codex 0.169.0 fetching its bundle from us
over Codex's own config-server protocol."""

from __future__ import annotations

import json
import shutil
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policyhub.celery import app as celery_app
from policyhub.fleet.models import Device
from policyhub.fleet.services import device_revoke, enrollment_token_create
from policyhub.policies import document
from policyhub.policies.demo import ACME
from policyhub.policies.services import policy_apply
from policyhub.releases.models import Release
from policyhub.releases.services.runs import publish_run_request
from tests.codex.harness import (
    Machine,
    check_profile,
    check_startup,
    codex_binary,
    profile_names,
)
from tests.conftest import OPERATOR, acting
from tests.e2e.stack import Stack, running_stack

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.codex,
    pytest.mark.usefixtures("codex_ready"),
]

DEMO = ACME.read_text()
TEAM = "engineering/web"
# The change a later publish carries: engineering/web may no longer write to the workspace.
NARROWED = DEMO.replace(
    f'[teams."{TEAM}".config]\n',
    f'[teams."{TEAM}".requirements]\nallowed_sandbox_modes = ["read-only"]\n\n'
    f'[teams."{TEAM}".config]\nsandbox_mode = "read-only"\n',
)


@pytest.fixture
def stack() -> Iterator[Stack]:
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # the publish task runs at commit, in-process
    try:
        with running_stack() as running:
            yield running
    finally:
        celery_app.conf.task_always_eager = eager


def publish(cast: dict[str, Any], text: str) -> Release:
    policy_apply(
        organization=cast["acme"], wanted=document.parse(text), actor=acting(cast["admin"])
    )
    run = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return Release.objects.get(organization=cast["acme"], team_path=TEAM, current=True)


class Laptop:
    """A developer machine: a re-rooted tree the agent writes, Codex reading that tree."""

    def __init__(self, stack: Stack, root: Path) -> None:
        self.stack, self.root = stack, root
        self.codex_home = root / "home" / "dev" / ".codex"
        root.mkdir(parents=True, exist_ok=True)

    def agent(self, *args: str) -> Any:
        return self.stack.run(
            [
                sys.executable,
                "-m",
                "policyhub_agent",
                "--root",
                str(self.root),
                "--codex-home",
                str(self.codex_home),
                *args,
            ]
        )

    def file_set(self, into: Path) -> Path:
        """What the agent wrote, laid out as the Codex harness reads a file set."""
        shutil.rmtree(into, ignore_errors=True)
        into.mkdir(parents=True)
        for name in ("requirements.toml", "config.toml", "managed_config.toml"):
            if (self.root / "etc" / "codex" / name).is_file():
                shutil.copyfile(self.root / "etc" / "codex" / name, into / name)
        for profile in self.codex_home.glob("*.config.toml"):
            (into / "profiles").mkdir(exist_ok=True)
            shutil.copyfile(profile, into / "profiles" / profile.name)
        return into

    @property
    def machine(self) -> Machine:
        return Machine(
            netns=self.stack.netns,
            codex_home=self.codex_home,
            env={"CODEX_CA_CERTIFICATE": str(self.stack.ca)},
        )

    def codex_cache(self) -> list[Path]:
        return sorted(self.codex_home.glob("managed-config-*.json"))


def curl_status(stack: Stack, method: str, path: str, credential: str) -> str:
    """The status of a request from the machine, authenticated with `credential`."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(stack.ca)]
    args += ["-X", method, "-H", f"Authorization: Bearer {credential}"]
    if method == "POST":
        args += ["-H", "Content-Type: application/json", "--data", '{"applied_revision": 1}']
    return stack.run([*args, f"{stack.url}{path}"]).stdout


def assert_fetch_only(stack: Stack, credential: str) -> None:
    """What any local user can read in requirements.toml opens the native fetch and nothing
    else: no status report (which would make the device look current), no agent bundle, no
    keys, no assignment, no rotation."""
    native = f"/config-server/{credential}/codex/config/bundle"
    assert curl_status(stack, "GET", native, "none") == "200"
    for method, path in (
        ("POST", "/api/v1/device/status"),
        ("GET", "/api/v1/device/bundle"),
        ("GET", "/api/v1/keys"),
        ("GET", "/api/v1/device/assignment"),
        ("POST", "/api/v1/device/credential"),
    ):
        assert curl_status(stack, method, path, credential) == "401", (method, path)
    assert Device.objects.get(team__path=TEAM).reported_at is not None  # the agent's own report


def test_published_policy_reaches_codex_through_the_agent_and_the_native_channel(
    cast: dict[str, Any], stack: Stack, tmp_path: Path
) -> None:
    first = publish(cast, DEMO)
    _, token = enrollment_token_create(
        organization=cast["acme"], team_path=TEAM, max_uses=1, actor=acting(cast["admin"])
    )
    laptop = Laptop(stack, tmp_path / "laptop")
    enrolled = laptop.agent(
        "enroll",
        "--server",
        stack.url,
        "--token",
        token,
        "--ca-bundle",
        str(stack.ca),
        "--codex-bin",
        str(codex_binary("0.169.0")),
    )
    assert enrolled.returncode == 0, enrolled.stderr
    requirements = tomllib.loads((laptop.root / "etc/codex/requirements.toml").read_text())
    base_url = requirements["config_server"]["base_url"]
    assert base_url.startswith(f"{stack.url}/config-server/phf_")
    assert_fetch_only(stack, base_url.rpartition("/")[2])
    profiles = sorted(p.name for p in laptop.codex_home.glob("*.config.toml"))
    assert profiles == sorted(n.removeprefix("profiles/") for n in first.files if "/" in n)

    # Codex starts, fetches the bundle from us over TLS and enforces the published requirements.
    files = laptop.file_set(tmp_path / "set")
    started = check_startup(files, machine=laptop.machine)
    assert started.ok, started.error
    assert started.requirements is not None
    assert started.requirements["allowedSandboxModes"] == ["read-only", "workspace-write"]
    assert laptop.codex_cache(), "Codex cached no bundle: it did not use the config server"
    # The server counted Codex's fetch (written behind the request, within seconds).
    device = Device.objects.get(team__path=TEAM)
    deadline = time.monotonic() + 15
    while device.last_channel != "native" and time.monotonic() < deadline:
        time.sleep(0.2)
        device.refresh_from_db()
    assert device.last_channel == "native"
    assert device.revision_served == first.revision
    for profile in profiles:
        name = profile.removesuffix(".config.toml")
        session = check_profile(files, name, machine=laptop.machine)
        assert session.ok, session.config_errors or session.fallback_warnings
        wanted_model = tomllib.loads((laptop.codex_home / profile).read_text()).get("model")
        if wanted_model:
            assert session.header.get("model") == wanted_model

    # A new publish narrows the team. The agent has not synced yet: Codex gets the change from
    # the config server as soon as its cached bundle is gone.
    second = publish(cast, NARROWED)
    assert second.revision == first.revision + 1
    cached = check_startup(files, machine=laptop.machine)
    assert cached.requirements is not None
    assert cached.requirements["allowedSandboxModes"] == ["read-only", "workspace-write"]
    for path in laptop.codex_cache():
        path.unlink()  # what the one-hour expiry does
    fresh = check_startup(files, machine=laptop.machine)
    assert fresh.ok, fresh.error
    assert fresh.requirements is not None
    assert fresh.requirements["allowedSandboxModes"] == ["read-only"]

    # The agent's next sync brings the files on disk to the new revision too.
    synced = laptop.agent("sync")
    assert synced.returncode == 0, synced.stderr
    assert f"revision {second.revision}" in synced.stdout
    on_disk = tomllib.loads((laptop.root / "etc/codex/requirements.toml").read_text())
    assert on_disk["allowed_sandbox_modes"] == ["read-only"]
    status = json.loads(laptop.agent("status", "--json").stdout)
    assert status["applied_revision"] == second.revision


def test_an_older_codex_gets_profile_tables_and_no_native_channel(
    cast: dict[str, Any], stack: Stack, tmp_path: Path
) -> None:
    """Codex 0.125.0 on the machine: the agent reports it and gets the set rendered for it."""
    release = publish(cast, DEMO)
    _, token = enrollment_token_create(organization=cast["acme"], team_path=TEAM, actor=OPERATOR)
    laptop = Laptop(stack, tmp_path / "old-laptop")
    enrolled = laptop.agent(
        "enroll",
        "--server",
        stack.url,
        "--token",
        token,
        "--ca-bundle",
        str(stack.ca),
        "--codex-bin",
        str(codex_binary("0.125.0")),
    )
    assert enrolled.returncode == 0, enrolled.stderr
    etc = laptop.root / "etc" / "codex"
    requirements = tomllib.loads((etc / "requirements.toml").read_text())
    assert "config_server" not in requirements  # 0.125 ignores it: the local files enforce
    config = tomllib.loads((etc / "config.toml").read_text())
    assert set(config["profiles"]) == {"deep"}
    assert not list(laptop.codex_home.glob("*.config.toml"))
    # Older releases ignore allowed_login_methods; the managed layer pins the sign-in instead.
    assert tomllib.loads((etc / "managed_config.toml").read_text()) == {
        "forced_login_method": "chatgpt"
    }
    variant = release.variants.get()
    assert (etc / "config.toml").read_text() == variant.files["config.toml"]

    files = laptop.file_set(tmp_path / "old-set")
    started = check_startup(files, "0.125.0", machine=laptop.machine)
    assert started.ok, started.error
    assert profile_names(files) == ["deep"]
    session = check_profile(files, "deep", "0.125.0", machine=laptop.machine)
    assert session.ok, session.config_errors or session.fallback_warnings
    assert session.header.get("reasoning effort") == "xhigh"
    assert Device.objects.get(team__path=TEAM).codex_version == "0.125.0"


def test_revoked_device_is_refused_by_both_channels_through_the_real_server(
    cast: dict[str, Any], stack: Stack, tmp_path: Path
) -> None:
    publish(cast, DEMO)
    _, token = enrollment_token_create(organization=cast["acme"], team_path=TEAM, actor=OPERATOR)
    laptop = Laptop(stack, tmp_path / "laptop")
    assert (
        laptop.agent(
            "enroll",
            "--server",
            stack.url,
            "--token",
            token,
            "--ca-bundle",
            str(stack.ca),
            "--codex-bin",
            str(codex_binary("0.169.0")),
        ).returncode
        == 0
    )
    requirements = tomllib.loads((laptop.root / "etc/codex/requirements.toml").read_text())
    base_url = requirements["config_server"]["base_url"]
    # The agent's own credential, which the agent channel takes (the URL holds a fetch-only one).
    state = json.loads(laptop.root.joinpath("var/lib/policyhub-agent/state.json").read_text())
    credential = state["credential"]
    before = laptop.root.joinpath("etc/codex/requirements.toml").read_bytes()
    assert curl_status(stack, "GET", "/api/v1/device/bundle", credential) == "200"

    device_revoke(device=Device.objects.get(team__path=TEAM), actor=OPERATOR)
    curl = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        str(stack.ca),
    ]
    native = stack.run([*curl, f"{base_url}/codex/config/bundle"])
    agent = stack.run(
        [*curl, "-H", f"Authorization: Bearer {credential}", f"{stack.url}/api/v1/device/bundle"]
    )
    assert (native.stdout, agent.stdout) == ("401", "401")
    synced = laptop.agent("sync")
    assert synced.returncode == 1
    assert laptop.root.joinpath("etc/codex/requirements.toml").read_bytes() == before
    # Codex itself is refused too: it fails closed rather than start without its policy.
    for path in laptop.codex_cache():
        path.unlink()
    refused = check_startup(laptop.file_set(tmp_path / "set"), machine=laptop.machine)
    assert not refused.ok
