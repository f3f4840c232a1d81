"""An organisation's whole policy as plain, immutable data.

The same shape comes from the database (`selectors.org_policy`) and from a policy-as-code document
(`document.parse`), so validation, resolution and rendering never care where it came from, and a
document can be checked completely before a single row is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from providers.codex_versions import DEFAULT_VERSION

Json = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A named provider endpoint: its kind, the Codex provider id it renders as, its settings."""

    name: str
    kind: str
    provider_id: str
    settings: Json = field(default_factory=dict)
    capabilities: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    """What one node (the organisation root or a team) sets; empty sections set nothing."""

    requirements: Json = field(default_factory=dict)
    config: Json = field(default_factory=dict)
    profiles: Mapping[str, Json] = field(default_factory=dict)
    mcp_servers: Mapping[str, Json] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.requirements or self.config or self.profiles or self.mcp_servers)


@dataclass(frozen=True)
class TeamSpec:
    """A team of the tree, addressed by its slug path (`platform/ci`)."""

    path: str
    name: str
    node: Node = field(default_factory=Node)

    @property
    def slug(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent_path(self) -> str | None:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else None


# Requirement keys whose pin can be written into managed_config.toml, which every Codex version
# enforces over user config and `-c` (docs/codex.md, "Layers"), and the key it is written as
# there (a single-valued allow-list becomes the forced value). Each was checked on the real
# releases (tests/providers/test_codex_versions.py); a workspace pin cannot be checked offline.
MANAGED_KEYS = {
    "model_provider": "model_provider",
    "allowed_login_methods": "forced_login_method",
    "cli_auth_credentials_store": "cli_auth_credentials_store",
}


@dataclass(frozen=True)
class CodexWindow:
    """The Codex versions an organisation's machines run, and how keys some of them ignore are
    handled: backed by a managed_config.toml pin, or accepted as unenforced there."""

    min_version: str = DEFAULT_VERSION
    max_version: str = DEFAULT_VERSION
    # Requirement keys (or `features.<name>`) the admin accepts to go unenforced where ignored.
    accept_unenforced: tuple[str, ...] = ()
    # Requirement keys (of MANAGED_KEYS) also written into managed_config.toml.
    managed_pins: tuple[str, ...] = ()

    def is_default(self) -> bool:
        return self == CodexWindow()


@dataclass(frozen=True)
class OrgPolicy:
    """Everything an organisation governs: endpoints, the root node and the team tree."""

    slug: str
    name: str
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    root: Node = field(default_factory=Node)
    teams: Mapping[str, TeamSpec] = field(default_factory=dict)
    codex: CodexWindow = field(default_factory=CodexWindow)

    @property
    def root_label(self) -> str:
        return f"{self.slug} (organisation)"

    def chain(self, path: str) -> list[tuple[str, Node]]:
        """The nodes that shape `path`, root first: the organisation, each ancestor, the team.

        The empty path is the organisation root on its own.
        """
        chain = [(self.root_label, self.root)]
        if not path:
            return chain
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            chain.append((prefix, self.teams[prefix].node))
        return chain

    def with_chains(self, paths: Iterable[str]) -> OrgPolicy:
        """This policy with only the teams of `paths` and their ancestors: what validating and
        rendering those teams reads of the tree."""
        kept: set[str] = set()
        for path in paths:
            parts = path.split("/")
            kept.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
        return replace(self, teams={path: self.teams[path] for path in sorted(kept)})
