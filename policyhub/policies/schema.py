"""What a policy node may hold, checked as the newest measured Codex release checks it
(docs/codex.md lists what it accepts and why each rule here exists).

Plain data in, issues out: the services, the policy-as-code importer and the renderer all call
these before anything is stored or published. Paths in issues are relative to the section
(`requirements`, `config`, `profiles.<name>`, `mcp_servers.<name>`); callers anchor them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from policyhub.policies import areas
from policyhub.policies.checkers import (
    Checker,
    check_abs_path,
    check_bool,
    check_enum,
    check_env_name,
    check_list,
    check_literal_map,
    check_name,
    check_number,
    check_open_enum,
    check_str,
    check_str_map,
    check_table,
    check_url,
    join,
    type_name,
)
from providers.base import Issue, error, warning
from providers.codex_versions import NEWEST_MEASURED, feature_stages, version_text

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
    return check_list(areas.check_approval(check_enum(APPROVAL_POLICIES)), non_empty=True)(
        value, path
    )


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


# A program, an argument or a command token Codex compares byte for byte: a zero-width joiner
# in it would display as nothing and make a rule match nothing.
TOKEN = check_str(joiners=False)


def check_matcher(value: Any, path: str) -> list[Issue]:
    if not isinstance(value, Mapping):
        return [error(path, "must be a matcher table { match = ..., value/expression = ... }")]
    match = value.get("match")
    if match in ("exact", "prefix"):
        return check_table(
            {"match": check_enum(("exact", "prefix")), "value": TOKEN}, required=("value",)
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
        return TOKEN(target, where) if kind == "command" else check_url(target, where)
    if kind == "url":
        return check_matcher(target, where)
    return check_table(
        {"executable": TOKEN, "args": check_list(check_matcher, unique=False)},
        required=("executable",),
    )(target, where)


def check_mcp_allowlist(value: Any, path: str) -> list[Issue]:
    entry = check_table({"identity": check_identity}, required=("identity",))
    return check_str_map(check_name, entry)(value, path)


def check_pattern_token(value: Any, path: str) -> list[Issue]:
    if isinstance(value, Mapping) and set(value) == {"token"}:
        return TOKEN(value["token"], join(path, "token"))
    if isinstance(value, Mapping) and set(value) == {"any_of"}:
        return check_list(TOKEN, non_empty=True)(value["any_of"], join(path, "any_of"))
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
    # Endpoint names whose provider definitions Codex must use whenever a user selects them.
    "model_providers": check_list(check_name, non_empty=True),
    **areas.AREA_KEYS,
    "models": check_table(
        {
            "new_thread": check_table(
                {
                    "model": check_str(max_len=256, multiline=False),
                    "model_reasoning_effort": check_open_enum(
                        KNOWN_REASONING_EFFORTS, "reasoning effort"
                    ),
                    "service_tier": check_open_enum(KNOWN_SERVICE_TIERS, "service tier"),
                }
            )
        }
    ),
}
# Areas of Codex's requirements PolicyHub deliberately does not render, and why.
UNSUPPORTED_REQUIREMENTS = {
    "model_catalog_json": (
        "Codex reads the file at every start and refuses to start when it is missing or not "
        "its catalogue format; PolicyHub delivers only Codex's configuration files, so a pin "
        "would stop every machine that lacks the file (set models.new_thread instead)"
    ),
    "config_server": "PolicyHub writes it itself for the native channel (docs/codex.md)",
}


def validate_requirements(doc: Any) -> list[Issue]:
    return check_table(REQUIREMENT_KEYS)(doc, "")


# --- config defaults and profiles -----------------------------------------------------------------

_APPROVAL = areas.check_approval(
    check_enum(
        CONFIG_APPROVAL_POLICIES,
        refused={
            "untrusted": "'untrusted' is fatal in config.toml since Codex 0.149; allow it in requirements instead"
        },
    )
)

# Keys a named profile may set (docs/codex.md, "Profiles"; no provider or MCP tables in a profile).
PROFILE_KEYS: dict[str, Checker] = {
    "model": check_str(max_len=256, joiners=False),
    "model_provider": check_name,
    "model_reasoning_effort": check_open_enum(KNOWN_REASONING_EFFORTS, "reasoning effort"),
    "plan_mode_reasoning_effort": check_open_enum(KNOWN_REASONING_EFFORTS, "reasoning effort"),
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
    "chatgpt_base_url": check_url,
    # The Windows sandbox sessions start with (requirements.windows lists the allowed ones).
    "windows": check_table({"sandbox": check_enum(areas.WINDOWS_SANDBOXES)}),
    "sandbox_workspace_write": check_table(
        {
            "writable_roots": check_list(check_abs_path),
            "network_access": check_bool,
            "exclude_tmpdir_env_var": check_bool,
            "exclude_slash_tmp": check_bool,
        }
    ),
    "features": check_features(requirement=False),
    **areas.CONFIG_AREA_KEYS,
    "otel": check_table(areas.OTEL_CONFIG_KEYS),
}


def validate_config(doc: Any) -> list[Issue]:
    return check_table(CONFIG_KEYS)(doc, "")


def validate_profile(doc: Any) -> list[Issue]:
    return check_table(PROFILE_KEYS)(doc, "")


MCP_SERVER_KEYS: dict[str, Checker] = {
    "command": check_str(max_len=1024, joiners=False),
    "args": check_list(check_str(non_empty=False, max_len=1024, joiners=False), unique=False),
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
