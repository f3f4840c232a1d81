"""Database reads that fill the host's delivery index (and answer fetches without one)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from django.db.models import Q, QuerySet

from policyhub.delivery.entries import DeviceEntry, Served, ServedSet, TeamEntry
from policyhub.fleet.models import Device
from policyhub.releases.models import Release, ReleaseVariant
from providers.codex_versions import Span, parse_version

TeamKey = tuple[int, str]
# (credential hash, device) pairs: a device is listed under its credential and, when it has
# one, under its fetch credential (which only the native channel accepts).
DeviceRow = tuple[str, DeviceEntry]

_DEVICE_FIELDS = ("credential_hash", "fetch_credential_hash", "pk", "organization_id", "team__path")


def _device_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[DeviceRow]:
    for credential_hash, fetch_hash, pk, organization_id, path in rows:
        entry = DeviceEntry(str(pk), organization_id, path)
        yield credential_hash, entry
        if fetch_hash:
            yield fetch_hash, entry


def device_load(credential_hash: str) -> DeviceEntry | None:
    """The unrevoked device holding this credential or fetch credential (by hash)."""
    found = devices_load([credential_hash])
    return found.get(credential_hash)


def devices_load(hashes: Collection[str]) -> dict[str, DeviceEntry]:
    """Every unrevoked device holding one of these hashes, under each of its hashes."""
    rows = Device.objects.filter(
        Q(credential_hash__in=hashes) | Q(fetch_credential_hash__in=hashes),
        revoked_at__isnull=True,
    ).values_list(*_DEVICE_FIELDS)
    return dict(_device_rows(rows))


def devices_all(chunk_size: int = 5000) -> Iterator[DeviceRow]:
    """Every unrevoked device, streamed (a million devices never sit in memory at once)."""
    rows = (
        Device.objects.filter(revoked_at__isnull=True)
        .values_list(*_DEVICE_FIELDS)
        .iterator(chunk_size=chunk_size)
    )
    return _device_rows(rows)


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


def _team_entries(currents: QuerySet[Release]) -> Iterator[tuple[TeamKey, TeamEntry]]:
    """The entries of the teams whose current releases these are, a few hundred at a time."""
    chunk: list[Release] = []
    rows = (
        currents.select_related("previous")
        .only(
            *_SERVED_FIELDS,
            "organization_id",
            "team_path",
            "rollout_percent",
            *(f"previous__{f}" for f in _SERVED_FIELDS),
        )
        .iterator(chunk_size=200)
    )
    for release in rows:
        chunk.append(release)
        if len(chunk) == 200:
            yield from _entries_of(chunk)
            chunk = []
    yield from _entries_of(chunk)


def _entries_of(currents: list[Release]) -> Iterator[tuple[TeamKey, TeamEntry]]:
    variants = _variants(
        {r.pk for r in currents} | {r.previous_id for r in currents if r.previous_id}
    )
    for current in currents:
        entry = TeamEntry(
            _served(current, variants), _served(current.previous, variants), current.rollout_percent
        )
        yield (current.organization_id, current.team_path), entry


NO_RELEASE = TeamEntry(None, None, 100)


def team_load(organization_id: int, team_path: str) -> TeamEntry:
    return teams_load([(organization_id, team_path)]).get((organization_id, team_path), NO_RELEASE)


def teams_load(keys: Collection[TeamKey]) -> dict[TeamKey, TeamEntry]:
    """The entries of these teams that have a current release (the others have none)."""
    paths: dict[int, set[str]] = defaultdict(set)
    for organization_id, path in keys:
        paths[organization_id].add(path)
    wanted = Q()
    for organization_id, team_paths in paths.items():
        wanted |= Q(organization_id=organization_id, team_path__in=team_paths)
    if not paths:
        return {}
    return dict(_team_entries(Release.objects.filter(wanted, current=True)))


def teams_all() -> Iterator[tuple[TeamKey, TeamEntry]]:
    """Every team's entry, streamed."""
    return _team_entries(Release.objects.filter(current=True))
