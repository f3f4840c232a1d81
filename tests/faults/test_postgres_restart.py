"""PostgreSQL restarted in the middle of a publish, in a cluster of the test's own: the publish
stores every team's release or none, and its run does not stay stuck: it ends, succeeded with
every release or failed saying why.

Either way the worker's own retry finishes it, long before the run's lease would let the recovery
sweep hand it on: a quick restart (the worker's next query finds the server up again) is handed
back as pending and claimed again; a server that stays down longer leaves the worker unable to
record the hand-back, so its retry takes up the run it still holds (by its attempt number, which
any other claim would have changed). Both are run here.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from django.db import connection
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.audit.models import AuditEvent
from policyhub.policies.domain import TeamSpec
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.runs import publish_run_request
from tests.conftest import OPERATOR, make_policy
from tests.faults.conftest import WorkerStarter
from tests.faults.services import PostgresServer, wait_until

pytestmark = [pytest.mark.database]

# About a second and a half of publishing: long enough to be cut in the middle.
TEAMS = 1500
# Far longer than the recovery takes: a run that waited for its lease to run out (and for the
# recovery sweep) would fail the test.
LEASE = 120


def organisation(teams: int) -> Organization:
    org = Organization.objects.create(slug="acme", name="Acme")
    base = make_policy('[config]\nmodel = "gpt-5.5"\nmodel_provider = "openai"\n')
    specs = {f"t{i:04d}": TeamSpec(f"t{i:04d}", f"Team {i}") for i in range(teams)}
    policy_apply(organization=org, wanted=replace(base, teams=specs), actor=OPERATOR)
    return org


def transactions_that_stored(org: Organization) -> int:
    """How many transactions wrote the organisation's releases (each row's xmin)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT xmin::text) FROM releases_release WHERE organization_id = %s",
            [org.pk],
        )
        return int(cursor.fetchone()[0])


@pytest.mark.parametrize("down", [0.0, 2.0], ids=["restart", "down-2s"])
def test_a_publish_cut_by_a_database_restart_stores_all_or_nothing_and_its_run_ends(
    own_database: PostgresServer, workers: WorkerStarter, down: float
) -> None:
    org = organisation(TEAMS)
    workers("restart", PUBLISH_LEASE_SECONDS=str(LEASE))
    run = publish_run_request(organization=org, actor=OPERATOR)
    wait_until(lambda: PublishRun.objects.get(pk=run.pk).status != "pending", "a worker's claim")
    time.sleep(0.3)  # into rendering the teams, well before the transaction commits
    cut = time.monotonic()
    own_database.restart(down)
    connection.close()  # this process's connection ended with the server

    deadline = time.monotonic() + 60
    while (run := PublishRun.objects.get(pk=run.pk)).status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, f"run {run.pk} stuck {run.status}"
        time.sleep(0.1)
    assert run.lease_expires_at is not None and run.lease_expires_at > timezone.now()
    steps = list(
        AuditEvent.objects.filter(object_type="publish_run", object_key=str(run.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )
    print(f"\n{down:g} s down: run {run.status} {time.monotonic() - cut:.1f} s after the cut,")
    print(f"  steps: {steps}")

    # The publish was cut (its first claim never finished) and claimed again.
    assert run.attempts >= 2 and steps.count("publish_run.start") >= 2, steps
    # Finished by the worker's own retry, with every team's release, made by the attempt that
    # finished in one transaction: none was left behind by the one that was cut.
    assert run.status == "succeeded", run.error
    releases = Release.objects.filter(organization=org)
    assert run.releases_created == TEAMS
    assert releases.count() == TEAMS
    assert set(releases.values_list("revision", flat=True)) == {1}
    assert transactions_that_stored(org) == 1
