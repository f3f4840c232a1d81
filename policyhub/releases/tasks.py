"""Celery tasks of the releases app: they take ids, re-read rows and call one service.

Time limits: a publish that cannot finish within its lease (PUBLISH_LEASE_SECONDS) is stopped
before another worker may claim the run, and fails with the reason on its row; the periodic
sweeps are short and give way to their next turn a minute later.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from policyhub.releases.selectors import publish_runs_stalled
from policyhub.releases.services.publishing import publish_run_execute, publish_runs_create_due

# A minute between turns of Celery beat: each sweep is done well before the next one.
SWEEP_SOFT_LIMIT, SWEEP_HARD_LIMIT = 45, 55


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
    # The soft limit raises inside the publish (its transaction rolls back, the run is marked
    # failed); the hard limit ends a worker that did not stop. Both fall before the lease ends.
    soft_time_limit=settings.PUBLISH_LEASE_SECONDS - 60,
    time_limit=settings.PUBLISH_LEASE_SECONDS - 30,
)
def publish_run_task(run_id: int) -> str:
    run = publish_run_execute(run_id=run_id)
    return "claimed elsewhere" if run is None else run.status


def publish_run_enqueue(run_id: int) -> None:
    """Hand the run to a worker when the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: publish_run_task.delay(run_id))


@shared_task(soft_time_limit=SWEEP_SOFT_LIMIT, time_limit=SWEEP_HARD_LIMIT)
def publish_runs_recover_task() -> list[int]:
    """Celery beat, every minute: runs that lost their task or their worker go out again."""
    stalled = publish_runs_stalled()
    for run_id in stalled:
        publish_run_task.delay(run_id)
    return stalled


@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=SWEEP_SOFT_LIMIT,
    time_limit=SWEEP_HARD_LIMIT,
)
def publish_due_change_sets_task() -> int:
    """Celery beat, every minute: a publish run for each organisation with a change set due."""
    runs = publish_runs_create_due()  # committed on return
    for run in runs:
        publish_run_task.delay(run.pk)
    return len(runs)
