"""Asking for a publish: the run's row, handed to a worker once it is committed."""

from __future__ import annotations

from django.db import transaction

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.actors import Actor
from policyhub.releases.models import PublishRun
from policyhub.releases.services.publishing import publish_run_create
from policyhub.releases.tasks import publish_run_enqueue


@transaction.atomic
def publish_run_request(*, actor: Actor, organization: Organization) -> PublishRun:
    """Record a publish run and hand it to a worker once the row is committed."""
    authorize(actor, organization, Permission.PUBLISH, doing="publish")
    run = publish_run_create(organization=organization, actor=actor)
    publish_run_enqueue(run.pk)
    return run
