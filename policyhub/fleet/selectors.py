"""Reads of the fleet: tokens, devices, and fleet status (what each machine has, per team counts
of current, behind, failing, stale and pending machines, and rollout progress).

Fleet status is one rule, computed by the database: `device_states` annotates each device with
the revision it should have, the one it applied, its last activity, its state and where its
Codex version lies against the support window. Lists filter, count and page on those columns in
SQL, so their cost does not grow with the fleet, and a device's detail is the same query.

Release receipts say which devices fetched and applied each release, and when; a device's
report history keeps each status report that changed what it reports. Both are read a page at
a time, filtered in SQL, and as plain rows for exports."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    FilteredRelation,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest
from django.db.models.lookups import Exact
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.fleet.models import (
    Device,
    DeviceReceipt,
    DeviceReport,
    EnrollmentToken,
    RolloutIncludes,
    version_sort_key,
)
from policyhub.policies.document import codex_window
from policyhub.releases.models import Release
from policyhub.releases.selectors import release_list
from policyhub.teams.models import Team
from providers.codex_versions import NEWEST_MEASURED, Version, parse_version

STATES = ("current", "behind", "failing", "stale", "pending")
# A revoked device is in none of the five: fleet status leaves it out, its detail says this.
REVOKED = "revoked"
DEVICE_STATES = (*STATES, REVOKED)
# Where a device's reported Codex version lies against the organisation's support window.
WINDOW_STATES = ("inside", "below", "above", "unknown")
# Below or above the window: the filter for machines that need another Codex.
OUTSIDE = "outside"
# Newer than the newest measured Codex release, inside the window or above it: the filter for
# machines whose files were made for an older release (a flag beside the window state).
UNMEASURED = "unmeasured"
# No revision, where no release and nothing applied must count as equal (revisions are > 0).
NO_REVISION = Value(-1)
# The largest id a BigAutoField holds; a larger one names no row (rather than a database error).
MAX_BIGINT = 2**63 - 1
# The largest revision a release holds (a PostgreSQL integer).
MAX_REVISION = 2**31 - 1


class DeviceState(TypedDict):
    """What `device_states` adds to each device."""

    expected_revision: int | None
    applied: int | None
    last_activity: datetime | None
    state: str
    codex_window: str
    codex_unmeasured: bool


if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    # A device with those annotations, as the type checker sees it (so lookups on them check).
    StatedDevice = WithAnnotations[Device, DeviceState]
else:
    # Python 3.11 cannot subscript the alias with two arguments at run time.
    StatedDevice = Device


def enrollment_tokens(organization: Organization) -> QuerySet[EnrollmentToken]:
    return EnrollmentToken.objects.filter(organization=organization).select_related("team")


def enrollment_token_get(organization: Organization, token_id: int) -> EnrollmentToken | None:
    if not 0 < token_id <= MAX_BIGINT:
        return None
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


def token_usable(now: datetime) -> Q:
    """Tokens that can enrol a machine now: `token_refusal` as SQL, for filtering lists."""
    return Q(revoked_at__isnull=True, expires_at__gt=now) & (
        Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses"))
    )


def window_of(organization: Organization) -> tuple[Version, Version]:
    window = codex_window(organization.codex_window)
    return parse_version(window.min_version), parse_version(window.max_version)


def _window_state(window: tuple[Version, Version]) -> Case:
    """One of WINDOW_STATES, from Device.codex_sort_key: "" (no version) is unknown, though it
    sorts below everything."""
    low, high = (version_sort_key(bound) for bound in window)
    return Case(
        When(codex_sort_key="", then=Value("unknown")),
        When(codex_sort_key__lt=low, then=Value("below")),
        When(codex_sort_key__gt=high, then=Value("above")),
        default=Value("inside"),
        output_field=CharField(),
    )


def unmeasured_sort_key(sort_key: str) -> bool:
    """Whether a Device.codex_sort_key is a version newer than the newest measured release
    ("" for no version sorts below every key)."""
    return sort_key > version_sort_key(NEWEST_MEASURED)


def _unmeasured() -> ExpressionWrapper[Q]:
    """`unmeasured_sort_key` in SQL."""
    return ExpressionWrapper(
        Q(codex_sort_key__gt=version_sort_key(NEWEST_MEASURED)), output_field=BooleanField()
    )


# The team's current release, joined to each device: one hash join over the organisation's
# current releases, where a subquery per device took 0.22 s of the dashboard at 100,000 devices
# and the join 0.12 s (bench/pages.py). At most one release of a team is current (a unique
# constraint), so the join repeats no device.
def _team_release() -> FilteredRelation:
    """A new one per query: Django resolves a FilteredRelation in place."""
    return FilteredRelation(
        "organization__releases",
        condition=Q(
            organization__releases__current=True,
            organization__releases__team_path=F("team__path"),
        ),
    )


def _expected_revision() -> Case:
    """The revision a device should have: its team's current release (joined as `team_release`), or
    during a staged rollout that leaves the device out, the release it replaced
    (`rollout_serves_current`)."""
    return Case(
        When(team_release__rollout_percent__gte=100, then=F("team_release__revision")),
        When(team_release__previous__isnull=True, then=F("team_release__revision")),
        When(
            RolloutIncludes(F("team_release__id"), F("pk"), F("team_release__rollout_percent")),
            then=F("team_release__revision"),
        ),
        default=F("team_release__previous__revision"),
    )


def _state(stale_before: datetime) -> Case:
    """pending (never heard from), stale (silent too long), failing (the agent reported errors),
    current (has what it should, no release counting as having it) or behind; revoked first."""
    has_expected = Exact(
        Coalesce("applied", NO_REVISION), Coalesce("expected_revision", NO_REVISION)
    )
    return Case(
        When(revoked_at__isnull=False, then=Value(REVOKED)),
        When(last_activity__isnull=True, enrolled_at__lt=stale_before, then=Value("stale")),
        When(last_activity__isnull=True, then=Value("pending")),
        When(last_activity__lt=stale_before, then=Value("stale")),
        When(Q(reported_at__isnull=False) & ~Q(errors=[]), then=Value("failing")),
        When(has_expected, then=Value("current")),
        default=Value("behind"),
        output_field=CharField(),
    )


def device_states(
    organization: Organization, *, include_revoked: bool = False, now: datetime | None = None
) -> QuerySet[StatedDevice]:
    """The organisation's enrolled devices, each annotated with `expected_revision`, `applied`
    (what the agent reported writing, else what Codex was served), `last_activity` (the later
    of its last fetch and report), `state`, `codex_window` and `codex_unmeasured`."""
    stale_before = (now or timezone.now()) - timedelta(hours=settings.FLEET_STALE_AFTER_HOURS)
    found = Device.objects.filter(organization=organization).select_related("team")
    if not include_revoked:
        found = found.filter(revoked_at__isnull=True)
    return (
        found.annotate(team_release=_team_release())
        .annotate(
            expected_revision=_expected_revision(),
            applied=Case(
                When(reported_at__isnull=False, then=F("applied_revision")),
                default=F("revision_served"),
            ),
            # Coalesced: SQLite's GREATEST is NULL when either side is.
            last_activity=Greatest(
                Coalesce("last_seen_at", "reported_at"), Coalesce("reported_at", "last_seen_at")
            ),
        )
        .annotate(state=_state(stale_before))
        .annotate(
            codex_window=_window_state(window_of(organization)), codex_unmeasured=_unmeasured()
        )
    )


def in_codex_window(found: QuerySet[StatedDevice], where: str) -> QuerySet[StatedDevice]:
    """Devices of `device_states` whose Codex lies `where`: one of WINDOW_STATES, OUTSIDE
    (below or above), or UNMEASURED (newer than the newest measured release)."""
    if where == OUTSIDE:
        return found.filter(codex_window__in=("below", "above"))
    if where == UNMEASURED:
        return found.filter(codex_unmeasured=True)
    return found.filter(codex_window=where)


def device_get(organization: Organization, device_id: uuid.UUID | str) -> StatedDevice | None:
    """The organisation's device with this id, revoked or not, with its state; None for unknown
    or malformed ids."""
    try:
        key = uuid.UUID(str(device_id))
    except ValueError:
        return None
    return device_states(organization, include_revoked=True).filter(pk=key).first()


@dataclass(frozen=True)
class DeviceStatus:
    """One machine as the `device list` command shows it."""

    device: Device
    state: str
    expected_revision: int | None
    applied_revision: int | None
    last_activity: datetime | None
    codex_window: str = "unknown"
    codex_unmeasured: bool = False

    @property
    def outside_window(self) -> bool:
        return self.codex_window in ("below", "above")


def device_statuses(
    organization: Organization,
    *,
    team_path: str | None = None,
    state: str | None = None,
    codex_window: str | None = None,
) -> list[DeviceStatus]:
    """Every enrolled (unrevoked) device with its state, filtered in SQL (`codex_window`: one
    of WINDOW_STATES, OUTSIDE or UNMEASURED), in team, host name and enrolment order."""
    found = device_states(organization).order_by("team__path", "hostname", "enrolled_at")
    if team_path is not None:
        found = found.filter(team__path=team_path)
    if state is not None:
        found = found.filter(state=state)
    if codex_window is not None:
        found = in_codex_window(found, codex_window)
    return [
        DeviceStatus(
            device,
            device.state,
            device.expected_revision,
            device.applied,
            device.last_activity,
            device.codex_window,
            device.codex_unmeasured,
        )
        for device in found
    ]


@dataclass(frozen=True)
class CodexVersionSeen:
    version: str
    devices: int
    window: str  # inside, below, above or unknown
    unmeasured: bool = False  # newer than the newest measured release


def codex_versions_seen(organization: Organization) -> list[CodexVersionSeen]:
    """The Codex versions the organisation's enrolled devices last reported, with counts,
    newest first, then what is no version (devices that never reported count under "")."""
    rows = (
        Device.objects.filter(organization=organization, revoked_at__isnull=True)
        .annotate(window=_window_state(window_of(organization)))
        .values_list("codex_version", "window", "codex_sort_key")
        .annotate(count=Count("pk"))
        .order_by("-codex_sort_key", "-codex_version")
    )
    return [
        CodexVersionSeen(version, count, window, unmeasured_sort_key(key))
        for version, window, key, count in rows
    ]


def fleet_teams(organization: Organization) -> QuerySet[Team]:
    """The teams fleet status shows, those with a current release or an enrolled device, in
    path order; each with its current release's `revision` and `rollout_percent` (None for
    none)."""
    current = Release.objects.filter(
        organization=organization, team_path=OuterRef("path"), current=True
    ).order_by()
    enrolled = Device.objects.filter(
        organization=organization, team=OuterRef("pk"), revoked_at__isnull=True
    )
    return (
        Team.objects.filter(organization=organization)
        .only("id", "path")
        .annotate(
            revision=Subquery(current.values("revision")[:1]),
            rollout_percent=Subquery(current.values("rollout_percent")[:1]),
        )
        .filter(Q(revision__isnull=False) | Exists(enrolled))
        .order_by("path")
    )


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


def team_fleet(organization: Organization, teams: Sequence[Team]) -> list[TeamFleet]:
    """Fleet status of `teams` (rows of `fleet_teams`, a page of them), in their order: one
    GROUP BY query over their devices, whatever their number."""
    shown = {team.pk: _team_fleet(team) for team in teams}
    rows = (
        device_states(organization)
        .filter(team__in=list(shown))
        .values_list("team_id", "state", "expected_revision", "applied")
        .annotate(devices=Count("pk"))
        .order_by()
    )
    for team_id, state, expected, applied, count in rows:
        team = shown[team_id]
        team.counts[state] += count
        if team.rollout is not None and expected == team.revision:
            team.rollout["devices_targeted"] += count
            if applied == expected:
                team.rollout["devices_applied"] += count
    return list(shown.values())


def _team_fleet(team: Team) -> TeamFleet:
    revision: int | None = team.revision  # type: ignore[attr-defined]
    percent: int | None = team.rollout_percent  # type: ignore[attr-defined]
    rollout = None
    if percent is not None and percent < 100:
        rollout = {
            "revision": revision,
            "percent": percent,
            "devices_targeted": 0,  # devices inside the rollout
            "devices_applied": 0,  # of those, devices that have the new revision
        }
    return TeamFleet(team.path, revision, rollout=rollout)


# --- release receipts -----------------------------------------------------------------------

# fetched: fetched and not (yet) reported applied; applied: the agent reported it applied;
# errors: the device's last status report while it was served the release carried errors.
RECEIPT_STATES = ("fetched", "applied", "errors")
_RECEIPT_STATE_FILTERS = {
    "fetched": Q(first_fetched_at__isnull=False, applied_at__isnull=True),
    "applied": Q(applied_at__isnull=False),
    "errors": ~Q(errors=[]),
}


def receipts_in_state(found: QuerySet[DeviceReceipt], state: str) -> QuerySet[DeviceReceipt]:
    """Receipts in one of RECEIPT_STATES."""
    return found.filter(_RECEIPT_STATE_FILTERS[state])


def receipts_release(organization: Organization, release_id: int) -> Release | None:
    """The organisation's release whose receipts are asked for, metadata only; None for an
    unknown id."""
    if not 0 < release_id <= MAX_BIGINT:
        return None
    return release_list(organization).filter(pk=release_id).first()


def receipts_release_of_team(
    organization: Organization, team_path: str, revision: int
) -> Release | None:
    """The same, named as the pages name it: a team's path and a revision."""
    if not 0 < revision <= MAX_REVISION:
        return None
    return release_list(organization, team_path=team_path).filter(revision=revision).first()


def release_receipts(organization: Organization, release_id: int) -> QuerySet[DeviceReceipt]:
    """A release's receipts, newest first, each with its device (host name, team now); narrow
    them with `receipts_in_state`."""
    return (
        DeviceReceipt.objects.filter(organization=organization, release_id=release_id)
        .select_related("device__team")
        .order_by("-id")
    )


@dataclass(frozen=True)
class ReceiptCounts:
    """How far a release got: devices that fetched it, applied it, reported errors for it, and
    the devices of its team (now, unrevoked) that have not fetched it."""

    fetched: int
    applied: int
    errors: int
    team_devices: int
    not_fetched: int


def release_receipt_counts(organization: Organization, release: Release) -> ReceiptCounts:
    """Two aggregate queries, whatever the number of devices."""
    counted = DeviceReceipt.objects.filter(organization=organization, release=release).aggregate(
        fetched=Count("pk", filter=Q(first_fetched_at__isnull=False)),
        applied=Count("pk", filter=_RECEIPT_STATE_FILTERS["applied"]),
        errors=Count("pk", filter=_RECEIPT_STATE_FILTERS["errors"]),
    )
    fetched_it = DeviceReceipt.objects.filter(
        device=OuterRef("pk"), release=release, first_fetched_at__isnull=False
    )
    team = Device.objects.filter(
        organization=organization, team__path=release.team_path, revoked_at__isnull=True
    ).aggregate(devices=Count("pk"), not_fetched=Count("pk", filter=~Exists(fetched_it)))
    return ReceiptCounts(
        fetched=counted["fetched"],
        applied=counted["applied"],
        errors=counted["errors"],
        team_devices=team["devices"],
        not_fetched=team["not_fetched"],
    )


def device_receipts(organization: Organization, device_id: uuid.UUID) -> QuerySet[DeviceReceipt]:
    """A device's receipts, newest first, each with its release's team and revision (never
    the release's files or bodies)."""
    return (
        DeviceReceipt.objects.filter(organization=organization, device_id=device_id)
        .select_related("release")
        .only(
            *(f.name for f in DeviceReceipt._meta.concrete_fields),
            "release__id",
            "release__team_path",
            "release__revision",
            "release__current",
            "release__aborted_at",
        )
        .order_by("-id")
    )


def device_reports(organization: Organization, device_id: uuid.UUID) -> QuerySet[DeviceReport]:
    """A device's status reports that changed what it reports, newest first."""
    return DeviceReport.objects.filter(
        device__organization=organization, device_id=device_id
    ).order_by("-reported_at", "-id")


def receipts_of_release(release: Release) -> QuerySet[DeviceReceipt]:
    """A release's receipts with what an export shows beside them: the release's team and
    revision, the device's hostname (set at enrolment)."""
    return DeviceReceipt.objects.filter(release=release).annotate(
        team=F("release__team_path"),
        revision=F("release__revision"),
        hostname=F("device__hostname"),
    )
