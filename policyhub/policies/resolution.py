"""Resolution root -> team: requirements only narrow, config defaults merge with the deeper node
winning, and every effective value remembers which node set it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from policyhub.policies.areas import canonical_approval
from policyhub.policies.domain import Json, Node
from policyhub.policies.narrowing import KEPT, NARROWING, AllowList, Pin
from providers.base import Issue

# Allow-lists and the values Codex always adds to them (`disabled` web search).
ALLOWLIST_KEYS = {
    key: rule.always for key, rule in NARROWING.items() if isinstance(rule, AllowList)
}


def allowed_values(requirements: Json, key: str) -> list[Any]:
    """The values an allow-list admits, including those Codex always adds (`disabled` search)."""
    listed = list(requirements[key])
    return listed + [v for v in sorted(ALLOWLIST_KEYS.get(key, ())) if v not in listed]


@dataclass(frozen=True)
class Provenance:
    """Which node set an effective value, and how."""

    node: str
    how: str = "set"  # "set", "narrowed", "appended", "derived"

    def __str__(self) -> str:
        return self.node if self.how == "set" else f"{self.node} ({self.how})"


@dataclass
class Resolved:
    """The effective policy of one team, with the provenance of every value."""

    requirements: Json = field(default_factory=dict)
    requirements_from: dict[str, Provenance] = field(default_factory=dict)
    config: Json = field(default_factory=dict)
    config_from: dict[str, Provenance] = field(default_factory=dict)
    profiles: dict[str, Json] = field(default_factory=dict)
    profiles_from: dict[str, dict[str, Provenance]] = field(default_factory=dict)
    mcp_servers: dict[str, Json] = field(default_factory=dict)
    mcp_servers_from: dict[str, Provenance] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    def provenance(self) -> Json:
        """Which node set every effective value, as plain data (stored with each release)."""
        return {
            "requirements": {k: str(v) for k, v in sorted(self.requirements_from.items())},
            "config": {k: str(v) for k, v in sorted(self.config_from.items())},
            "profiles": {
                name: {k: str(v) for k, v in sorted(keys.items())}
                for name, keys in sorted(self.profiles_from.items())
            },
            "mcp_servers": {k: str(v) for k, v in sorted(self.mcp_servers_from.items())},
        }


def resolve(chain: Sequence[tuple[str, Node]]) -> Resolved:
    """Fold the chain (root first) into one effective policy."""
    out = Resolved()
    for label, node in chain:
        _narrow_requirements(out, label, _canonical(node.requirements))
        _merge_config(out, label, _canonical(node.config))
        for name, profile in node.profiles.items():
            merged = out.profiles.setdefault(name, {})
            origin = out.profiles_from.setdefault(name, {})
            for key, value in _canonical(profile).items():
                merged[key] = value
                origin[key] = Provenance(label)
        for name, server in node.mcp_servers.items():
            out.mcp_servers[name] = dict(server)
            out.mcp_servers_from[name] = Provenance(label)
    return out


def _canonical(settings: Json) -> Json:
    """Approval policies as Codex compares them (granular tables with their defaults)."""
    if "allowed_approval_policies" in settings:
        listed = settings["allowed_approval_policies"]
        settings = {
            **settings,
            "allowed_approval_policies": [canonical_approval(v) for v in listed],
        }
    if "approval_policy" in settings:
        settings = {**settings, "approval_policy": canonical_approval(settings["approval_policy"])}
    return settings


def _merge_config(out: Resolved, label: str, config: Json) -> None:
    for key, value in config.items():
        if key == "features":
            features = out.config.setdefault("features", {})
            for name, flag in value.items():
                features[name] = flag
                out.config_from[f"features.{name}"] = Provenance(label)
            continue
        out.config[key] = value
        out.config_from[key] = Provenance(label)


def _narrow_requirements(out: Resolved, label: str, requirements: Json) -> None:
    have, origin = out.requirements, out.requirements_from

    def widen(path: str, message: str) -> None:
        parent = origin.get(path.split(".")[0]) or origin.get(path)
        out.issues.append(
            Issue(
                "error",
                f"requirements.{path}",
                f"{message} (set by {parent.node if parent else '?'})",
                label,
            )
        )

    for key, value in requirements.items():
        if key == "features":
            _narrow_map(
                out,
                label,
                "features",
                value,
                lambda old, new: old == new,
                widen,
                "changes the pinned feature from {old!r} to {new!r}",
            )
        elif key == "mcp_servers":
            _narrow_mcp_allowlist(out, label, value, widen)
        elif key not in have:
            have[key], origin[key] = deepcopy(value), Provenance(label)
        else:
            folded = NARROWING.get(key, Pin()).fold(have[key], value, key, widen)
            if folded is not None and folded[1] != KEPT:
                have[key], origin[key] = folded[0], Provenance(label, folded[1])


def _narrow_map(
    out: Resolved,
    label: str,
    key: str,
    value: Json,
    same: Callable[[Any, Any], bool],
    widen: Callable[[str, str], None],
    message: str,
) -> None:
    merged = out.requirements.setdefault(key, {})
    for name, new in value.items():
        path = f"{key}.{name}"
        if name in merged and not same(merged[name], new):
            parent = out.requirements_from[path]
            out.issues.append(
                Issue(
                    "error",
                    f"requirements.{path}",
                    message.format(old=merged[name], new=new) + f" (set by {parent.node})",
                    label,
                )
            )
            continue
        merged[name] = deepcopy(new)
        out.requirements_from[path] = Provenance(label)
    out.requirements_from.setdefault(key, Provenance(label))


def _narrow_mcp_allowlist(
    out: Resolved, label: str, value: Json, widen: Callable[[str, str], None]
) -> None:
    parent = out.requirements.get("mcp_servers")
    if parent is not None:
        for name, entry in value.items():
            if name not in parent:
                widen(f"mcp_servers.{name}", "allows an MCP server the parent allow-list does not")
                return
            if parent[name] != entry:
                widen(
                    f"mcp_servers.{name}.identity",
                    "changes the identity the parent allow-list requires",
                )
                return
    out.requirements["mcp_servers"] = deepcopy(value)
    out.requirements_from["mcp_servers"] = Provenance(
        label, "narrowed" if parent is not None else "set"
    )
