"""Resolution root -> team: requirements only narrow, config defaults merge with the deeper node
winning, and every effective value remembers which node set it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from policyhub.policies.domain import Json, Node
from providers.base import Issue

# Allow-lists a child may only shrink. `disabled` web search is always allowed by Codex.
ALLOWLIST_KEYS = {
    "allowed_approval_policies": frozenset(),
    "allowed_approvals_reviewers": frozenset(),
    "allowed_sandbox_modes": frozenset(),
    "allowed_web_search_modes": frozenset({"disabled"}),
    "allowed_login_methods": frozenset(),
    "allowed_chatgpt_workspaces": frozenset(),
}
# Values a child may repeat but never change.
PIN_KEYS = (
    "cli_auth_credentials_store",
    "enforce_residency",
    "model_provider",
    "check_for_update_on_startup",
)
# Booleans where only one direction narrows: key -> the value a child may not move away from.
ONE_WAY_BOOLS = {"allow_login_shell": False, "allow_managed_hooks_only": True}


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
        _narrow_requirements(out, label, node.requirements)
        _merge_config(out, label, node.config)
        for name, profile in node.profiles.items():
            merged = out.profiles.setdefault(name, {})
            origin = out.profiles_from.setdefault(name, {})
            for key, value in profile.items():
                merged[key] = value
                origin[key] = Provenance(label)
        for name, server in node.mcp_servers.items():
            out.mcp_servers[name] = dict(server)
            out.mcp_servers_from[name] = Provenance(label)
    return out


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
        if key in ALLOWLIST_KEYS and key in have:
            extra = [v for v in value if v not in allowed_values(have, key)]
            if extra:
                widen(
                    key,
                    f"widens the allowed set with {', '.join(map(repr, extra))}; a team may only narrow it",
                )
                continue
            have[key], origin[key] = list(value), Provenance(label, "narrowed")
        elif key in PIN_KEYS and key in have:
            # Repeating a pin changes nothing (the parent stays its setter); changing it widens.
            if have[key] != value:
                widen(
                    key,
                    f"changes the pinned value {have[key]!r} to {value!r}; a team may not change a pin",
                )
        elif (
            key in ONE_WAY_BOOLS
            and key in have
            and have[key] == ONE_WAY_BOOLS[key]
            and value != have[key]
        ):
            widen(key, f"sets {value!r} where a parent enforces {have[key]!r}")
        elif key == "features":
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
        elif key == "rules" and "rules" in have:
            rules = have["rules"].get("prefix_rules", []) + value.get("prefix_rules", [])
            have["rules"], origin["rules"] = {"prefix_rules": rules}, Provenance(label, "appended")
        elif key == "additional_developer_instructions" and key in have:
            have[key], origin[key] = f"{have[key]}\n\n{value}", Provenance(label, "appended")
        else:
            have[key], origin[key] = deepcopy(value), Provenance(label)


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
