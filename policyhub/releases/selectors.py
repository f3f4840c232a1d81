"""Reads of signing keys, releases and publish runs."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.db.models import Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.releases.models import PublishRun, Release, SigningKey


def signing_keys(organization: Organization) -> QuerySet[SigningKey]:
    """Every key of the organisation, active first: retired ones still verify old releases."""
    return SigningKey.objects.filter(organization=organization).order_by("status", "-created_at")


def signing_keys_by_id(organization_id: int) -> QuerySet[SigningKey]:
    """What machines pin: every key of the organisation, oldest first, with its endorser."""
    return (
        SigningKey.objects.filter(organization_id=organization_id)
        .select_related("endorsed_by")
        .order_by("created_at", "id")
    )


def current_releases(organization: Organization) -> QuerySet[Release]:
    return Release.objects.filter(organization=organization, current=True).order_by("team_path")


def current_releases_with_published_digest(organization: Organization) -> QuerySet[Release]:
    """Current releases, each annotated with `published_digest`: the content its team last got
    from a publish. A rollback or an aborted rollout makes the current content differ from it."""
    last_published = (
        Release.objects.filter(
            organization=organization, team_path=OuterRef("team_path"), publish_run__isnull=False
        )
        .order_by("-revision")
        .values("content_digest")[:1]
    )
    return current_releases(organization).annotate(published_digest=Subquery(last_published))


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


def publish_runs_busy() -> QuerySet[PublishRun]:
    """Runs waiting for a worker or running."""
    return PublishRun.objects.filter(
        status__in=[PublishRun.Status.PENDING, PublishRun.Status.RUNNING]
    )


def publish_runs_stalled() -> list[int]:
    """Runs that should be moving and are not: pending for over a minute (their task was lost,
    say the broker was down at commit time) or running past their lease (their worker died)."""
    now = timezone.now()
    stale = Q(status=PublishRun.Status.PENDING, created_at__lt=now - timedelta(minutes=1))
    expired = Q(status=PublishRun.Status.RUNNING, lease_expires_at__lt=now)
    return list(PublishRun.objects.filter(stale | expired).values_list("pk", flat=True))


def release_list(organization: Organization, *, team_path: str | None = None) -> QuerySet[Release]:
    """Every stored release of the organisation (or of one team), newest revision first."""
    releases = Release.objects.filter(organization=organization)
    if team_path is not None:
        releases = releases.filter(team_path=team_path)
    return releases.select_related("signing_key", "previous").order_by("team_path", "-revision")


def rollout_includes(*, release_id: int, device_id: str, percent: int) -> bool:
    """Whether a device is inside a release's rollout at `percent`.

    A stable hash of (release, device): the same answer on every call and in every process, an
    independent draw for each release, and a device inside at 10% stays inside at 30%.
    """
    digest = hashlib.sha256(f"{release_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


def rollout_serves_current(
    *, release_id: int, percent: int, has_previous: bool, device_id: str
) -> bool:
    """Whether a device of a team gets the team's current release (else the one it replaced):
    the one rule both fetch channels and fleet status follow."""
    if percent >= 100 or not has_previous:
        return True
    return rollout_includes(release_id=release_id, device_id=device_id, percent=percent)


def current_release_of_team(organization: Organization, team_path: str) -> Release | None:
    return (
        Release.objects.filter(organization=organization, team_path=team_path, current=True)
        .select_related("organization", "signing_key")
        .first()
    )


def release_for_device(
    *, organization: Organization, team_path: str, device_id: str
) -> Release | None:
    """The release a device of the team is served: the current one if the device is inside its
    rollout, else the release it replaced; None when the team has no release."""
    current = (
        Release.objects.filter(organization=organization, team_path=team_path, current=True)
        .select_related("previous")
        .first()
    )
    if current is None:
        return None
    serves_current = rollout_serves_current(
        release_id=current.pk,
        percent=current.rollout_percent,
        has_previous=current.previous is not None,
        device_id=device_id,
    )
    return current if serves_current else current.previous
