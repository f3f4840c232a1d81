"""Celery tasks of the releases app: take ids, re-read rows, call one service."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from policyhub.releases.services import publish_run_execute, publish_runs_recover


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def publish_run_task(run_id: int) -> str:
    run = publish_run_execute(run_id=run_id)
    return "claimed elsewhere" if run is None else run.status


@shared_task
def publish_runs_recover_task() -> list[int]:
    """Celery beat, every minute: runs that lost their task or their worker go out again."""
    return publish_runs_recover()
