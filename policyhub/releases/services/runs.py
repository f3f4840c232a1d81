"""Asking for a publish: the run's row, handed to a worker once it is committed."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from policyhub.accounts.models import Organization
from policyhub.releases.models import PublishRun
from policyhub.releases.services.publishing import publish_run_create
from policyhub.releases.tasks import publish_run_enqueue


@transaction.atomic
def publish_run_request(*, organization: Organization, actor: User | None) -> PublishRun:
    """Record a publish run and hand it to a worker once the row is committed."""
    run = publish_run_create(organization=organization, actor=actor)
    publish_run_enqueue(run.pk)
    return run
