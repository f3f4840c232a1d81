"""What each Codex CLI release accepts, ignores or rejects in the files PolicyHub renders: the
one home of Codex-version facts.

* the releases PolicyHub knows: the newest measured, the default support window, the releases
  the test command installs (the Makefile reads them: `python -m providers.codex_versions suite`);
* `CHANGES`: one entry per release that changed something the renderer depends on, oldest first;
  `capabilities(version)` folds every entry up to `version` into what that version does;
* feature names and their stages per release, in `data/codex-features.tsv`.

Every entry was measured against the real binary of that release and of the release before it
(docs/support-window.md: a requirement key set to `-7` is "known" when Codex reports a type
error, "ignored" when it starts). Adding a release: docs/adding-a-codex-release.md.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType

Version = tuple[int, int, int]
VERSION_RE = re.compile(r"(\d{1,4})\.(\d{1,4})\.(\d{1,4})")


def parse_version(text: object) -> Version:
    """(major, minor, patch) of "0.125.0"; ValueError for anything else."""
    match = VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a Codex version such as 0.169.0")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def version_text(version: Version) -> str:
    return ".".join(map(str, version))


def span_text(start: Version, until: Version | None) -> str:
    """Human text for the versions from `start` up to, not including, `until`."""
    if until is None:
        return f"{version_text(start)} and later"
    return f"{version_text(start)} up to {version_text(until)} (not included)"


@dataclass(frozen=True)
class Change:
    """What one Codex release changed; fields left at their defaults did not change."""

    version: str
    summary: str
    # Requirement keys this release enforces for the first time (older ones ignore them).
    requirement_keys: frozenset[str] = frozenset()
    # Enumerated values first accepted, in config and in the matching requirement allow-list
    # (older releases refuse to start on them).
    values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Values of config.toml and managed_config.toml that become fatal from this release on.
    fatal_config_values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Built-in provider ids this release knows for the first time (older ones read their table
    # as a custom provider and stop: "missing field `name`").
    builtin_providers: frozenset[str] = frozenset()
    profile_files: bool | None = None
    strict_config: bool | None = None
    print_startup_config: bool | None = None
    config_server: bool | None = None
    # Requirement MCP identities given as matcher tables ({ match = "prefix", value = ... }).
    mcp_identity_matchers: bool | None = None
    # config.toml keys this release reads for the first time (older ones stop on them).
    config_keys: frozenset[str] = frozenset()


CHANGES: tuple[Change, ...] = (
    Change(
        "0.118.0",
        "oldest supported release: profiles as [profiles.<name>] tables, six requirement keys",
        requirement_keys=frozenset(
            {
                "allowed_approval_policies",
                "allowed_sandbox_modes",
                "allowed_web_search_modes",
                "enforce_residency",
                "features",
                "mcp_servers",
                "rules",
            }
        ),
        values={
            "approval_policy": frozenset({"untrusted", "on-failure", "on-request", "never"}),
            "approvals_reviewer": frozenset({"user"}),
            "web_search": frozenset({"disabled", "cached", "live"}),
            "service_tier": frozenset({"fast", "flex"}),
            "prefix_rule_decision": frozenset({"prompt", "forbidden"}),
        },
        builtin_providers=frozenset({"openai"}),
        profile_files=False,
        strict_config=False,
        print_startup_config=False,
        config_server=False,
        mcp_identity_matchers=False,
    ),
    Change(
        "0.120.0",
        "requirements allowed_approvals_reviewers",
        requirement_keys=frozenset({"allowed_approvals_reviewers"}),
    ),
    Change(
        "0.123.0",
        "built-in amazon-bedrock provider with an [aws] table (fatal before)",
        builtin_providers=frozenset({"amazon-bedrock"}),
    ),
    Change(
        "0.124.0",
        "approvals reviewer 'auto_review'; requirements hooks",
        requirement_keys=frozenset({"hooks"}),
        values={"approvals_reviewer": frozenset({"auto_review"})},
    ),
    Change(
        "0.128.0",
        "config default_permissions without a [permissions] table",
        config_keys=frozenset({"default_permissions"}),
    ),
    Change(
        "0.129.0",
        "hooks PreCompact and PostCompact",
        requirement_keys=frozenset({"hooks.PreCompact", "hooks.PostCompact"}),
    ),
    Change(
        "0.131.0",
        "--strict-config; requirements allow_managed_hooks_only; service tier 'priority'",
        requirement_keys=frozenset({"allow_managed_hooks_only"}),
        values={"service_tier": frozenset({"priority"})},
        strict_config=True,
    ),
    Change(
        "0.133.0",
        "requirements computer_use; hooks SubagentStart and SubagentStop",
        requirement_keys=frozenset({"computer_use", "hooks.SubagentStart", "hooks.SubagentStop"}),
    ),
    Change(
        "0.134.0",
        "profiles only as $CODEX_HOME/<name>.config.toml files (a selected table is fatal); requirements allow_appshots",
        profile_files=True,
        requirement_keys=frozenset({"allow_appshots"}),
    ),
    Change(
        "0.136.0",
        "requirements windows (sandbox implementations)",
        requirement_keys=frozenset({"windows"}),
    ),
    Change(
        "0.138.0",
        "requirements allowed_permission_profiles and default_permissions",
        requirement_keys=frozenset({"allowed_permission_profiles", "default_permissions"}),
    ),
    Change(
        "0.140.0",
        "requirements allow_remote_control",
        requirement_keys=frozenset({"allow_remote_control"}),
    ),
    Change(
        "0.142.0",
        "web search mode 'indexed'",
        values={"web_search": frozenset({"indexed"})},
    ),
    Change(
        "0.143.0",
        "requirements MCP identities as matcher tables (exact, prefix, regex); requirements models (new-thread defaults)",
        mcp_identity_matchers=True,
        requirement_keys=frozenset({"models"}),
    ),
    Change(
        "0.145.0",
        "hooks SessionEnd",
        requirement_keys=frozenset({"hooks.SessionEnd"}),
    ),
    Change(
        "0.146.0",
        "requirements allow_login_shell and check_for_update_on_startup; browser_use, feedback, log_dir, sqlite_home, model_catalog_json",
        requirement_keys=frozenset(
            {
                "allow_login_shell",
                "check_for_update_on_startup",
                "browser_use",
                "feedback",
                "log_dir",
                "sqlite_home",
                "model_catalog_json",
            }
        ),
    ),
    Change(
        "0.147.0",
        "requirements allowed_login_methods and allowed_chatgpt_workspaces",
        requirement_keys=frozenset({"allowed_login_methods", "allowed_chatgpt_workspaces"}),
    ),
    Change(
        "0.148.0",
        "requirements auto_review",
        requirement_keys=frozenset({"auto_review"}),
    ),
    Change(
        "0.149.0",
        "requirements cli_auth_credentials_store; approval_policy 'untrusted' fatal in config; requirements chatgpt_base_url",
        requirement_keys=frozenset({"cli_auth_credentials_store", "chatgpt_base_url"}),
        fatal_config_values={"approval_policy": frozenset({"untrusted"})},
    ),
    Change(
        "0.150.0",
        "requirements additional_developer_instructions; allow_browser_and_computer_use, in_app_browser; browser and computer use site and app decisions; hooks Interrupt",
        requirement_keys=frozenset(
            {
                "additional_developer_instructions",
                "allow_browser_and_computer_use",
                "in_app_browser",
                "browser_use.default_origin_policy",
                "browser_use.origins",
                "browser_use.allow_history_access",
                "browser_use.allow_global_persistent_approval",
                "computer_use.default_app_access",
                "computer_use.macos",
                "computer_use.windows",
                "computer_use.allow_persistent_approval",
                "hooks.Interrupt",
            }
        ),
    ),
    Change(
        "0.153.1",
        "requirements application (desktop; its fields came later); browser_use.allow_webmcp",
        requirement_keys=frozenset({"application", "browser_use.allow_webmcp"}),
    ),
    Change(
        "0.153.2",
        "requirements application.network",
        requirement_keys=frozenset({"application.network"}),
    ),
    Change(
        "0.156.0",
        "requirements model_provider and model_providers",
        requirement_keys=frozenset({"model_provider", "model_providers"}),
    ),
    Change(
        "0.161.0",
        "requirements windows.allow_mxc",
        requirement_keys=frozenset({"windows.allow_mxc"}),
    ),
    Change(
        "0.162.0",
        "requirements browser_use.extension",
        requirement_keys=frozenset({"browser_use.extension"}),
    ),
    Change(
        "0.163.0",
        "requirements windows.require_mxc",
        requirement_keys=frozenset({"windows.require_mxc"}),
    ),
    Change(
        "0.164.0",
        "app-server --print-startup-config; requirements config_server parsed (not fetched); application.storage; hooks Pre/PostModelRequest",
        requirement_keys=frozenset(
            {
                "config_server",
                "application.storage",
                "hooks.PreModelRequest",
                "hooks.PostModelRequest",
            }
        ),
        print_startup_config=True,
    ),
    Change(
        "0.165.0",
        "built-in gcp (Vertex AI) provider: project_id, location, credential_file",
        builtin_providers=frozenset({"gcp"}),
    ),
    Change(
        "0.166.0",
        "config_server bundle fetched and applied (the native channel); requirements network_proxy and otel",
        config_server=True,
        requirement_keys=frozenset({"network_proxy", "otel"}),
    ),
    Change(
        "0.167.2",
        "requirements otel.log_sse_deltas",
        requirement_keys=frozenset({"otel.log_sse_deltas"}),
    ),
    Change(
        "0.169.0",
        "prefix rule decision 'prompt-user'",
        values={"prefix_rule_decision": frozenset({"prompt-user"})},
    ),
    Change(
        "0.171.0",
        "requirements network_proxy.transparent_tcp and otel.headers_helper",
        requirement_keys=frozenset(
            {
                "network_proxy.transparent_tcp",
                "otel.headers_helper",
                "otel.headers_helper_refresh_interval_ms",
            }
        ),
    ),
)

OLDEST = parse_version(CHANGES[0].version)
# Requirement tables where Codex refuses a field it does not know (elsewhere it ignores it): a
# field added by a later release stops an older one instead of failing open there.
STRICT_REQUIREMENT_TABLES = frozenset({"otel", "application", "config_server", "marketplaces"})

# --- the releases PolicyHub knows -------------------------------------------------------------

# The newest release the table was measured against; a later one is rendered for as this one is.
NEWEST_MEASURED = parse_version("0.171.0")
# The support window of an organisation whose policy has no [codex] table.
DEFAULT_VERSION = "0.169.0"
# The releases the test command installs side by side: every table entry, feature name and
# rendered file set is checked against each real binary (oldest first; the newest measured last):
# the oldest of the demo's window with profile tables, one with profile files and no native
# channel, the default window with the native channel, and the newest published release.
SUITE_VERSIONS = ("0.125.0", "0.140.0", "0.169.0", "0.171.0")
# What releases stored before support windows existed were rendered for. History: never changes.
LEGACY_RELEASE_VERSION = "0.169.0"


@dataclass(frozen=True)
class CodexCapabilities:
    """What one Codex version does with the files PolicyHub renders."""

    version: Version
    requirement_keys: frozenset[str]
    values: Mapping[str, frozenset[str]]
    fatal_config_values: Mapping[str, frozenset[str]]
    builtin_providers: frozenset[str]
    profile_files: bool
    strict_config: bool
    print_startup_config: bool
    config_server: bool
    mcp_identity_matchers: bool
    features: frozenset[str]
    config_keys: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        return version_text(self.version)

    def accepts_value(self, key: str, value: object) -> bool:
        """False for a value some release introduced and this one refuses to start on.

        Values no release of the table introduced (a gateway's own service tier) are not judged,
        nor are tables (a granular approval policy, read by every release in the table).
        """
        if not isinstance(value, str):
            return True
        known = self.values.get(key)
        return known is None or value in known or value not in _introduced(key)

    def knows_provider(self, provider_id: str) -> bool:
        """False for a built-in provider id a later release introduced: this one stops on it."""
        return provider_id in self.builtin_providers or provider_id not in _introduced_builtins()

    def config_key_unknown(self, key: str) -> bool:
        """True for a config.toml key a later release introduced: this one stops on it."""
        return key in _introduced_config_keys() and key not in self.config_keys

    def config_value_fatal(self, key: str, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return not self.accepts_value(key, value) or value in self.fatal_config_values.get(key, ())


def _fold(version: Version) -> CodexCapabilities:
    requirement_keys: set[str] = set()
    config_keys: set[str] = set()
    builtins: set[str] = set()
    values: dict[str, frozenset[str]] = {}
    fatal: dict[str, frozenset[str]] = {}
    flags: dict[str, bool] = {}
    for change in CHANGES:
        if parse_version(change.version) > version:
            break
        requirement_keys |= change.requirement_keys
        config_keys |= change.config_keys
        builtins |= change.builtin_providers
        for key, added in change.values.items():
            values[key] = values.get(key, frozenset()) | added
        for key, added in change.fatal_config_values.items():
            fatal[key] = fatal.get(key, frozenset()) | added
        for name in (
            "profile_files",
            "strict_config",
            "print_startup_config",
            "config_server",
            "mcp_identity_matchers",
        ):
            flag = getattr(change, name)
            if flag is not None:
                flags[name] = flag
    return CodexCapabilities(
        version=version,
        requirement_keys=frozenset(requirement_keys),
        config_keys=frozenset(config_keys),
        builtin_providers=frozenset(builtins),
        values=MappingProxyType(values),
        fatal_config_values=MappingProxyType(fatal),
        features=frozenset(
            name for name, spans in _feature_spans().items() if in_spans(version, spans)
        ),
        **flags,
    )


@cache
def _introduced(key: str) -> frozenset[str]:
    return frozenset(v for change in CHANGES for v in change.values.get(key, ()))


@cache
def _introduced_config_keys() -> frozenset[str]:
    return frozenset(k for change in CHANGES for k in change.config_keys)


@cache
def _introduced_builtins() -> frozenset[str]:
    return frozenset(p for change in CHANGES for p in change.builtin_providers)


@cache
def capabilities(version: str | Version) -> CodexCapabilities:
    """What `version` accepts; ValueError for a malformed version or one older than the table."""
    parsed = parse_version(version) if isinstance(version, str) else version
    if parsed < OLDEST:
        raise ValueError(
            f"Codex {version_text(parsed)} is older than the oldest supported release "
            f"{version_text(OLDEST)}"
        )
    return _fold(parsed)


# --- feature names ------------------------------------------------------------------------------

FEATURES_FILE = Path(__file__).with_name("data") / "codex-features.tsv"
Span = tuple[Version, Version | None]


@dataclass(frozen=True)
class FeatureRow:
    """One line of the features file: a name known from `start` until `until` (None: still)."""

    name: str
    start: Version
    until: Version | None
    stage: str  # what the newest listed release prints for it ("" once it is gone)


def feature_rows(text: str) -> list[FeatureRow]:
    rows = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, start, until, stage = [*line.split("\t"), "", ""][:4]
        rows.append(
            FeatureRow(name, parse_version(start), parse_version(until) if until else None, stage)
        )
    return rows


def features_with_release(
    rows: Sequence[FeatureRow], version: Version, listed: Mapping[str, str]
) -> list[FeatureRow]:
    """The rows once `version`, newer than every release in them, was measured printing
    `listed` (feature name -> stage): names it no longer prints end there, new ones start."""
    if any(row.start >= version or (row.until or OLDEST) >= version for row in rows):
        raise ValueError(f"{version_text(version)} is not newer than every measured release")
    still = {row.name for row in rows if row.until is None}
    out = [
        replace(row, stage=listed[row.name])
        if row.until is None and row.name in listed
        else replace(row, until=version, stage="")
        if row.until is None
        else row
        for row in rows
    ]
    out += [
        FeatureRow(name, version, None, stage)
        for name, stage in listed.items()
        if name not in still
    ]
    return sorted(out, key=lambda row: (row.name, row.start))


def features_file(text: str) -> tuple[str, list[str], list[FeatureRow]]:
    """A features file's parts: its header comment, the releases it was measured on, its rows."""
    header = "".join(
        line
        for line in text.splitlines(keepends=True)
        if line.startswith("#") and not line.startswith(("# releases:", "# name\t"))
    )
    releases = next(
        (
            line.split(":", 1)[1].split()
            for line in text.splitlines()
            if line.startswith("# releases:")
        ),
        [],
    )
    return header, releases, feature_rows(text)


def features_text(rows: Sequence[FeatureRow], releases: Sequence[str], header: str) -> str:
    """The features file: `header` (comment lines), the releases measured, then one row a line."""
    lines = [*header.rstrip("\n").splitlines(), f"# releases: {' '.join(releases)}"]
    lines.append("# name\tfrom\tuntil\tstage")
    for row in rows:
        until = version_text(row.until) if row.until else ""
        lines.append("\t".join([row.name, version_text(row.start), until, row.stage]))
    return "\n".join(lines) + "\n"


@cache
def _feature_rows() -> tuple[FeatureRow, ...]:
    return tuple(feature_rows(FEATURES_FILE.read_text()))


@cache
def _feature_spans() -> Mapping[str, tuple[Span, ...]]:
    spans: dict[str, list[Span]] = {}
    for row in _feature_rows():
        spans.setdefault(row.name, []).append((row.start, row.until))
    return MappingProxyType({name: tuple(found) for name, found in spans.items()})


@cache
def feature_stages() -> Mapping[str, str]:
    """Every feature name the newest measured release knows, with the stage it prints
    (stable, experimental, under-development, deprecated or removed)."""
    return MappingProxyType({row.name: row.stage for row in _feature_rows() if row.until is None})


def in_spans(version: Version, spans: Iterable[Span]) -> bool:
    """Whether `version` lies in one of the (from, until or None) spans."""
    return any(start <= version and (until is None or version < until) for start, until in spans)


def feature_spans(name: str) -> tuple[Span, ...]:
    return _feature_spans().get(name, ())


# --- windows ---------------------------------------------------------------------------------------


def _only_adds_keys(change: Change) -> bool:
    """Whether a release only made keys known (requirement or config keys): files without them
    read the same."""
    flags = (
        change.profile_files,
        change.strict_config,
        change.print_startup_config,
        change.config_server,
        change.mcp_identity_matchers,
    )
    return (
        bool(change.requirement_keys or change.config_keys)
        and not (change.values or change.fatal_config_values or change.builtin_providers)
        and all(flag is None for flag in flags)
    )


def boundaries(features: Iterable[str] = (), keys: Iterable[str] | None = None) -> list[Version]:
    """Every version from which the table (restricted to `features`, and to the requirement
    `keys` a policy sets when given) says something changed."""
    used = None if keys is None else set(keys)
    points = {
        parse_version(change.version)
        for change in CHANGES
        if used is None
        or not _only_adds_keys(change)
        or (change.requirement_keys | change.config_keys) & used
    }
    for name in features:
        for start, until in feature_spans(name):
            points.add(start)
            if until is not None:
                points.add(until)
    return sorted(points)


def version_segment(
    version: Version, features: Iterable[str] = (), keys: Iterable[str] | None = None
) -> tuple[Version, Version | None]:
    """`version` and the next version from which Codex changes (None: none known)."""
    later = [point for point in boundaries(features, keys) if point > version]
    return version, (later[0] if later else None)


def segments(
    start: Version, end: Version, features: Iterable[str] = (), keys: Iterable[str] | None = None
) -> list[tuple[Version, Version | None]]:
    """The window [start, end] cut where capabilities change: (first version, next cut).

    Every version of one segment behaves the same for the files of a policy using `features`
    (and, when given, setting the requirement `keys`: a release that only made other keys known
    reads its files as the release before it did), so rendering for its first version renders
    for all of it. The last segment ends where the table next changes after `end` (None when it
    knows of no later change): files are never claimed for versions known to read them
    differently.
    """
    points = boundaries(features, keys)
    cuts = [point for point in points if start < point <= end]
    after = [point for point in points if point > end]
    ends = [*cuts, after[0] if after else None]
    return list(zip([start, *cuts], ends, strict=True))


__all__ = [
    "CHANGES",
    "DEFAULT_VERSION",
    "LEGACY_RELEASE_VERSION",
    "NEWEST_MEASURED",
    "STRICT_REQUIREMENT_TABLES",
    "SUITE_VERSIONS",
    "Change",
    "CodexCapabilities",
    "Version",
    "capabilities",
    "feature_spans",
    "feature_stages",
    "in_spans",
    "parse_version",
    "segments",
    "span_text",
    "version_segment",
    "version_text",
]


def main(argv: list[str] | None = None) -> int:
    """`python -m providers.codex_versions suite|newest|default`: for the Makefile and scripts
    (plain Python, runs before any virtual environment exists)."""

    parser = argparse.ArgumentParser(prog="python -m providers.codex_versions")
    parser.add_argument("what", choices=("suite", "newest", "default"))
    what = parser.parse_args(argv).what
    answer = {
        "suite": " ".join(SUITE_VERSIONS),
        "newest": version_text(NEWEST_MEASURED),
        "default": DEFAULT_VERSION,
    }[what]
    print(answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
