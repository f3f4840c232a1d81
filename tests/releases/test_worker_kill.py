"""A worker killed with SIGKILL in the middle of a publish: no partial release, and the run
is completed by the next worker without duplicate revisions. A publish that outlives its time
limit is stopped the same clean way."""

from __future__ import annotations

import os
import signal
import time

import pytest

from policyhub.accounts.models import Organization
from policyhub.celery import app as celery_app
from policyhub.policies.domain import TeamSpec
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.runs import publish_run_request
from policyhub.releases.tasks import publish_runs_recover_task
from tests.conftest import OPERATOR, make_policy
from tests.releases.test_worker import start_worker, stop_worker

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("broker_to_ourselves"),
]

# About 3 s of publishing (0.8 s for 800 such teams since releases are inserted as plain rows).
TEAMS = 3000
# Short enough for a test; the kill happens well inside the first worker's lease, and the lease
# (its soft time limit is 9 s) leaves the second worker three times what the publish needs.
LEASE = 10
FAST_RECOVERY = {"PUBLISH_LEASE_SECONDS": str(LEASE), "CELERY_VISIBILITY_TIMEOUT": "3"}


def big_organisation() -> Organization:
    from dataclasses import replace

    org = Organization.objects.create(slug="acme", name="Acme")
    base = make_policy('[config]\nmodel = "gpt-5.5"\nmodel_provider = "openai"\n')
    teams = {f"t{i:04d}": TeamSpec(f"t{i:04d}", f"Team {i}") for i in range(TEAMS)}
    policy_apply(organization=org, wanted=replace(base, teams=teams), actor=OPERATOR)
    return org


def wait_status(run: PublishRun, wanted: str, seconds: float) -> PublishRun:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status == wanted:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run.pk} is {run.status}, not {wanted}, after {seconds}s")


def test_a_killed_worker_leaves_no_partial_release_and_the_retry_completes_the_run() -> None:
    org = big_organisation()
    celery_app.control.purge()
    first = start_worker(**FAST_RECOVERY)
    try:
        run = publish_run_request(organization=org, actor=OPERATOR)
        wait_status(run, "running", 60)
        time.sleep(0.8)  # well into rendering the teams, before the transaction commits
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    run.refresh_from_db()
    assert run.status == "running", "the publish finished before the kill; make it bigger"
    assert not Release.objects.exists()

    second = start_worker(**FAST_RECOVERY)
    try:
        time.sleep(LEASE + 0.5)  # the dead worker's lease runs out
        assert publish_runs_recover_task() == [run.pk]
        run = wait_status(run, "succeeded", 120)
    finally:
        stop_worker(second)
    assert run.attempts >= 2
    assert run.releases_created == TEAMS
    assert Release.objects.count() == TEAMS
    assert set(Release.objects.values_list("revision", flat=True)) == {1}


def test_a_publish_past_its_time_limit_stops_stores_nothing_and_says_why() -> None:
    org = big_organisation()
    celery_app.control.purge()
    # A 2 s lease: the publish (about 3 s) meets its soft time limit after 1 s.
    worker = start_worker(PUBLISH_LEASE_SECONDS="2")
    try:
        run = publish_run_request(organization=org, actor=OPERATOR)
        run = wait_status(run, "failed", 60)
    finally:
        stop_worker(worker)
    assert "stopped after 1 s, before its lease ran out" in run.error
    assert run.finished_at is not None and run.releases_created == 0
    assert not Release.objects.exists()
