"""The fetch paths keep answering with the last published release while PostgreSQL is out of
reach, and hear of changes again once it is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from policyhub.fleet.services import device_enroll, device_revoke, enrollment_token_create
from policyhub.policies.services import policy_apply
from policyhub.releases.models import Release
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.runs import publish_run_request
from tests.codex.harness import REPO_ROOT
from tests.conftest import OPERATOR, make_policy
from tests.e2e.stack import Stack, TcpProxy, database_url, running_stack, wait_for_index

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def database() -> Iterator[TcpProxy]:
    proxy = TcpProxy(int(connection.settings_dict["PORT"] or 5432))
    yield proxy
    proxy.close()


# What a web process does to answer a fetch, in a new process.
FRESH_PROCESS = """
import sys, django
django.setup()
from policyhub.delivery.selectors import device_for_credential, release_served
device = device_for_credential(sys.argv[1])
served = release_served(device) if device else None
print(served.revision if served else "none")
"""


def fetch(stack: Stack, path: str, *headers: str) -> tuple[str, str]:
    """(status, body) of a GET from inside the machine's namespace."""
    args = ["curl", "-s", "--cacert", str(stack.ca), "-w", "\n%{http_code}"]
    for header in headers:
        args += ["-H", header]
    out = stack.run([*args, f"{stack.url}{path}"]).stdout
    body, _, status = out.rpartition("\n")
    return status, body


def test_fetches_survive_a_database_outage(cast: dict[str, Any], database: TcpProxy) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy("[teams.web]\n"), actor=OPERATOR)
    run = publish_run_request(organization=cast["acme"], actor=OPERATOR)
    publish_run_execute(run_id=run.pk)
    release = Release.objects.get(team_path="web", current=True)
    _, token = enrollment_token_create(organization=cast["acme"], team_path="web", actor=OPERATOR)
    device, credential = device_enroll(token_secret=token, hostname="laptop")
    _, token = enrollment_token_create(organization=cast["acme"], team_path="web", actor=OPERATOR)
    _, unseen = device_enroll(token_secret=token, hostname="never-fetched-before")
    native = f"/config-server/{credential}/codex/config/bundle"
    bearer = f"Authorization: Bearer {credential}"
    with running_stack(database_port=database.port) as stack:
        # Both server workers learn the answers (each request may land on either).
        for _ in range(6):
            assert fetch(stack, native)[0] == "200"
            assert fetch(stack, "/api/v1/device/bundle", bearer)[0] == "200"
        # What the outage is answered from: an index that holds both devices. Under load its
        # writer can still be building it after the fetches above (they read PostgreSQL then).
        wait_for_index(database.port)

        database.cut()
        for _ in range(6):
            status, body = fetch(stack, native)
            assert status == "200", body
            assert (
                json.loads(body)["requirements_toml"]["enterprise_managed"][0]["contents"]
                == (release.files["requirements.toml"])
            )
            status, body = fetch(stack, "/api/v1/device/bundle", bearer)
            assert status == "200", body
            assert json.loads(body)["revision"] == release.revision
            etag = f'If-None-Match: "{release.etag}"'
            assert fetch(stack, "/api/v1/device/bundle", bearer, etag)[0] == "304"

        # The host's index holds every device, so even a device that no worker has served yet
        # gets its release during the outage.
        status, body = fetch(stack, "/api/v1/device/bundle", f"Authorization: Bearer {unseen}")
        assert status == "200", body
        # And a process started during the outage, which never read the database, answers from
        # the index too (the index outlives the processes that wrote it).
        started = subprocess.run(
            [sys.executable, "-c", FRESH_PROCESS, unseen],
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "policyhub.settings",
                "DATABASE_URL": database_url(database.port),
            },
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.stdout.split() == [str(release.revision)], started.stderr[-2000:]

        # Back: the workers listen again, so a revocation takes effect as usual.
        database.mend()
        device_revoke(device=device, actor=OPERATOR)
        deadline = time.monotonic() + 20
        statuses: set[str] = set()
        while time.monotonic() < deadline:
            statuses = {fetch(stack, native)[0] for _ in range(4)}
            if statuses == {"401"}:
                break
            time.sleep(0.5)
        assert statuses == {"401"}
