"""What a web process holds per device and per team to answer a fetch without a query."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from providers.codex_versions import Span, Version, in_spans


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    device_id: str
    organization_id: int
    team_path: str
    # The version of the team's entry in the host's index when the device was read there (None:
    # read elsewhere, or the index holds no entry): saves the fetch a second lookup.
    team_version: int | None = None


@dataclass(frozen=True, slots=True)
class ServedSet:
    """Another file set of a release as the agent gets it, and the Codex versions it is for."""

    spans: tuple[Span, ...]
    etag: str
    agent_body: bytes


@dataclass(frozen=True, slots=True)
class Served:
    """One release as it goes out: quoted ETag and both bodies of its own set (the window's
    newest version), already encoded, and the agent bodies of its other sets."""

    release_id: int
    revision: int
    etag: str
    agent_body: bytes
    native_body: bytes
    # The versions the release's own set is for, and the other sets (lowest versions first).
    spans: tuple[Span, ...] = ()
    variants: tuple[ServedSet, ...] = ()

    def for_agent(self, codex: Version | None) -> tuple[str, bytes]:
        """(ETag, body) for a machine running Codex `codex`: the set whose versions hold it;
        below every set, the lowest; otherwise (above the window, or unknown) the newest."""
        if codex is None or not self.variants:
            return self.etag, self.agent_body
        if in_spans(codex, self.spans):
            return self.etag, self.agent_body
        for variant in self.variants:
            if in_spans(codex, variant.spans):
                return variant.etag, variant.agent_body
        lowest = self.variants[0]
        if codex < lowest.spans[0][0] and self.spans and lowest.spans[0][0] < self.spans[0][0]:
            return lowest.etag, lowest.agent_body  # below the window, and the oldest set
        return self.etag, self.agent_body


@dataclass(frozen=True, slots=True)
class TeamEntry:
    current: Served | None
    previous: Served | None
    rollout_percent: int


# How a team's entry is stored in the host's delivery index (delivery/index.py): JSON, whose
# bodies are the release's own JSON text (UTF-8), so no pickle crosses processes.


def _span_out(spans: tuple[Span, ...]) -> list[Any]:
    return [[list(start), list(until) if until else None] for start, until in spans]


def _version(raw: list[int]) -> Version:
    major, minor, patch = raw
    return (major, minor, patch)


def _span_in(raw: list[Any]) -> tuple[Span, ...]:
    return tuple((_version(start), _version(until) if until else None) for start, until in raw)


def _served_out(served: Served | None) -> dict[str, Any] | None:
    if served is None:
        return None
    return {
        "id": served.release_id,
        "revision": served.revision,
        "etag": served.etag,
        "agent": served.agent_body.decode(),
        "native": served.native_body.decode(),
        "spans": _span_out(served.spans),
        "variants": [
            {"spans": _span_out(v.spans), "etag": v.etag, "agent": v.agent_body.decode()}
            for v in served.variants
        ],
    }


def _served_in(raw: dict[str, Any] | None) -> Served | None:
    if raw is None:
        return None
    return Served(
        raw["id"],
        raw["revision"],
        raw["etag"],
        raw["agent"].encode(),
        raw["native"].encode(),
        _span_in(raw["spans"]),
        tuple(
            ServedSet(_span_in(v["spans"]), v["etag"], v["agent"].encode()) for v in raw["variants"]
        ),
    )


def team_entry_dumps(entry: TeamEntry) -> str:
    return json.dumps(
        {
            "current": _served_out(entry.current),
            "previous": _served_out(entry.previous),
            "rollout": entry.rollout_percent,
        },
        separators=(",", ":"),
    )


def team_entry_loads(text: str) -> TeamEntry:
    raw = json.loads(text)
    return TeamEntry(_served_in(raw["current"]), _served_in(raw["previous"]), raw["rollout"])
