"""Celery tasks of the releases app: they take ids, re-read rows and call one service.

Time limits: a publish that cannot finish within its lease (PUBLISH_LEASE_SECONDS) is stopped
before another worker may claim the run, and fails with the reason on its row; the periodic
sweeps keep the default limits (CELERY_TASK_SOFT_TIME_LIMIT), well inside their minute.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import InterfaceError, OperationalError, transaction
from kombu.exceptions import OperationalError as BrokerUnreachable

from policyhub.actors import Actor
from policyhub.releases.selectors import (
    organizations_with_releases_to_resign,
    publish_runs_stalled,
)
from policyhub.releases.services.publishing import (
    PublishInterrupted,
    publish_run_execute,
    publish_runs_create_due,
)
from policyhub.releases.services.resign import releases_resign

# Who re-signs what a revoked key signed when the revocation's own task was lost.
KEY_REVOCATION = Actor.system("key-revocation")

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    max_retries=5,
    soft_time_limit=settings.PUBLISH_SOFT_TIME_LIMIT,
    time_limit=settings.PUBLISH_TIME_LIMIT,
)
def publish_run_task(self: Task[Any, Any], run_id: int, claim: int | None = None) -> str:
    try:
        run = publish_run_execute(run_id=run_id, claim=claim)
    except PublishInterrupted as lost:
        # The run is still marked as this task's claim: its retry takes it up again at once (any
        # other worker only once the lease has run out).
        raise self.retry(args=(run_id, lost.claim), exc=lost, countdown=_backoff(self)) from lost
    except (OperationalError, InterfaceError) as exc:
        raise self.retry(exc=exc, countdown=_backoff(self)) from exc
    return "claimed elsewhere" if run is None else run.status


def _backoff(task: Task[Any, Any]) -> int:
    """Seconds before the next try: Celery's exponential backoff with full jitter (what its
    retry_backoff gives): at most 1, 2, 4, 8 and 16 seconds for the five retries."""
    return get_exponential_backoff_interval(
        factor=1, retries=task.request.retries, maximum=600, full_jitter=True
    )


def publish_run_enqueue(run_id: int) -> None:
    """Hand the run to a worker when the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _hand_over(run_id))


def _hand_over(run_id: int) -> None:
    _send(publish_run_task, (run_id,), f"publish run {run_id}")


def _send(task: Task[Any, Any], args: tuple[object, ...], what: str) -> None:
    """Send a task whose row is committed already. When the broker cannot take it (Redis down),
    the work stays recorded (a pending run, a release signed by a revoked key) and the recovery
    sweep of Celery beat sends it again within a couple of minutes of the broker's return: the
    failure is logged, not raised. Raised, it would turn the request that asked, whose writes
    are committed, into an error page, and stop the sweep at the first of its items."""
    try:
        # No time limits in the message: the worker applies its own, from its
        # PUBLISH_LEASE_SECONDS, rather than those of whichever process asked (Celery sends the
        # sender's by default). (None is how Celery means "none given"; its type stubs only
        # admit numbers.)
        task.apply_async(
            args,
            time_limit=None,  # type: ignore[arg-type]
            soft_time_limit=None,  # type: ignore[arg-type]
        )
    except BrokerUnreachable as error:
        logger.warning(
            "%s waits for the recovery sweep: the broker did not take its task (%s)", what, error
        )


@shared_task
def publish_runs_recover_task() -> list[int]:
    """Celery beat, every minute: runs that lost their task or their worker go out again."""
    stalled = publish_runs_stalled()
    for run_id in stalled:
        publish_run_enqueue(run_id)
    return stalled


@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=3,
)
def publish_due_change_sets_task() -> int:
    """Celery beat, every minute: a publish run for each organisation with a change set due."""
    runs = publish_runs_create_due()
    for run in runs:
        publish_run_enqueue(run.pk)
    return len(runs)


# A re-signing after a revocation is a publish of every team the key signed for: the same limits.
@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=settings.PUBLISH_SOFT_TIME_LIMIT,
    time_limit=settings.PUBLISH_TIME_LIMIT,
)
def releases_resign_task(
    organization_id: int, actor_kind: str, actor_label: str, user_id: int | None
) -> dict[str, object]:
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    done = releases_resign(
        organization_id=organization_id, actor=Actor.recorded(actor_kind, actor_label, user)
    )
    return {"releases": done.releases, "teams": done.teams, "refused": done.refused}


def releases_resign_enqueue(organization_id: int, actor: Actor) -> None:
    """Re-sign, once the surrounding transaction commits, what the organisation's revoked keys
    signed, in the name of `actor` (at once outside a transaction; in-process without a broker)."""
    args = (organization_id, actor.kind.value, actor.label, actor.user.pk if actor.user else None)
    transaction.on_commit(
        lambda: _send(releases_resign_task, args, f"re-signing for organisation {organization_id}")
    )


@shared_task
def releases_resign_recover_task() -> list[int]:
    """Celery beat, every minute: organisations that still serve a release signed by a revoked
    key (the revocation's task was lost, say the broker was down at commit) are re-signed."""
    organizations = organizations_with_releases_to_resign()
    for organization_id in organizations:
        releases_resign_enqueue(organization_id, KEY_REVOCATION)
    return organizations
