"""What a web process holds per device and per team to answer a fetch without a query."""

from __future__ import annotations

from dataclasses import dataclass

from providers.codex_versions import Span, Version, in_spans


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    device_id: str
    organization_id: int
    team_path: str


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
