"""Validation across the organisation's Codex support window (`[codex]` of the policy).

A policy whose effect would differ between the Codex versions an organisation runs is flagged
before anything is published, naming the versions and the keys (docs/support-window.md):

* a requirement key (or feature pin) some versions ignore fails open there: an error, unless it is
  backed by a managed_config.toml pin every version enforces (`managed_pins`, docs/codex.md "Layers") or the admin
  accepts it (`accept_unenforced`; the organisation page lists what was accepted, and from which
  version on it is enforced);
* a value some version refuses to start on (an enum value it does not know, a value it made
  fatal, Bedrock's `aws` table before 0.123) is an error;
* a config default some version does not know is a warning: it is left out of that version's files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from policyhub.policies import checkers, schema
from policyhub.policies.domain import MANAGED_KEYS, CodexWindow, Endpoint, Json, OrgPolicy
from policyhub.policies.resolution import Resolved
from providers import KINDS
from providers.base import Issue
from providers.codex_versions import (
    CHANGES,
    NEWEST_MEASURED,
    OLDEST,
    STRICT_REQUIREMENT_TABLES,
    CodexCapabilities,
    Version,
    capabilities,
    feature_spans,
    parse_version,
    segments,
    span_text,
    version_text,
)

Segment = tuple[Version, Version | None]
# Requirement allow-lists whose values are the values of a config key.
ALLOWLIST_VALUES = {
    "allowed_approval_policies": "approval_policy",
    "allowed_approvals_reviewers": "approvals_reviewer",
    "allowed_web_search_modes": "web_search",
}
# Fields of requirement areas that later releases added (`otel.headers_helper`), from the table.
REQUIREMENT_FIELDS = frozenset(
    key for change in CHANGES for key in change.requirement_keys if "." in key
)
# Config keys whose values some releases refuse to start on.
ENUM_CONFIG_KEYS = ("approval_policy", "approvals_reviewer", "web_search", "service_tier")


def window_issues(window: CodexWindow) -> list[Issue]:
    """What is wrong with the `[codex]` table itself."""
    issues: list[Issue] = []
    versions: dict[str, Version] = {}
    for key in ("min_version", "max_version"):
        value = getattr(window, key)
        try:
            versions[key] = parse_version(value)
        except ValueError as exc:
            issues.append(Issue("error", f"codex.{key}", str(exc)))
            continue
        if versions[key] < OLDEST:
            issues.append(
                Issue(
                    "error",
                    f"codex.{key}",
                    f"{value} is older than {version_text(OLDEST)}, the oldest Codex release "
                    "PolicyHub renders for",
                )
            )
    low, high = versions.get("min_version"), versions.get("max_version")
    if low and high and low > high:
        issues.append(
            Issue("error", "codex.max_version", f"{window.max_version} is below min_version")
        )
    if high and unmeasured(high):
        issues.append(Issue("warning", "codex.max_version", str(unmeasured(high))))
    for key in ("accept_unenforced", "managed_pins"):
        listed = getattr(window, key)
        if len(set(listed)) != len(listed):
            issues.append(Issue("error", f"codex.{key}", "names a key twice"))
    for name in window.accept_unenforced:
        feature = name.removeprefix("features.")
        if (
            name not in schema.REQUIREMENT_KEYS
            and name not in REQUIREMENT_FIELDS
            and not (name.startswith("features.") and checkers.FEATURE_RE.match(feature))
        ):
            issues.append(
                Issue(
                    "error",
                    "codex.accept_unenforced",
                    f"{name!r} is not a requirement key (or features.<name>)",
                )
            )
    for name in window.accept_unenforced:
        if name in REQUIREMENT_FIELDS and name.split(".", 1)[0] in STRICT_REQUIREMENT_TABLES:
            issues.append(
                Issue(
                    "error",
                    "codex.accept_unenforced",
                    f"{name!r} cannot be accepted as unenforced: releases that do not know it "
                    "stop on it rather than ignore it",
                )
            )
    for name in window.managed_pins:
        if name not in MANAGED_KEYS:
            issues.append(
                Issue(
                    "error",
                    "codex.managed_pins",
                    f"{name!r} cannot be pinned in managed_config.toml "
                    f"(possible: {', '.join(MANAGED_KEYS)})",
                )
            )
    return issues


def unmeasured(version: Version) -> str | None:
    """Why files for Codex `version` are a guess, or None when its release was measured.

    The table knows nothing after NEWEST_MEASURED, so a later release is rendered for as that
    one is: right if nothing PolicyHub renders changed, unknown otherwise. Commands, pages and
    the agent say so rather than let the newest measured files pass for measured ones.
    """
    if version <= NEWEST_MEASURED:
        return None
    newest = version_text(NEWEST_MEASURED)
    return (
        f"Codex {version_text(version)} is newer than {newest}, the newest release PolicyHub has "
        f"measured: its files are rendered as for {newest}"
    )


def window_unmeasured(window: CodexWindow) -> str | None:
    """`unmeasured` for the newest version of the window (None also for a malformed one, which
    window_issues reports)."""
    try:
        return unmeasured(parse_version(window.max_version))
    except ValueError:
        return None


def accepted_unenforced(window: CodexWindow) -> list[tuple[str, str | None]]:
    """Each accepted key and the first release that enforces it (None: unknown to the table)."""
    found = []
    for name in window.accept_unenforced:
        key = "features" if name.startswith("features.") else name
        first = next((c.version for c in CHANGES if key in c.requirement_keys), None)
        if name.startswith("features."):
            spans = feature_spans(name.removeprefix("features."))
            first = version_text(spans[0][0]) if spans else None
        found.append((name, first))
    return found


def window_segments(
    policy: OrgPolicy, features: Iterable[str] = (), keys: Iterable[str] | None = None
) -> list[Segment]:
    """The organisation's window cut where Codex changes (the window must be valid)."""
    low, high = parse_version(policy.codex.min_version), parse_version(policy.codex.max_version)
    return segments(low, high, features, keys)


def team_segments(policy: OrgPolicy, resolved: Resolved) -> list[Segment]:
    """The window cut where Codex changes for what this team's policy uses."""
    keys = requirement_keys_used(resolved) | set(resolved.config)
    return window_segments(policy, features_used(resolved), keys)


def features_used(resolved: Resolved) -> set[str]:
    names = set(resolved.requirements.get("features", {}))
    names |= set(resolved.config.get("features", {}))
    return names


def requirement_keys_used(resolved: Resolved) -> set[str]:
    """The requirement keys a team sets, with the `area.field` keys the table names."""
    return set(resolved.requirements) | _fields_set(resolved.requirements)


def _fields_set(requirements: Json) -> set[str]:
    """The `area.field` keys of the table (`otel.headers_helper`) these requirements set."""
    found = set()
    for key in REQUIREMENT_FIELDS:
        area, name = key.split(".", 1)
        table = requirements.get(area)
        if isinstance(table, dict) and name in table:
            found.add(key)
    return found


@dataclass(frozen=True)
class ManagedPin:
    """One requirement pin written into managed_config.toml as `key = value`."""

    requirement: str
    key: str
    value: object


def managed_pins(window: CodexWindow, requirements: Json) -> tuple[list[ManagedPin], list[Issue]]:
    """The pins this team's managed_config.toml carries, and why some requested pin cannot be."""
    pins, issues = [], []
    for name in window.managed_pins:
        if name not in requirements or name not in MANAGED_KEYS:
            continue
        value = requirements[name]
        if isinstance(value, list):
            if len(value) != 1:
                issues.append(
                    Issue(
                        "error",
                        f"requirements.{name}",
                        f"lists {len(value)} values; managed_config.toml can pin it only as "
                        f"{MANAGED_KEYS[name]}, so it must allow exactly one (codex.managed_pins)",
                    )
                )
                continue
            value = value[0]
        pins.append(ManagedPin(name, MANAGED_KEYS[name], value))
    return pins, issues


def _spans(found: Sequence[Segment]) -> str:
    """Adjacent segments joined: "0.125.0 up to 0.156.0 (not included)"."""
    merged: list[list[Version | None]] = []
    for start, until in found:
        if merged and merged[-1][1] == start:
            merged[-1][1] = until
        else:
            merged.append([start, until])
    return ", ".join(span_text(start, until) for start, until in merged)  # type: ignore[arg-type]


def team_window_issues(
    policy: OrgPolicy,
    resolved: Resolved,
    found_segments: Sequence[Segment],
    node: str,
    *,
    one_version: bool = False,
) -> list[Issue]:
    """Everything in one team's effective policy that some version of the window would not do
    (or, with `one_version`, the single version of the one segment given)."""
    window = policy.codex
    requirements = resolved.requirements
    ignored: dict[str, list[Segment]] = {}
    fatal: dict[tuple[str, str], list[Segment]] = {}
    dropped: dict[str, list[Segment]] = {}
    unread: dict[str, list[Segment]] = {}
    sessions = {"config": resolved.config} | {
        f"profiles.{name}": profile for name, profile in resolved.profiles.items()
    }
    for segment in found_segments:
        caps = capabilities(segment[0])
        for key in requirements:
            if key not in caps.requirement_keys:
                ignored.setdefault(key, []).append(segment)
        for key in _fields_unknown_to(caps, requirements):
            area = key.split(".", 1)[0]
            if area in STRICT_REQUIREMENT_TABLES:
                # A field the table does not know stops Codex: not ignored, fatal.
                fatal.setdefault((f"requirements.{key}", _UNKNOWN_FIELD), []).append(segment)
            else:
                ignored.setdefault(key, []).append(segment)
        if "features" in caps.requirement_keys:
            for name in requirements.get("features", {}):
                if name not in caps.features:
                    ignored.setdefault(f"features.{name}", []).append(segment)
        for key, reason in _fatal_values(policy, requirements, sessions, caps):
            fatal.setdefault((key, reason), []).append(segment)
        for name in resolved.config.get("features", {}):
            if name not in caps.features:
                dropped.setdefault(f"config.features.{name}", []).append(segment)
        for key in resolved.config:
            if caps.config_key_unknown(key):
                unread.setdefault(f"config.{key}", []).append(segment)

    def spans(where: Sequence[Segment]) -> str:
        return version_text(where[0][0]) if one_version else f"{_spans(where)} (in the window)"

    def origin(key: str) -> str:
        found = resolved.requirements_from.get(key)
        return found.node if found else node

    pins, issues = managed_pins(window, requirements)
    issues = [Issue(i.severity, i.path, i.message, origin(i.path.split(".", 1)[1])) for i in issues]
    backed = {pin.requirement for pin in pins}
    for key, where in sorted(ignored.items()):
        if key in backed:
            continue
        if key in window.accept_unenforced:
            continue  # the admin's decision, shown with the window (accepted_unenforced)
        versions = spans(where)
        remedy = "accept it in codex.accept_unenforced"
        if key in MANAGED_KEYS:
            remedy = f"back it with managed_config.toml (codex.managed_pins) or {remedy}"
        issues.append(
            Issue(
                "error",
                f"requirements.{key}",
                f"is ignored by Codex {versions}: those machines would not enforce it (it "
                f"fails open); {remedy}",
                origin(key),
            )
        )
    for (key, reason), where in sorted(fatal.items()):
        issues.append(Issue("error", key, f"{reason} on Codex {spans(where)}", node))
    for key, where in sorted(unread.items()):
        issues.append(
            Issue(
                "warning",
                key,
                f"stops Codex {spans(where)} from starting; it is left out of their config.toml",
                node,
            )
        )
    for key, where in sorted(dropped.items()):
        issues.append(
            Issue(
                "warning",
                key,
                f"is not a feature of Codex {spans(where)}; it is left out of their config.toml",
                node,
            )
        )
    return issues


_UNKNOWN_FIELD = "is a field unknown to (and so stops) Codex"


def _fields_unknown_to(caps: CodexCapabilities, requirements: Json) -> list[str]:
    """The `area.field` keys set here that a release knowing the area does not know yet."""
    return sorted(
        key
        for key in _fields_set(requirements) - caps.requirement_keys
        if key.split(".", 1)[0] in caps.requirement_keys
    )


def _fatal_values(
    policy: OrgPolicy, requirements: Json, sessions: dict[str, Json], caps: CodexCapabilities
) -> list[tuple[str, str]]:
    """(field path, reason) of every value this version refuses to start on."""
    found = []
    for key, config_key in ALLOWLIST_VALUES.items():
        if key not in caps.requirement_keys:
            continue  # ignored as a whole there (reported as such)
        for value in requirements.get(key, []):
            if not caps.accepts_value(config_key, value):
                found.append(
                    (
                        f"requirements.{key}",
                        f"lists {value!r}, which stops Codex from starting",
                    )
                )
    for where, settings in sessions.items():
        for key in ENUM_CONFIG_KEYS:
            if key in settings and caps.config_value_fatal(key, settings[key]):
                found.append((f"{where}.{key}", f"{settings[key]!r} stops Codex from starting"))
        endpoint = policy.endpoints.get(settings.get("model_provider") or "")
        if endpoint is not None and not caps.knows_provider(endpoint.provider_id):
            found.append((f"{where}.model_provider", _unknown_provider(endpoint.name, endpoint)))
    pinned = policy.endpoints.get(requirements.get("model_provider") or "")
    if pinned is not None and not caps.knows_provider(pinned.provider_id):
        found.append(("requirements.model_provider", _unknown_provider(pinned.name, pinned)))
    if not caps.mcp_identity_matchers:
        for name, entry in requirements.get("mcp_servers", {}).items():
            identity = entry.get("identity", {})
            if any(not isinstance(target, str) for target in identity.values()):
                found.append(
                    (
                        f"requirements.mcp_servers.{name}.identity",
                        "is a matcher table, which stops Codex from starting (give the exact "
                        "command or url as a string)",
                    )
                )
    for n, rule in enumerate(requirements.get("rules", {}).get("prefix_rules", [])):
        if not caps.accepts_value("prefix_rule_decision", rule.get("decision")):
            found.append(
                (
                    f"requirements.rules.prefix_rules[{n}].decision",
                    f"{rule.get('decision')!r} stops Codex from starting",
                )
            )
    return found


def _unknown_provider(name: str, endpoint: Endpoint) -> str:
    return (
        f"{name} ({KINDS[endpoint.kind].label}) needs Codex's built-in {endpoint.provider_id!r} "
        "provider; a release without it reads the table as a custom provider and stops"
    )
