"""Publishing through a real Celery worker process, on PostgreSQL and Redis, end to end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from policyhub.accounts.models import Organization
from policyhub.audit.models import AuditEvent
from policyhub.audit.verification import audit_chain_verify
from policyhub.celery import app as celery_app
from policyhub.policies.selectors import org_policy, organization_get
from policyhub.policies.services import policy_apply
from policyhub.releases import signing
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.runs import publish_run_request
from policyhub.teams.models import Team
from tests.codex.harness import REPO_ROOT, check_file_set
from tests.conftest import OPERATOR, acting

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("broker_to_ourselves"),
]


def start_worker(**extra_env: str) -> subprocess.Popen[bytes]:
    """A Celery worker process group on the test database; the tests commit, so it sees rows."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set (make test sets it)")
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        **extra_env,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "policyhub",
            "worker",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so a test can kill it whole
    )
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                f"worker did not start: {process.stderr.read().decode() if process.stderr else ''}"
            )
    return process


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def worker() -> Iterator[subprocess.Popen[bytes]]:
    # Messages left by an earlier, interrupted run must not reach this worker.
    celery_app.control.purge()
    process = start_worker()
    yield process
    stop_worker(process)


def publish() -> str:
    out = io.StringIO()
    call_command(
        "publish", "--org", "acme", "--as", "admin@acme.example", "--timeout", "120", stdout=out
    )
    return out.getvalue().strip()


def wait_for(runs: list[PublishRun]) -> list[PublishRun]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fresh = [PublishRun.objects.get(pk=r.pk) for r in runs]
        if all(r.status in ("succeeded", "failed") for r in fresh):
            return fresh
        time.sleep(0.2)
    raise AssertionError(f"runs still unfinished: {[r.status for r in fresh]}")


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
def test_the_demo_publishes_through_the_worker_and_codex_accepts_every_release(
    worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    # seed_demo ends with a first publish of every team; through the worker nothing is new.
    call_command("seed_demo", stdout=io.StringIO())
    assert Release.objects.filter(current=True).count() == 9
    line = publish()
    assert line.endswith("succeeded 0 new release(s)"), line
    # The worker's own steps carry its task id, and its events join the same chain.
    acme = Organization.objects.get(slug="acme")
    steps = AuditEvent.objects.filter(organization=acme, action="publish_run.finish")
    assert steps.latest("seq").request_id.startswith("task:")
    assert audit_chain_verify(acme.pk).ok

    releases = list(Release.objects.filter(current=True).select_related("signing_key"))
    assert sorted(r.team_path for r in releases) == sorted(
        Team.objects.filter(organization__slug="acme").values_list("path", flat=True)
    )
    assert_signed_and_accepted_by_codex(releases, tmp_path)


def assert_signed_and_accepted_by_codex(releases: list[Release], tmp_path: Path) -> None:
    """Every release's signature verifies and its files pass the real Codex binary."""
    folders = []
    for release in releases:
        assert signing.verify(
            release.signing_key.public_key, release.manifest.encode(), release.signature
        )
        folder = tmp_path / release.team_path
        for name, text in release.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        folders.append(folder)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(check_file_set, folders))
    failures = [r.report() for r in results if not r.ok]
    assert not failures, "\n\n".join(failures)


def test_two_publishes_at_once_produce_one_consistent_set_of_revisions(
    worker: subprocess.Popen[bytes],
) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    org = organization_get("acme")
    assert org is not None
    # A root change reaches all nine teams; two publishes race to release it.
    policy = org_policy(org)
    instructions = policy.root.requirements["additional_developer_instructions"] + " Ask first."
    root = replace(
        policy.root,
        requirements={
            **policy.root.requirements,
            "additional_developer_instructions": instructions,
        },
    )
    policy_apply(organization=org, wanted=replace(policy, root=root), actor=OPERATOR)
    runs = [publish_run_request(organization=org, actor=OPERATOR) for _ in range(2)]
    finished = wait_for(runs)
    assert [r.status for r in finished] == ["succeeded", "succeeded"]
    assert sorted(r.releases_created for r in finished) == [0, 9]
    assert Release.objects.count() == 18
    assert set(Release.objects.filter(current=True).values_list("revision", flat=True)) == {2}


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
def test_a_reviewed_change_set_publishes_through_the_worker_for_exactly_the_affected_teams(
    worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    from django.contrib.auth import get_user_model

    from policyhub.accounts.models import Role
    from policyhub.accounts.services import membership_grant, organization_settings_update
    from policyhub.changes.models import ChangeSet
    from policyhub.changes.selectors import change_set_preview
    from policyhub.changes.services import (
        change_set_approve,
        change_set_create,
        change_set_submit,
    )
    from policyhub.policies import document

    call_command("seed_demo", stdout=io.StringIO())
    assert publish().endswith("succeeded 0 new release(s)")
    org = organization_get("acme")
    assert org is not None
    author = acting(get_user_model().objects.get(email="admin@acme.example"))
    second = get_user_model().objects.create_user("second", "second@example.com", "pw-second")
    membership_grant(organization=org, user=second, role=Role.ADMIN, actor=author)
    org = organization_settings_update(organization=org, actor=author, requires_approval=True)

    # Edit: platform/ci thinks less; platform/ci/release inherits its config.
    head, tail = document.dump(org_policy(org)).split('[teams."platform/ci".config]')
    edited = (
        head
        + '[teams."platform/ci".config]'
        + tail.replace('model_reasoning_effort = "high"', 'model_reasoning_effort = "medium"', 1)
    )
    change_set = change_set_create(
        organization=org, document_text=edited, actor=author, reason="cheaper CI"
    )
    preview = change_set_preview(change_set)
    assert preview.team_paths == ["platform/ci", "platform/ci/release"]
    assert all(
        '-model_reasoning_effort = "high"' in f.diff
        and '+model_reasoning_effort = "medium"' in f.diff
        for team in preview.teams
        for f in team.files
        if f.name == "config.toml"
    )
    change_set = change_set_submit(change_set=change_set, actor=author)
    assert change_set.status == "submitted"
    assert publish().endswith("succeeded 0 new release(s)")  # not approved yet: nothing moves
    change_set_approve(change_set=change_set, actor=acting(second))

    assert publish().endswith("succeeded 2 new release(s)")
    change_set.refresh_from_db()
    assert change_set.status == ChangeSet.Status.PUBLISHED
    new = list(Release.objects.filter(revision=2).select_related("signing_key"))
    assert sorted(r.team_path for r in new) == preview.team_paths
    assert all(r.publish_run == change_set.published_run for r in new)
    for release in new:
        assert 'model_reasoning_effort = "medium"' in release.files["config.toml"]
        assert list(release.change_sets.all()) == [change_set]
    assert_signed_and_accepted_by_codex(new, tmp_path)
