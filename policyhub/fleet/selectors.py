"""Reads of the fleet: tokens, devices, and fleet status (what each machine has, per team counts
of current, behind, failing, stale and pending machines, and rollout progress)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, QuerySet
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.fleet.models import Device, EnrollmentToken
from policyhub.policies.document import codex_window
from policyhub.releases.models import Release
from policyhub.releases.selectors import rollout_serves_current
from providers.codex_versions import Version, parse_version

STATES = ("current", "behind", "failing", "stale", "pending")
# Where a device's reported Codex version lies against the organisation's support window.
WINDOW_STATES = ("inside", "below", "above", "unknown")


def enrollment_tokens(organization: Organization) -> QuerySet[EnrollmentToken]:
    return EnrollmentToken.objects.filter(organization=organization).select_related("team")


def enrollment_token_get(organization: Organization, token_id: int) -> EnrollmentToken | None:
    return enrollment_tokens(organization).filter(pk=token_id).first()


def token_refusal(token: EnrollmentToken | None, now: datetime) -> str | None:
    """Why this token cannot enrol a machine now, or None if it can."""
    if token is None:
        return "unknown enrolment token"
    if token.revoked_at is not None:
        return "this enrolment token was revoked"
    if token.expires_at <= now:
        return "this enrolment token has expired"
    if token.max_uses is not None and token.uses >= token.max_uses:
        return "this enrolment token has been used up"
    return None


def devices(
    organization: Organization, *, team_path: str | None = None, include_revoked: bool = False
) -> QuerySet[Device]:
    found = Device.objects.filter(organization=organization).select_related("team")
    if team_path is not None:
        found = found.filter(team__path=team_path)
    if not include_revoked:
        found = found.filter(revoked_at__isnull=True)
    return found.order_by("team__path", "hostname", "enrolled_at")


def device_get(organization: Organization, device_id: str) -> Device | None:
    """The organisation's device with this id; None for unknown or malformed ids."""
    try:
        key = uuid.UUID(str(device_id))
    except ValueError:
        return None
    return devices(organization, include_revoked=True).filter(pk=key).first()


@dataclass(frozen=True)
class _TeamRelease:
    release_id: int
    revision: int
    rollout_percent: int
    previous_revision: int | None

    def expected_for(self, device_id: str) -> int:
        """The revision a device of the team should have now (staged rollouts included)."""
        if self.previous_revision is None or rollout_serves_current(
            release_id=self.release_id,
            percent=self.rollout_percent,
            has_previous=True,
            device_id=device_id,
        ):
            return self.revision
        return self.previous_revision


def _team_releases(organization: Organization) -> dict[str, _TeamRelease]:
    rows = Release.objects.filter(organization=organization, current=True).values_list(
        "team_path", "pk", "revision", "rollout_percent", "previous__revision"
    )
    return {path: _TeamRelease(pk, rev, pct, prev) for path, pk, rev, pct, prev in rows}


@dataclass(frozen=True)
class DeviceStatus:
    """One machine as fleet status shows it."""

    device: Device
    state: str
    expected_revision: int | None
    applied_revision: int | None
    last_activity: datetime | None
    codex_window: str = "unknown"

    @property
    def outside_window(self) -> bool:
        return self.codex_window in ("below", "above")


def window_of(organization: Organization) -> tuple[Version, Version]:
    window = codex_window(organization.codex_window)
    return parse_version(window.min_version), parse_version(window.max_version)


def window_state(reported: str, window: tuple[Version, Version]) -> str:
    """inside, below or above the window, or unknown (never reported, or not a version)."""
    try:
        version = parse_version(reported)
    except ValueError:
        return "unknown"
    low, high = window
    return "below" if version < low else "above" if version > high else "inside"


def _state(
    device: Device, expected: int | None, now: datetime, stale_after: timedelta
) -> tuple[str, int | None, datetime | None]:
    # The agent's report says what was written; a Codex-only machine applies what it is served.
    applied = device.applied_revision if device.reported_at else device.revision_served
    seen = [t for t in (device.last_seen_at, device.reported_at) if t is not None]
    last = max(seen) if seen else None
    if last is None:
        return ("stale" if now - device.enrolled_at > stale_after else "pending"), applied, None
    if now - last > stale_after:
        return "stale", applied, last
    if device.reported_at and device.errors:
        return "failing", applied, last
    return ("current" if applied == expected else "behind"), applied, last


def device_statuses(
    organization: Organization,
    *,
    team_path: str | None = None,
    state: str | None = None,
    codex_window: str | None = None,
) -> list[DeviceStatus]:
    """Every enrolled (unrevoked) device with its state and where its Codex version lies
    against the support window (`codex_window`: one of WINDOW_STATES, or "outside" for below
    or above); one query for devices, one for releases, whatever the fleet's size."""
    releases = _team_releases(organization)
    window = window_of(organization)
    now = timezone.now()
    stale_after = timedelta(hours=settings.FLEET_STALE_AFTER_HOURS)
    out = []
    for device in devices(organization, team_path=team_path):
        team_release = releases.get(device.team.path)
        expected = team_release.expected_for(str(device.pk)) if team_release else None
        found, applied, last = _state(device, expected, now, stale_after)
        status = DeviceStatus(
            device, found, expected, applied, last, window_state(device.codex_version, window)
        )
        if state is not None and found != state:
            continue
        if codex_window == "outside" and not status.outside_window:
            continue
        if codex_window not in (None, "outside") and status.codex_window != codex_window:
            continue
        out.append(status)
    return out


@dataclass(frozen=True)
class CodexVersionSeen:
    version: str
    devices: int
    window: str  # inside, below, above or unknown


def codex_versions_seen(organization: Organization) -> list[CodexVersionSeen]:
    """The Codex versions the organisation's enrolled devices last reported, with counts,
    newest first (devices that never reported count under "")."""
    window = window_of(organization)
    rows = devices(organization).values_list("codex_version").annotate(count=Count("pk")).order_by()
    seen = [CodexVersionSeen(v, n, window_state(v, window)) for v, n in rows]

    def order(item: CodexVersionSeen) -> tuple[int, Version, str]:
        try:
            return 0, parse_version(item.version), item.version
        except ValueError:
            return -1, (0, 0, 0), item.version

    return sorted(seen, key=order, reverse=True)


@dataclass
class TeamFleet:
    """Per team: how many machines are in each state, and how far a staged rollout got."""

    team_path: str
    revision: int | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    rollout: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _rollout_start(release: _TeamRelease) -> dict[str, Any]:
    return {
        "revision": release.revision,
        "percent": release.rollout_percent,
        "devices_targeted": 0,  # devices inside the rollout
        "devices_applied": 0,  # of those, devices that have the new revision
    }


def team_fleet(organization: Organization) -> list[TeamFleet]:
    """Fleet status per team that has a release or a device, sorted by team path."""
    releases = _team_releases(organization)
    teams: dict[str, TeamFleet] = {
        path: TeamFleet(path, release.revision) for path, release in releases.items()
    }
    for status in device_statuses(organization):
        path = status.device.team.path
        team = teams.setdefault(path, TeamFleet(path, None))
        team.counts[status.state] += 1
        release = releases.get(path)
        if release is not None and release.rollout_percent < 100:
            if team.rollout is None:
                team.rollout = _rollout_start(release)
            if status.expected_revision == release.revision:
                team.rollout["devices_targeted"] += 1
                if status.applied_revision == release.revision:
                    team.rollout["devices_applied"] += 1
    for path, release in releases.items():
        if release.rollout_percent < 100 and teams[path].rollout is None:
            teams[path].rollout = _rollout_start(release)
    return [teams[path] for path in sorted(teams)]
