"""Reads of signing keys, releases and publish runs."""

from __future__ import annotations

from django.db.models import Max, QuerySet

from policyhub.accounts.models import Organization
from policyhub.releases.models import PublishRun, Release, SigningKey


def signing_keys(organization: Organization) -> QuerySet[SigningKey]:
    """Every key of the organisation, active first: retired ones still verify old releases."""
    return SigningKey.objects.filter(organization=organization).order_by("status", "-created_at")


def current_releases(organization: Organization) -> QuerySet[Release]:
    return Release.objects.filter(organization=organization, current=True).order_by("team_path")


def last_revisions(organization: Organization) -> dict[str, int]:
    """The highest revision ever stored per team path (deleted teams keep counting)."""
    rows = (
        Release.objects.filter(organization=organization)
        .values("team_path")
        .annotate(top=Max("revision"))
    )
    return {row["team_path"]: row["top"] for row in rows}


def publish_run_get(run_id: int) -> PublishRun | None:
    return PublishRun.objects.filter(pk=run_id).first()
