"""How each requirement narrows down the team tree: a team may make its parent's requirements
stricter, never looser (docs/codex.md, "Requirement areas", has the table this module is).

One rule per requirement key. A rule folds the value a team sets into the value its ancestors
left, and reports a widening instead of applying it:

* allow-list: a team may only drop values (`allowed_sandbox_modes`);
* deny-list: a team's values are added to its parent's (`review_domains`, managed hooks);
* pin: once set, a team may repeat the value but not change it (`chatgpt_base_url`);
* one-way: a boolean a team may set towards the safe side only (`allow_remote_control = false`);
* allow-map: name -> true/false, a team may turn names off, not on (`allowed_permission_profiles`);
* decision-map: name -> "allow"/"deny", a team may deny anything, allow only what was allowed;
* table: each key of the table by its own rule (`network_proxy`, `otel`);
* default: the deeper team wins (`models.new_thread` holds defaults Codex does not enforce);
* append: text or rules accumulate (`additional_developer_instructions`, prefix rules).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

# widen(path below `requirements`, message): report that a team loosens a requirement.
Widen = Callable[[str, str], None]
# What folding returns: the merged value and how it came about ("narrowed", "appended", "set",
# or KEPT: the ancestors' value stands and stays theirs), or None when the team widened it.
KEPT = "kept"
Folded = tuple[Any, str] | None


# What a key inside a table its parent set, but without that key, is folded against: FREE (set
# it as the parent's table did not restrict it), LOCKED (only the team that set the table may
# set it), or a value (Codex's own default on the safe side: `dangerously_*` switches are off).
FREE = "free"
LOCKED = "locked"


class Rule:
    """How a team's value for one key folds into what its ancestors set."""

    name = ""
    absent: Any = FREE

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        raise NotImplementedError


@dataclass(frozen=True)
class AllowList(Rule):
    # Values Codex always adds to the list (web search "disabled"): a team may list them too.
    always: frozenset[str] = frozenset()
    absent: Any = FREE
    name = "allow-list: a team may only remove values"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        admitted = [*old, *(v for v in sorted(self.always) if v not in old)]
        extra = [v for v in new if v not in admitted]
        if extra:
            shown = ", ".join(map(repr, extra))
            widen(path, f"widens the allowed set with {shown}; a team may only narrow it")
            return None
        return list(new), "narrowed"


class DenyList(Rule):
    name = "deny-list: a team's entries are added to its parent's"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        return [*old, *(v for v in new if v not in old)], "appended"


class AppendList(Rule):
    name = "append: a team's entries follow its parent's"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        return [*old, *new], "appended"


class Pin(Rule):
    name = "pin: a team may repeat the value, not change it"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        if old != new:
            widen(path, f"changes the pinned value {old!r} to {new!r}; a team may not change a pin")
            return None
        return old, KEPT


@dataclass(frozen=True)
class OneWay(Rule):
    # The value a team may not move away from once an ancestor set it.
    safe: bool
    absent: Any = FREE

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"one-way: once {str(self.safe).lower()}, a team may not change it"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        if old == self.safe and new != old:
            widen(path, f"sets {new!r} where a parent enforces {old!r}")
            return None
        return new, "set"


@dataclass(frozen=True)
class Decision(Rule):
    """One "allow"/"deny": a team may deny, and allow only what its parent allows."""

    absent: Any = "deny"
    name = "decision: a team may deny, allow only what its parent allows"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        if new == "allow" and old != "allow":
            widen(path, f"allows what the parent {'denies' if old else 'leaves unset'}")
            return None
        return (old, KEPT) if new == old else (new, "narrowed")


class Locked(Rule):
    """Set by the team that sets its table; a team below may repeat it, not change or add it."""

    absent = LOCKED
    name = "pin: a team may repeat the value, not change it"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        return Pin().fold(old, new, path, widen)


class AllowMap(Rule):
    name = "allow-map: a team may turn names off, not on"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        wider = [name for name, flag in new.items() if flag and not old.get(name)]
        if wider:
            widen(
                f"{path}.{wider[0]}",
                "allows what the parent does not; a team may only narrow it",
            )
            return None
        return {**old, **new}, "narrowed"


@dataclass(frozen=True)
class DecisionMap(Rule):
    absent: Any = FREE
    name = "decision-map: a team may deny any entry, allow only what its parent allows"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        wider = [k for k, v in new.items() if v == "allow" and old.get(k) != "allow"]
        if wider:
            was = old.get(wider[0])
            widen(
                f"{path}.{wider[0]}",
                f"allows what the parent {'denies' if was else 'does not list'}; a team may "
                "only deny more",
            )
            return None
        return {**old, **new}, "narrowed"


class Default(Rule):
    name = "default: the deeper team's value wins (Codex does not enforce it)"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        return _deep_merge(old, new), "set"


def _deep_merge(old: Any, new: Any) -> Any:
    """`new` over `old`, table by table: a key the deeper team leaves out keeps its value."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        merged = dict(deepcopy(old))
        for key, value in new.items():
            merged[key] = _deep_merge(merged.get(key), value)
        return merged
    return deepcopy(new)


class AppendText(Rule):
    name = "append: a team's text follows its parent's"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        return f"{old}\n\n{new}", "appended"


@dataclass(frozen=True)
class Table(Rule):
    """Each key of a table by its own rule; keys without one are pins. A key the parent's table
    lacks is folded against the rule's `absent`: set freely, refused, or compared with Codex's
    own default (so a parent's table without `dangerously_*` switches keeps them off)."""

    keys: Mapping[str, Rule] = field(default_factory=dict)
    otherwise: Rule = field(default_factory=Pin)
    absent: Any = field(default_factory=dict)
    name = "table: each key by its own rule"

    def fold(self, old: Any, new: Any, path: str, widen: Widen) -> Folded:
        merged = deepcopy(dict(old))
        hows = set()
        for key, value in new.items():
            rule = self.keys.get(key, self.otherwise)
            where = f"{path}.{key}"
            if key not in merged:
                if rule.absent == FREE:
                    merged[key] = deepcopy(value)
                    hows.add("set")
                    continue
                if rule.absent == LOCKED:
                    widen(
                        where, "is set by the team that set this table; a team below may not add it"
                    )
                    return None
            added = key not in merged
            folded = rule.fold(merged[key] if not added else rule.absent, value, where, widen)
            if folded is None:
                return None
            if added:
                # Written as the team wrote it, even where it equals the assumed default.
                merged[key] = deepcopy(value) if folded[1] == KEPT else folded[0]
                hows.add("set")
            elif folded[1] != KEPT:
                merged[key] = folded[0]
                hows.add(folded[1])
        if not hows:
            return old, KEPT
        return merged, hows.pop() if len(hows) == 1 else "narrowed"


# A permission switch of a parent's table: once off stays off, and off where the table is silent.
_SWITCH = OneWay(False, absent=False)
# What a browser may do on a site: each decision denied where the parent's table is silent.
_ORIGIN = Table(
    {
        "access": Decision(),
        "auto_review": Decision(),
        "downloads": Decision(),
        "full_cdp_access": Decision(),
        "uploads": Decision(),
        "persistent_approval": _SWITCH,
    },
    otherwise=Locked(),
)

# The rule of every requirement key (features and mcp_servers have their own, in resolution).
NARROWING: dict[str, Rule] = {
    "allowed_approval_policies": AllowList(),
    "allowed_approvals_reviewers": AllowList(),
    "allowed_sandbox_modes": AllowList(),
    "allowed_web_search_modes": AllowList(frozenset({"disabled"})),
    "allowed_login_methods": AllowList(),
    "allowed_chatgpt_workspaces": AllowList(),
    "cli_auth_credentials_store": Pin(),
    "enforce_residency": Pin(),
    "model_provider": Pin(),
    "check_for_update_on_startup": Pin(),
    "allow_login_shell": OneWay(False),
    "allow_managed_hooks_only": OneWay(True),
    "additional_developer_instructions": AppendText(),
    "rules": Table({"prefix_rules": AppendList()}),
    "model_providers": DenyList(),
    "allowed_permission_profiles": AllowMap(),
    "default_permissions": Pin(),
    "allow_appshots": OneWay(False),
    "allow_browser_and_computer_use": OneWay(False),
    "allow_remote_control": OneWay(False),
    "chatgpt_base_url": Pin(),
    "log_dir": Pin(),
    "sqlite_home": Pin(),
    "windows": Table(
        {
            "allowed_sandbox_implementations": AllowList(),
            "require_mxc": OneWay(True),
            "allow_mxc": OneWay(False, absent=False),
        }
    ),
    "auto_review": Table(
        {"required_on_models": DenyList(), "ignore_rules": AllowList(absent=LOCKED)}
    ),
    "feedback": Table({"enabled": OneWay(False)}),
    "in_app_browser": Table({"allow_external_browser_settings_import": OneWay(False)}),
    "application": Table(
        {
            "network": Table(
                {"enabled": OneWay(True), "domains": DecisionMap(absent={})}, absent=LOCKED
            )
        },
        otherwise=Locked(),
    ),
    "browser_use": Table(
        {
            "allow_history_access": _SWITCH,
            "disable_auto_review": _SWITCH,
            "allow_global_persistent_approval": _SWITCH,
            "allow_webmcp": _SWITCH,
            "default_origin_policy": _ORIGIN,
            "origins": Table(otherwise=_ORIGIN),
        },
        otherwise=Locked(),
    ),
    "computer_use": Table(
        {
            "allow_locked_computer_use": _SWITCH,
            "allow_persistent_approval": _SWITCH,
            "default_app_access": Decision(),
            "macos": Table({"bundle_ids": DecisionMap(absent={})}),
            "windows": Table({"aumids": DecisionMap(absent={})}, otherwise=Locked()),
        }
    ),
    "network_proxy": Table(
        {
            "enabled": OneWay(True),
            "allow_upstream_proxy": _SWITCH,
            "dangerously_allow_non_loopback_proxy": _SWITCH,
            "dangerously_allow_all_unix_sockets": _SWITCH,
            "allow_local_binding": _SWITCH,
            "managed_allowed_domains_only": OneWay(True),
            "domains": DecisionMap(absent={}),
            "unix_sockets": DecisionMap(absent={}),
            "review_domains": DenyList(),
        }
    ),
    "hooks": Table(otherwise=DenyList(), keys={"managed_dir": Pin(), "windows_managed_dir": Pin()}),
    "otel": Table(),
    "models": Default(),
}


def rule_name(rule: Rule) -> str:
    """The rule's kind as the docs' coverage table names it ("allow-list", "table", ...)."""
    return rule.name.split(":", 1)[0]
