"""Database reads that fill a web process's delivery cache (and answer fetches without one)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from policyhub.delivery.entries import DeviceEntry, Served, ServedSet, TeamEntry
from policyhub.fleet.models import Device
from policyhub.releases.models import Release, ReleaseVariant
from providers.codex_versions import Span, parse_version


def device_load(credential_hash: str) -> DeviceEntry | None:
    row = (
        Device.objects.filter(credential_hash=credential_hash, revoked_at__isnull=True)
        .values_list("pk", "organization_id", "team__path")
        .first()
    )
    return DeviceEntry(str(row[0]), row[1], row[2]) if row else None


_SERVED_FIELDS = ("id", "revision", "etag", "agent_body", "native_body", "codex")


def _spans(codex: Mapping[str, Any]) -> tuple[Span, ...]:
    return tuple(
        (parse_version(start), parse_version(until) if until else None)
        for start, until in codex.get("versions", ())
    )


def _variants(release_ids: Iterable[int]) -> dict[int, tuple[ServedSet, ...]]:
    """The other file sets of these releases, lowest Codex versions first."""
    found: dict[int, list[ServedSet]] = defaultdict(list)
    rows = ReleaseVariant.objects.filter(release_id__in=list(release_ids)).values_list(
        "release_id", "codex", "etag", "agent_body"
    )
    for release_id, codex, etag, body in rows.iterator(chunk_size=500):
        found[release_id].append(ServedSet(_spans(codex), f'"{etag}"', body.encode()))
    return {
        release_id: tuple(sorted(sets, key=lambda s: s.spans[0][0]))
        for release_id, sets in found.items()
    }


def _served(
    release: Release | None, variants: Mapping[int, tuple[ServedSet, ...]]
) -> Served | None:
    if release is None:
        return None
    return Served(
        release.pk,
        release.revision,
        f'"{release.etag}"',
        release.agent_body.encode(),
        release.native_body.encode(),
        _spans(release.codex),
        variants.get(release.pk, ()),
    )


def team_load(organization_id: int, team_path: str) -> TeamEntry:
    current = (
        Release.objects.filter(organization_id=organization_id, team_path=team_path, current=True)
        .select_related("previous")
        .only(*_SERVED_FIELDS, "rollout_percent", *(f"previous__{f}" for f in _SERVED_FIELDS))
        .first()
    )
    if current is None:
        return TeamEntry(None, None, 100)
    variants = _variants([current.pk, current.previous_id or current.pk])
    return TeamEntry(
        _served(current, variants), _served(current.previous, variants), current.rollout_percent
    )


def delivery_snapshot() -> tuple[dict[str, DeviceEntry], dict[tuple[int, str], TeamEntry]]:
    """Every unrevoked device and every team's current release, as the cache holds them."""
    devices = {
        digest: DeviceEntry(str(pk), organization_id, path)
        for digest, pk, organization_id, path in Device.objects.filter(revoked_at__isnull=True)
        .values_list("credential_hash", "pk", "organization_id", "team__path")
        .iterator(chunk_size=5000)
    }
    currents = list(
        Release.objects.filter(current=True)
        .select_related("previous")
        .only(
            *_SERVED_FIELDS,
            "organization_id",
            "team_path",
            "rollout_percent",
            *(f"previous__{f}" for f in _SERVED_FIELDS),
        )
        .iterator(chunk_size=500)
    )
    variants = _variants(
        {r.pk for r in currents} | {r.previous_id for r in currents if r.previous_id}
    )
    teams = {
        (current.organization_id, current.team_path): TeamEntry(
            _served(current, variants), _served(current.previous, variants), current.rollout_percent
        )
        for current in currents
    }
    return devices, teams
