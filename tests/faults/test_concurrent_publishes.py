"""Two publishes of one organisation at once, each in a worker process of its own: both run at
the same time, yet the lock on the organisation makes one wait for the other, so every changed
team gets exactly one new release and no revision is taken twice."""

from __future__ import annotations

import time
from typing import Any

import pytest

from policyhub.accounts.models import Organization
from policyhub.audit.models import AuditEvent
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.runs import publish_run_request
from tests.conftest import OPERATOR, make_policy
from tests.faults.conftest import WorkerStarter
from tests.faults.services import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

# Two subtrees of this many teams each: publishing one takes over half a second, which the
# second publish is asked for well within.
CHILDREN = 350


def tree(effort: str) -> str:
    """Subtree a (its teams inherit `effort` from a) and subtree b, which the edit leaves alone."""
    teams = "".join(f'[teams."{p}/c{i:03d}"]\n' for p in "ab" for i in range(CHILDREN))
    return (
        '[config]\nmodel = "gpt-5.5"\nmodel_provider = "openai"\n'
        f'[teams.a.config]\nmodel_reasoning_effort = "{effort}"\n[teams.b]\n{teams}'
    )


def published(*asked: PublishRun) -> list[PublishRun]:
    ids = [run.pk for run in asked]
    finished = PublishRun.objects.filter(pk__in=ids, status__in=("succeeded", "failed"))
    wait_until(lambda: finished.count() == len(ids), f"publish runs {ids} finishing", 60)
    return list(PublishRun.objects.filter(pk__in=ids).order_by("pk"))


def test_two_publishes_at_once_in_two_workers_make_one_release_per_changed_team(
    cast: dict[str, Any], workers: WorkerStarter
) -> None:
    acme: Organization = cast["acme"]
    policy_apply(organization=acme, wanted=make_policy(tree("high")), actor=OPERATOR)
    workers("one", "two")
    (first,) = published(publish_run_request(organization=acme, actor=OPERATOR))
    assert first.releases_created == 2 * CHILDREN + 2, first.error

    policy_apply(organization=acme, wanted=make_policy(tree("low")), actor=OPERATOR)
    # The second is asked for while the first is publishing, holding the organisation's lock.
    one = publish_run_request(organization=acme, actor=OPERATOR)
    wait_until(lambda: PublishRun.objects.get(pk=one.pk).status == "running", "the first's claim")
    time.sleep(0.1)
    runs = published(one, publish_run_request(organization=acme, actor=OPERATOR))
    assert [run.status for run in runs] == ["succeeded", "succeeded"], [r.error for r in runs]
    # They ran at the same time, one in each worker (each has a single pool process): each was
    # claimed once, both before either finished, and neither was handed back (as a publish
    # that loses its transaction, to a deadlock say, is).
    assert [run.attempts for run in runs] == [1, 1]
    started = [run.started_at for run in runs if run.started_at]
    ended = [run.finished_at for run in runs if run.finished_at]
    assert len(started) == len(ended) == 2 and max(started) < min(ended)
    print(
        "\n"
        + "\n".join(
            f"run {run.pk}: claimed {run.started_at:%H:%M:%S.%f}, finished "
            f"{run.finished_at:%H:%M:%S.%f}, {run.releases_created} release(s)"
            for run in runs
        )
    )
    assert not AuditEvent.objects.filter(action="publish_run.requeue").exists()
    # One published subtree a; the other, let in after it, found nothing left to publish.
    assert sorted(run.releases_created for run in runs) == [0, CHILDREN + 1]
    assert [run.teams for run in runs] == [2 * CHILDREN + 2] * 2
    changed = {"a", *(f"a/c{i:03d}" for i in range(CHILDREN))}
    second = list(Release.objects.filter(organization=acme, revision=2))
    assert sorted(r.team_path for r in second) == sorted(changed)
    assert Release.objects.filter(organization=acme).count() == 2 * CHILDREN + 2 + len(changed)
    current = dict(
        Release.objects.filter(organization=acme, current=True).values_list("team_path", "revision")
    )
    assert len(current) == 2 * CHILDREN + 2
    assert {path for path, revision in current.items() if revision == 2} == changed
    assert all('model_reasoning_effort = "low"' in r.files["config.toml"] for r in second)
