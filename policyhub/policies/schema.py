"""What a policy node may hold, checked as the newest measured Codex release checks it
(docs/codex.md lists what it accepts and why each rule here exists).

Plain data in, issues out: the services, the policy-as-code importer and the renderer all call
these before anything is stored or published. Paths in issues are relative to the section
(`requirements`, `config`, `profiles.<name>`, `mcp_servers.<name>`); callers anchor them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from providers.base import ENV_VAR_RE, PROVIDER_ID_RE, Issue, error, warning
from providers.codex_versions import NEWEST_MEASURED, feature_stages, version_text
from providers.fields import text_issues, url_problem
from providers.secrets import is_credential_name, url_has_credentials

NEWEST = version_text(NEWEST_MEASURED)

# --- Codex enumerations (docs/codex.md, "requirements.toml" and "config.toml") --------------------

APPROVAL_POLICIES = ("untrusted", "on-failure", "on-request", "never")
# `untrusted` is fatal in config.toml since Codex 0.149 (still fine inside requirements).
CONFIG_APPROVAL_POLICIES = ("on-failure", "on-request", "never")
APPROVALS_REVIEWERS = ("user", "auto_review")
# `external-sandbox` parses in requirements but Codex drops it from the effective list: refuse it.
SANDBOX_MODES = ("read-only", "workspace-write", "danger-full-access")
WEB_SEARCH_MODES = ("disabled", "cached", "indexed", "live")
LOGIN_METHODS = ("chatgpt", "api")
CREDENTIAL_STORES = ("file", "keyring", "auto", "ephemeral")
RESIDENCIES = ("us",)
REASONING_SUMMARIES = ("auto", "concise", "detailed", "none")
VERBOSITIES = ("low", "medium", "high")
RULE_DECISIONS = ("prompt", "prompt-user", "forbidden")
# Codex accepts any non-empty string for these; values outside the documented ones get a warning.
KNOWN_REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
KNOWN_SERVICE_TIERS = ("fast", "flex", "priority")
# Tiers that need the provider's priority processing.
PRIORITY_SERVICE_TIERS = ("fast", "priority")

# Names of profiles, MCP servers and endpoints follow Codex provider ids: TOML keys and file names.
NAME_RE = PROVIDER_ID_RE
FEATURE_RE = re.compile(r"^[a-z0-9_]{1,80}$")


# --- small checkers ---------------------------------------------------------------------------

Checker = Callable[[Any, str], list[Issue]]


def check_str(*, non_empty: bool = True, max_len: int = 4096, multiline: bool = True) -> Checker:
    def check(value: Any, path: str) -> list[Issue]:
        if not isinstance(value, str):
            return [error(path, f"must be a string, not {type_name(value)}")]
        if non_empty and not value.strip():
            return [error(path, "must not be empty")]
        if len(value) > max_len:
            return [error(path, f"is longer than {max_len} characters")]
        return text_issues(path, value, multiline=multiline)

    return check


def check_enum(choices: tuple[str, ...], *, refused: Mapping[str, str] | None = None) -> Checker:
    def check(value: Any, path: str) -> list[Issue]:
        if not isinstance(value, str):
            return [error(path, f"must be a string, one of {quoted(choices)}")]
        if refused and value in refused:
            return [error(path, refused[value])]
        if value not in choices:
            return [error(path, f"{value!r} is not one of {quoted(choices)}")]
        return []

    return check


def check_open_enum(known: tuple[str, ...], what: str) -> Checker:
    """A non-empty string Codex accepts freely; outside the documented values we only warn."""
    base = check_str(max_len=64)

    def check(value: Any, path: str) -> list[Issue]:
        issues = base(value, path)
        if not issues and value not in known:
            issues.append(warning(path, f"{value!r} is not a documented {what} ({quoted(known)})"))
        return issues

    return check


def check_bool(value: Any, path: str) -> list[Issue]:
    return (
        []
        if isinstance(value, bool)
        else [error(path, f"must be true or false, not {type_name(value)}")]
    )


def check_list(item: Checker, *, unique: bool = True, non_empty: bool = False) -> Checker:
    def check(value: Any, path: str) -> list[Issue]:
        if not isinstance(value, list):
            return [error(path, f"must be an array, not {type_name(value)}")]
        if non_empty and not value:
            return [error(path, "must not be empty")]
        issues = [i for n, v in enumerate(value) for i in item(v, f"{path}[{n}]")]
        if unique and not issues and len({repr(v) for v in value}) != len(value):
            issues.append(error(path, "lists a value twice"))
        return issues

    return check


def check_env_name(value: Any, path: str) -> list[Issue]:
    if not isinstance(value, str) or not ENV_VAR_RE.match(value):
        return [error(path, "must be an environment variable name (letters, digits, underscore)")]
    return []


def check_abs_path(value: Any, path: str) -> list[Issue]:
    issues = check_str()(value, path)
    if not issues and not value.startswith("/"):
        issues.append(error(path, "must be an absolute path"))
    return issues


def check_url(value: Any, path: str) -> list[Issue]:
    """An https URL (plain http only to a loopback host) that carries no credentials."""
    issues = check_str(max_len=2048, multiline=False)(value, path)
    if issues:
        return issues
    problem = url_problem(value, allow_loopback_http=True)
    if problem:
        return [error(path, problem)]
    if url_has_credentials(value):
        return [
            error(path, "must not carry credentials (user:password@ or a secret query parameter)")
        ]
    return []


def check_str_map(key_check: Checker, value_check: Checker) -> Checker:
    def check(value: Any, path: str) -> list[Issue]:
        if not isinstance(value, Mapping):
            return [error(path, f"must be a table, not {type_name(value)}")]
        issues: list[Issue] = []
        for k, v in value.items():
            issues += key_check(k, f"{path}.{k}") + value_check(v, f"{path}.{k}")
        return issues

    return check


def check_name(value: Any, path: str) -> list[Issue]:
    if not isinstance(value, str) or not NAME_RE.match(value):
        return [
            error(path, "must be a name of lowercase letters, digits, '-' and '_' (at most 63)")
        ]
    return []


def check_number(*, minimum: float = 0) -> Checker:
    def check(value: Any, path: str) -> list[Issue]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [error(path, f"must be a number, not {type_name(value)}")]
        if not math.isfinite(value) or abs(value) > 2**53:
            return [error(path, "must be a finite number")]
        if value < minimum:
            return [error(path, f"must be at least {minimum}")]
        return []

    return check


def check_table(keys: Mapping[str, Checker], *, required: tuple[str, ...] = ()) -> Checker:
    """A table with a closed set of keys: unknown keys are refused, never silently ignored."""

    def check(value: Any, path: str) -> list[Issue]:
        if not isinstance(value, Mapping):
            return [error(path, f"must be a table, not {type_name(value)}")]
        issues = [error(join(path, k), "is missing") for k in required if k not in value]
        for k, v in value.items():
            if k not in keys:
                issues.append(
                    error(join(path, k), f"is not a known key (known: {', '.join(keys)})")
                )
            else:
                issues += keys[k](v, join(path, k))
        return issues

    return check


def check_features(*, requirement: bool) -> Checker:
    def check(value: Any, path: str) -> list[Issue]:
        if not isinstance(value, Mapping):
            return [error(path, f"must be a table of feature = true/false, not {type_name(value)}")]
        issues: list[Issue] = []
        known = feature_stages()
        for name, flag in value.items():
            where = f"{path}.{name}"
            if name not in known:
                # Codex silently accepts unknown names in requirements (the pin would do
                # nothing) and rejects them in config under --strict-config.
                what = "the pin would silently do nothing" if requirement else "Codex rejects it"
                issues.append(error(where, f"is not a feature of Codex {NEWEST}; {what}"))
                continue
            issues += check_bool(flag, where)
            if known[name] == "removed":
                issues.append(warning(where, "was removed from Codex; setting it has no effect"))
            elif known[name] == "deprecated":
                issues.append(warning(where, "is deprecated; Codex prints a notice at every start"))
        return issues

    return check


# --- requirements (enforced) ----------------------------------------------------------------------


def check_allowlist(choices: tuple[str, ...], **kw: Any) -> Checker:
    return check_list(check_enum(choices, **kw))


def check_sandbox_allowlist(value: Any, path: str) -> list[Issue]:
    issues = check_allowlist(SANDBOX_MODES)(value, path)
    if not issues and "read-only" not in value:
        issues.append(error(path, "must contain 'read-only' (Codex refuses to start otherwise)"))
    return issues


def check_approval_allowlist(value: Any, path: str) -> list[Issue]:
    issues = check_list(check_enum(APPROVAL_POLICIES), non_empty=True)(value, path)
    return issues


# Python-only syntax that Rust's `regex` crate (Codex's engine) refuses: look-around, atomic
# groups, conditionals, named back-references, and possessive quantifiers.
_NON_RUST_GROUPS = ("(?=", "(?!", "(?<=", "(?<!", "(?>", "(?(", "(?P=")


def rust_regex_problem(expression: str) -> str | None:
    """Why Codex's regex engine would refuse `expression`, or None (checked outside [...] too)."""
    in_class, quantified, index = False, False, 0
    while index < len(expression):
        char = expression[index]
        if char == "\\":
            escaped = expression[index + 1 : index + 2]
            if not in_class and escaped.isdigit() and escaped != "0":
                return "uses a back-reference, which Codex's regex engine lacks"
            if escaped == "Z":
                return "uses \\Z, which Codex's regex engine lacks (use \\z)"
            index, quantified = index + 2, False
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif expression.startswith(_NON_RUST_GROUPS, index):
            return (
                "uses look-around, atomic groups or conditionals, which Codex's regex engine lacks"
            )
        elif char == "+" and quantified:
            return "uses a possessive quantifier, which Codex's regex engine lacks"
        # A `?` after a quantifier makes it lazy (fine in Rust); `+` after one makes it possessive.
        quantified = not in_class and char in "*+?}" and not (char == "?" and quantified)
        index += 1
    try:
        re.compile(expression)
    except re.error as exc:
        return f"is not a valid regular expression: {exc}"
    return None


def check_rust_regex(value: Any, path: str) -> list[Issue]:
    issues = check_str(max_len=1024, multiline=False)(value, path)
    problem = None if issues else rust_regex_problem(value)
    return issues + ([error(path, problem)] if problem else [])


def check_matcher(value: Any, path: str) -> list[Issue]:
    if not isinstance(value, Mapping):
        return [error(path, "must be a matcher table { match = ..., value/expression = ... }")]
    match = value.get("match")
    if match in ("exact", "prefix"):
        return check_table(
            {"match": check_enum(("exact", "prefix")), "value": check_str()}, required=("value",)
        )(value, path)
    if match == "regex":
        return check_table(
            {"match": check_enum(("regex",)), "expression": check_rust_regex},
            required=("expression",),
        )(value, path)
    return [error(join(path, "match"), "must be 'exact', 'prefix' or 'regex'")]


def check_identity(value: Any, path: str) -> list[Issue]:
    if (
        not isinstance(value, Mapping)
        or len(value) != 1
        or next(iter(value)) not in ("command", "url")
    ):
        return [error(path, "must be exactly one of { command = ... } or { url = ... }")]
    ((kind, target),) = value.items()
    where = join(path, kind)
    if isinstance(target, str):
        return check_str()(target, where) if kind == "command" else check_url(target, where)
    if kind == "url":
        return check_matcher(target, where)
    return check_table(
        {"executable": check_str(), "args": check_list(check_matcher, unique=False)},
        required=("executable",),
    )(target, where)


def check_mcp_allowlist(value: Any, path: str) -> list[Issue]:
    entry = check_table({"identity": check_identity}, required=("identity",))
    return check_str_map(check_name, entry)(value, path)


def check_pattern_token(value: Any, path: str) -> list[Issue]:
    if isinstance(value, Mapping) and set(value) == {"token"}:
        return check_str()(value["token"], join(path, "token"))
    if isinstance(value, Mapping) and set(value) == {"any_of"}:
        return check_list(check_str(), non_empty=True)(value["any_of"], join(path, "any_of"))
    return [error(path, 'must be { token = "..." } or { any_of = [...] }')]


def check_prefix_rule(value: Any, path: str) -> list[Issue]:
    decision = check_enum(
        RULE_DECISIONS,
        refused={
            "allow": "'allow' is not permitted in requirements (use prompt, prompt-user or forbidden)"
        },
    )
    return check_table(
        {
            "pattern": check_list(check_pattern_token, unique=False, non_empty=True),
            "decision": decision,
            "justification": check_str(),
            "canonical_matching": check_bool,
        },
        required=("pattern", "decision"),
    )(value, path)


REQUIREMENT_KEYS: dict[str, Checker] = {
    "allowed_approval_policies": check_approval_allowlist,
    "allowed_approvals_reviewers": check_list(check_enum(APPROVALS_REVIEWERS), non_empty=True),
    "allowed_sandbox_modes": check_sandbox_allowlist,
    "allowed_web_search_modes": check_allowlist(WEB_SEARCH_MODES),
    "allowed_login_methods": check_list(check_enum(LOGIN_METHODS), non_empty=True),
    "allowed_chatgpt_workspaces": check_list(check_str(max_len=128), non_empty=True),
    "cli_auth_credentials_store": check_enum(CREDENTIAL_STORES),
    "enforce_residency": check_enum(RESIDENCIES),
    # The value names a provider endpoint of the organisation; resolved when rendering.
    "model_provider": check_name,
    "allow_login_shell": check_bool,
    "allow_managed_hooks_only": check_bool,
    "check_for_update_on_startup": check_bool,
    "additional_developer_instructions": check_str(max_len=16384),
    "features": check_features(requirement=True),
    "mcp_servers": check_mcp_allowlist,
    "rules": check_table({"prefix_rules": check_list(check_prefix_rule, unique=False)}),
}


def validate_requirements(doc: Any) -> list[Issue]:
    return check_table(REQUIREMENT_KEYS)(doc, "")


# --- config defaults and profiles -----------------------------------------------------------------

_APPROVAL = check_enum(
    CONFIG_APPROVAL_POLICIES,
    refused={
        "untrusted": "'untrusted' is fatal in config.toml since Codex 0.149; allow it in requirements instead"
    },
)

# Keys a named profile may set (docs/codex.md, "Profiles"; no provider or MCP tables in a profile).
PROFILE_KEYS: dict[str, Checker] = {
    "model": check_str(max_len=256),
    "model_provider": check_name,
    "model_reasoning_effort": check_open_enum(KNOWN_REASONING_EFFORTS, "reasoning effort"),
    "model_reasoning_summary": check_enum(REASONING_SUMMARIES),
    "model_verbosity": check_enum(VERBOSITIES),
    "service_tier": check_open_enum(KNOWN_SERVICE_TIERS, "service tier"),
    "approval_policy": _APPROVAL,
    "approvals_reviewer": check_enum(APPROVALS_REVIEWERS),
    "sandbox_mode": check_enum(SANDBOX_MODES),
    "web_search": check_enum(WEB_SEARCH_MODES),
}

CONFIG_KEYS: dict[str, Checker] = {
    **PROFILE_KEYS,
    "forced_login_method": check_enum(LOGIN_METHODS),
    "openai_base_url": check_url,
    "cli_auth_credentials_store": check_enum(CREDENTIAL_STORES),
    "forced_chatgpt_workspace_id": check_str(max_len=128),
    "sandbox_workspace_write": check_table(
        {
            "writable_roots": check_list(check_abs_path),
            "network_access": check_bool,
            "exclude_tmpdir_env_var": check_bool,
            "exclude_slash_tmp": check_bool,
        }
    ),
    "features": check_features(requirement=False),
}


def validate_config(doc: Any) -> list[Issue]:
    return check_table(CONFIG_KEYS)(doc, "")


def validate_profile(doc: Any) -> list[Issue]:
    return check_table(PROFILE_KEYS)(doc, "")


def check_literal_map(advice: str, keys: Checker, *, multiline: bool) -> Checker:
    """A name -> literal map (headers, environment) whose credential-named entries are refused.

    Environment values may span lines; an HTTP header value never can.
    """
    values = check_str(non_empty=False, max_len=1024, multiline=multiline)

    def check(value: Any, path: str) -> list[Issue]:
        issues = check_str_map(keys, values)(value, path)
        if issues or not isinstance(value, Mapping):
            return issues
        return [
            error(f"{path}.{name}", f"carries a credential; {advice}")
            for name, literal in value.items()
            if literal and is_credential_name(str(name))
        ]

    return check


MCP_SERVER_KEYS: dict[str, Checker] = {
    "command": check_str(max_len=1024),
    "args": check_list(check_str(non_empty=False, max_len=1024), unique=False),
    "env": check_literal_map(
        "pass it through with env_vars (the variable's name) instead",
        check_env_name,
        multiline=True,
    ),
    "env_vars": check_list(check_env_name),
    "cwd": check_abs_path,
    "url": check_url,
    "bearer_token_env_var": check_env_name,
    "http_headers": check_literal_map(
        "use env_http_headers to name an environment variable",
        check_str(max_len=128, multiline=False),
        multiline=False,
    ),
    "env_http_headers": check_str_map(check_str(max_len=128), check_env_name),
    "startup_timeout_sec": check_number(minimum=0),
    "tool_timeout_sec": check_number(minimum=0),
    "enabled": check_bool,
    "required": check_bool,
    "enabled_tools": check_list(check_str(max_len=256)),
    "disabled_tools": check_list(check_str(max_len=256)),
    "scopes": check_list(check_str(max_len=256)),
}


def validate_mcp_server(doc: Any) -> list[Issue]:
    issues = check_table(MCP_SERVER_KEYS)(doc, "")
    if isinstance(doc, Mapping):
        transports = [k for k in ("command", "url") if k in doc]
        if len(transports) != 1:
            issues.append(
                error("", "must have exactly one of `command` (stdio) or `url` (streamable HTTP)")
            )
        elif "url" in doc:
            for key in ("args", "env", "env_vars", "cwd"):
                if key in doc:
                    issues.append(error(key, "only applies to stdio servers (with `command`)"))
        else:
            for key in ("bearer_token_env_var", "http_headers", "env_http_headers"):
                if key in doc:
                    issues.append(
                        error(key, "only applies to streamable HTTP servers (with `url`)")
                    )
    return issues


# --- helpers ------------------------------------------------------------------------------------


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def quoted(choices: tuple[str, ...]) -> str:
    return ", ".join(repr(c) for c in choices)


def type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
    }.get(type(value), "a table" if isinstance(value, Mapping) else type(value).__name__)
