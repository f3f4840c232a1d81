"""Reads of signing keys, releases and publish runs."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Max, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.releases.models import (
    PublishRun,
    Release,
    ReleaseVariant,
    RevocationList,
    SigningKey,
    TeamRender,
)
from policyhub.releases.services.signed import LEGACY_CODEX
from providers.codex_versions import Span, Version, in_spans, parse_version


def signing_keys(organization: Organization) -> QuerySet[SigningKey]:
    """Every key of the organisation, active first: retired ones still verify old releases."""
    return SigningKey.objects.filter(organization=organization).order_by("status", "-created_at")


def signing_keys_by_id(organization_id: int) -> QuerySet[SigningKey]:
    """What machines pin: every key of the organisation that is not revoked, oldest first, with
    its endorser. A revoked key is never offered again (agents before 0.3.1 would pin it anew
    through its endorsement); the revocation list names it instead."""
    return (
        SigningKey.objects.filter(organization_id=organization_id)
        .exclude(status=SigningKey.Status.REVOKED)
        .select_related("endorsed_by")
        .order_by("created_at", "id")
    )


def signing_key_of(organization: Organization, key_id: str) -> SigningKey | None:
    return SigningKey.objects.filter(organization=organization, key_id=key_id).first()


def revocation_list(organization_id: int) -> RevocationList | None:
    """The organisation's newest signed list of revoked keys; None before any revocation."""
    return (
        RevocationList.objects.filter(organization_id=organization_id)
        .select_related("signing_key")
        .first()
    )


def self_revoked_keys(organization_id: int) -> QuerySet[SigningKey]:
    """Revoked keys with their own signature over their revocation, oldest revocation first."""
    return (
        SigningKey.objects.filter(organization_id=organization_id, status=SigningKey.Status.REVOKED)
        .exclude(self_revocation="")
        .only("key_id", "public_key", "revoked_at", "self_revocation")
        .order_by("revoked_at", "id")
    )


def releases_to_resign() -> QuerySet[Release]:
    """Current releases that serve something signed by a revoked key: their own files, or, in a
    staged rollout, the release the devices outside it get. Each needs signing again."""
    revoked = SigningKey.Status.REVOKED
    return Release.objects.filter(current=True).filter(
        Q(signing_key__status=revoked)
        | Q(rollout_percent__lt=100, previous__signing_key__status=revoked)
    )


def organizations_with_releases_to_resign() -> list[int]:
    return list(
        releases_to_resign().values_list("organization_id", flat=True).distinct().order_by()
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


def last_revisions(organization: Organization, paths: list[str] | None = None) -> dict[str, int]:
    """The highest revision ever stored per team path (deleted teams keep counting), of `paths`
    or of every path."""
    releases = Release.objects.filter(organization=organization)
    if paths is not None:
        releases = releases.filter(team_path__in=paths)
    rows = releases.values("team_path").annotate(top=Max("revision"))
    return {row["team_path"]: row["top"] for row in rows}


def team_renders(organization: Organization) -> dict[str, TeamRender]:
    """What each team's inputs last rendered to (releases.models.TeamRender), by team path."""
    rows = TeamRender.objects.filter(organization=organization).only(
        "id", "team_path", "inputs_digest", "content_digest"
    )
    return {row.team_path: row for row in rows}


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


# What a listing of releases reads: never their files, manifests or served bodies, which are
# kilobytes each, nor those of the release each one replaced.
RELEASE_LISTED = (
    "id",
    "organization_id",
    "team_path",
    "revision",
    "current",
    "content_digest",
    "codex",
    "rollout_percent",
    "created_at",
    "aborted_at",
    "publish_run_id",
    "signing_key__key_id",
    "previous__revision",
)


def release_list(organization: Organization, *, team_path: str | None = None) -> QuerySet[Release]:
    """Every stored release of the organisation (or of one team), newest revision first."""
    releases = Release.objects.filter(organization=organization)
    if team_path is not None:
        releases = releases.filter(team_path=team_path)
    return (
        releases.select_related("signing_key", "previous")
        .only(*RELEASE_LISTED)
        .order_by("team_path", "-revision")
    )


def release_get(organization: Organization, release_id: int) -> Release | None:
    """One release's metadata with the Codex versions of each of its file sets, no files."""
    variants = ReleaseVariant.objects.only("id", "release_id", "codex").order_by("id")
    return (
        release_list(organization)
        .prefetch_related(Prefetch("variants", queryset=variants))
        .filter(pk=release_id)
        .first()
    )


def release_with_files(organization: Organization, release_id: int) -> Release | None:
    """One release with every file set, signed manifests included."""
    return _with_files(organization).filter(pk=release_id).first()


def release_of_team_with_files(
    organization: Organization, team_path: str, revision: int
) -> Release | None:
    return _with_files(organization).filter(team_path=team_path, revision=revision).first()


def _with_files(organization: Organization) -> QuerySet[Release]:
    """Releases with their file sets, without the served bodies (the same files again)."""
    variants = ReleaseVariant.objects.defer("agent_body").order_by("id")
    return (
        Release.objects.filter(organization=organization)
        .defer("agent_body", "native_body", "provenance")
        .select_related("signing_key")
        .prefetch_related(Prefetch("variants", queryset=variants))
    )


def publish_runs(organization: Organization) -> QuerySet[PublishRun]:
    return PublishRun.objects.filter(organization=organization)


def publish_run_releases(run: PublishRun, limit: int) -> QuerySet[Release]:
    """The first `limit` releases a run made, by team path: a glance, not the whole list."""
    # Through the manager, not `run.releases`: a related manager would read each row's deferred
    # publish_run_id back, one query per release.
    return (
        Release.objects.filter(publish_run=run)
        .only("id", "team_path", "revision")
        .order_by("team_path")[:limit]
    )


@dataclass(frozen=True)
class StoredSet:
    """A stored file set of a release: the Codex versions it serves, what it was made for, its
    files with their digests, and the signed manifest over them."""

    codex: dict[str, Any]
    files: dict[str, str]
    hashes: dict[str, str]
    manifest: str
    signature: str

    @property
    def spans(self) -> list[Span]:
        return [
            (parse_version(start), parse_version(until) if until else None)
            for start, until in self.codex["versions"]
        ]


def codex_sets(release: Release) -> list[dict[str, Any]]:
    """What each file set of a release is for, its own first (its `variants` prefetched)."""
    return [release.codex or LEGACY_CODEX, *(v.codex for v in release.variants.all())]


def file_sets(release: Release) -> list[StoredSet]:
    """Every file set of a release read with its files (`release_with_files`), its own first."""
    own = StoredSet(
        release.codex or LEGACY_CODEX,
        release.files,
        release.hashes,
        release.manifest,
        release.signature,
    )
    others = [
        StoredSet(v.codex, v.files, v.hashes, v.manifest, v.signature)
        for v in release.variants.all()
    ]
    return [own, *others]


@dataclass(frozen=True)
class FileDiff:
    name: str
    status: str  # added, removed, changed or unchanged
    diff: str  # unified, empty when unchanged


@dataclass(frozen=True)
class VersionsDiff:
    """How the files changed for some Codex versions: those served one file set by the older
    release and one (maybe another) by the newer."""

    spans: list[Span]
    files: list[FileDiff]


def release_diff(older: Release, newer: Release) -> list[VersionsDiff]:
    """The unified diff of two releases of a team, for every Codex version either serves.

    Releases cut the versions differently (a window moved, a feature came into use), so the
    versions are cut at every boundary of either, and the cuts that both serve with the same
    pair of file sets are compared once. A version only one release serves compares with no files.
    """
    before, after = file_sets(older), file_sets(newer)
    points = sorted(
        {
            point
            for s in (*before, *after)
            for span in s.spans
            for point in span
            if point is not None
        }
    )
    pairs: dict[tuple[int | None, int | None], list[Span]] = {}
    for start, until in zip(points, [*points[1:], None], strict=True):
        pair = (_serving(before, start), _serving(after, start))
        if pair == (None, None):
            continue
        spans = pairs.setdefault(pair, [])
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], until)  # adjacent: one span
        else:
            spans.append((start, until))
    return [
        VersionsDiff(
            spans,
            file_diffs(
                before[old].files if old is not None else {},
                after[new].files if new is not None else {},
                f"r{older.revision}",
                f"r{newer.revision}",
            ),
        )
        for (old, new), spans in pairs.items()
    ]


def _serving(sets: list[StoredSet], version: Version) -> int | None:
    return next((n for n, s in enumerate(sets) if in_spans(version, s.spans)), None)


def file_diffs(
    old: Mapping[str, str], new: Mapping[str, str], old_label: str, new_label: str
) -> list[FileDiff]:
    """Each file of either set: added, removed, changed (with its unified diff) or unchanged."""
    diffs = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        status = (
            "added"
            if before is None
            else "removed"
            if after is None
            else "unchanged"
            if before == after
            else "changed"
        )
        lines = difflib.unified_diff(
            (before or "").splitlines(keepends=True),
            (after or "").splitlines(keepends=True),
            fromfile=f"{old_label}/{name}" if before is not None else "/dev/null",
            tofile=f"{new_label}/{name}" if after is not None else "/dev/null",
        )
        diffs.append(FileDiff(name, status, "".join(lines)))
    return diffs


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
