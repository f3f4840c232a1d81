"""Celery tasks of the changes app: the beat's scheduled publish."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from policyhub.changes.services import publish_runs_request_due


@shared_task(
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=3,
)
def publish_due_change_sets() -> int:
    """Every minute (CELERY_BEAT_SCHEDULE): request a publish run where a change set is due."""
    return len(publish_runs_request_due())
