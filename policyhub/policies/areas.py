"""The requirement areas Codex added after its first allow-lists and pins: permission profiles,
the network proxy, managed hooks, OpenTelemetry, browser and computer use, and the rest of its
`ConfigRequirements` (docs/codex.md, "Requirement areas", lists each with the release that first
enforces it and how a team below may narrow it).

Every key and shape here was measured on the newest measured release: each leaf of a valid
document set to a value of the wrong type stops Codex (tests/codex/test_areas.py), so nothing
PolicyHub renders is a key Codex would silently ignore.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from policyhub.policies.checkers import (
    Checker,
    check_abs_path,
    check_bool,
    check_enum,
    check_env_name,
    check_list,
    check_literal_map,
    check_str,
    check_str_map,
    check_table,
    check_url,
    join,
    type_name,
)
from providers.base import Issue, error

# Built-in permission profiles (a name Codex does not define stops it: "refers to undefined
# profile"); custom `[permissions.<name>]` profiles are not rendered by PolicyHub.
PERMISSION_PROFILES = (":read-only", ":workspace", ":danger-full-access")
WINDOWS_SANDBOXES = ("elevated", "unelevated")
ALLOW_DENY = ("allow", "deny")
BROWSER_APPROVAL_LIFETIMES = ("turn", "thread")
OTEL_PROTOCOLS = ("binary", "json")
OTEL_PLAIN_EXPORTERS = ("none", "statsig")
# Events a managed hook can run on; Codex silently ignores any other name, so it is refused.
HOOK_EVENTS = (
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "PreCompact",
    "PostCompact",
    "SessionStart",
    "SessionEnd",
    "UserPromptSubmit",
    "Stop",
    "SubagentStart",
    "SubagentStop",
    "Interrupt",
    "PreModelRequest",
    "PostModelRequest",
)
# An exact host name, and the network proxy's patterns: an exact host or a scoped wildcard
# (`*.corp.example`); Codex refuses a bare `*`, `?`, schemes, ports and paths.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
HOST_PATTERN_RE = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")

check_allow_deny = check_enum(ALLOW_DENY)


def check_host_pattern(value: Any, path: str) -> list[Issue]:
    issues = check_str(max_len=253, multiline=False)(value, path)
    if not issues and not HOST_PATTERN_RE.match(value):
        issues.append(
            error(
                path,
                f"{value!r} is not a host name or a scoped wildcard such as *.corp.example (no "
                "bare *, scheme, port or path)",
            )
        )
    return issues


def check_host(value: Any, path: str) -> list[Issue]:
    issues = check_str(max_len=253, multiline=False)(value, path)
    if not issues and not HOST_RE.match(value):
        issues.append(
            error(path, f"{value!r} is not an exact host name (no wildcard, scheme, port or path)")
        )
    return issues


def check_port(value: Any, path: str) -> list[Issue]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return [error(path, "must be a port number from 1 to 65535")]
    return []


def check_count(*, minimum: int = 0) -> Checker:
    """A whole number (Codex reads these as unsigned integers)."""

    def check(value: Any, path: str) -> list[Issue]:
        if isinstance(value, bool) or not isinstance(value, int):
            return [error(path, f"must be a whole number, not {type_name(value)}")]
        if not minimum <= value <= 2**53:
            return [error(path, f"must be a whole number of at least {minimum}")]
        return []

    return check


def check_granular_approval(value: Any, path: str) -> list[Issue]:
    """`{ granular = { ... } }`: which approval prompts Codex may show, one flag each."""
    if not isinstance(value, Mapping) or set(value) != {"granular"}:
        return [error(path, "must be a policy name or { granular = { ... } }")]
    return check_table(
        {
            "sandbox_approval": check_bool,
            "rules": check_bool,
            "mcp_elicitations": check_bool,
            "skill_approval": check_bool,
            "request_permissions": check_bool,
        },
        required=("sandbox_approval", "rules", "mcp_elicitations"),
    )(value["granular"], join(path, "granular"))


# Flags of a granular approval policy Codex fills in when a table leaves them out.
GRANULAR_DEFAULTS = {"skill_approval": False, "request_permissions": False}


def canonical_approval(value: Any) -> Any:
    """An approval policy as Codex compares it: a granular table with its defaults filled in,
    so `{ granular = { ..., skill_approval = false } }` and the same table without it are one."""
    if isinstance(value, Mapping) and isinstance(value.get("granular"), Mapping):
        return {"granular": {**GRANULAR_DEFAULTS, **value["granular"]}}
    return value


def check_approval(names: Checker) -> Checker:
    """An approval policy: one of `names`, or the granular table."""

    def check(value: Any, path: str) -> list[Issue]:
        return (
            check_granular_approval(value, path)
            if isinstance(value, Mapping)
            else names(value, path)
        )

    return check


def check_permission_profiles(value: Any, path: str) -> list[Issue]:
    profile = check_enum(PERMISSION_PROFILES)
    return check_str_map(profile, check_bool)(value, path)


# --- the network proxy ---------------------------------------------------------------------------

NETWORK_PROXY_KEYS: dict[str, Checker] = {
    "enabled": check_bool,
    "http_port": check_port,
    "socks_port": check_port,
    "allow_upstream_proxy": check_bool,
    "dangerously_allow_non_loopback_proxy": check_bool,
    "dangerously_allow_all_unix_sockets": check_bool,
    "allow_local_binding": check_bool,
    "managed_allowed_domains_only": check_bool,
    "transparent_tcp": check_bool,
    "domains": check_str_map(check_host_pattern, check_allow_deny),
    "unix_sockets": check_str_map(check_abs_path, check_allow_deny),
    "review_domains": check_list(check_host_pattern),
}
_LEGACY_NETWORK = ("allowed_domains", "denied_domains", "allow_unix_sockets")


def check_network_proxy(value: Any, path: str) -> list[Issue]:
    if isinstance(value, Mapping):
        legacy = [key for key in _LEGACY_NETWORK if key in value]
        if legacy:
            return [
                error(
                    join(path, key),
                    "is Codex's legacy list form; write the host or socket in `domains` or "
                    '`unix_sockets` with "allow" or "deny"',
                )
                for key in legacy
            ]
    return check_table(NETWORK_PROXY_KEYS)(value, path)


# --- managed hooks ---------------------------------------------------------------------------------

_HOOK_HANDLER = check_table(
    {
        "type": check_enum(("command",)),
        "command": check_str(max_len=4096),
        "commandWindows": check_str(max_len=4096),
        "timeout": check_count(minimum=1),
        "statusMessage": check_str(max_len=256, multiline=False),
        "async": check_bool,
        "additionalContextLimit": check_count(),
    },
    required=("type", "command"),
)
_HOOK_GROUP = check_table(
    {
        "matcher": check_str(max_len=1024, multiline=False),
        "hooks": check_list(_HOOK_HANDLER, unique=False, non_empty=True),
    },
    required=("hooks",),
)
HOOKS_KEYS: dict[str, Checker] = {
    "managed_dir": check_abs_path,
    "windows_managed_dir": check_str(max_len=1024, multiline=False),
    **{event: check_list(_HOOK_GROUP, unique=False) for event in HOOK_EVENTS},
}


# --- OpenTelemetry -------------------------------------------------------------------------------

_OTEL_HEADERS = check_literal_map(
    "give a headers_helper command that prints it instead",
    check_str(max_len=128, multiline=False),
    multiline=False,
)
_OTEL_TLS = check_table(
    {
        "ca-certificate": check_abs_path,
        "client-certificate": check_abs_path,
        "client-private-key": check_abs_path,
    }
)


def check_otel_exporter(value: Any, path: str, headers: Checker | None = None) -> list[Issue]:
    if isinstance(value, str):
        return check_enum(OTEL_PLAIN_EXPORTERS)(value, path)
    if (
        not isinstance(value, Mapping)
        or len(value) != 1
        or next(iter(value))
        not in (
            "otlp-http",
            "otlp-grpc",
        )
    ):
        return [
            error(
                path,
                'must be "none", "statsig", { otlp-http = { ... } } or { otlp-grpc = { ... } }',
            )
        ]
    ((kind, settings),) = value.items()
    keys: dict[str, Checker] = {
        "endpoint": check_url,
        "headers": headers or _OTEL_HEADERS,
        "tls": _OTEL_TLS,
    }
    required: tuple[str, ...] = ("endpoint",)
    if kind == "otlp-http":
        # Codex stops without it ("missing field protocol"): there is no default.
        keys["protocol"] = check_enum(OTEL_PROTOCOLS)
        required = ("endpoint", "protocol")
    return check_table(keys, required=required)(settings, join(path, kind))


OTEL_KEYS: dict[str, Checker] = {
    "environment": check_str(max_len=128, multiline=False),
    "exporter": check_otel_exporter,
    "trace_exporter": check_otel_exporter,
    "metrics_exporter": check_otel_exporter,
    "log_user_prompt": check_bool,
    "log_sse_deltas": check_bool,
    "log_agent_responses": check_bool,
    "log_guardian_assessments": check_bool,
    "span_attributes": check_str_map(
        check_str(max_len=128, multiline=False), check_str(non_empty=False, max_len=1024)
    ),
    "tracestate": check_str_map(
        check_str(max_len=128, multiline=False),
        check_str_map(check_str(max_len=128, multiline=False), check_str(max_len=256)),
    ),
    "tool_result": check_table({"max_bytes": check_count()}, required=("max_bytes",)),
    "headers_helper": check_abs_path,
    "headers_helper_refresh_interval_ms": check_count(minimum=1),
}


# In config.toml, a headers_helper is run at every start (0.170 and later), so only the
# requirement may name one; the rest of the table is the same.
_OTEL_CONFIG_HEADERS = check_literal_map(
    "config.toml cannot carry it: require the exporter with a headers_helper instead",
    check_str(max_len=128, multiline=False),
    multiline=False,
)


def check_otel_config_exporter(value: Any, path: str) -> list[Issue]:
    """An exporter of config.toml: as in requirements, with its own advice for credentials."""
    return check_otel_exporter(value, path, headers=_OTEL_CONFIG_HEADERS)


OTEL_CONFIG_KEYS = {
    key: check_otel_config_exporter if check is check_otel_exporter else check
    for key, check in OTEL_KEYS.items()
    if key not in ("headers_helper", "headers_helper_refresh_interval_ms")
}


# --- config.toml defaults beyond the model and its policies -----------------------------------------

FILE_OPENERS = ("vscode", "vscode-insiders", "windsurf", "cursor", "none")
HISTORY_PERSISTENCE = ("save-all", "none")
SHELL_INHERIT = ("all", "core", "none")

CONFIG_AREA_KEYS: dict[str, Checker] = {
    "hide_agent_reasoning": check_bool,
    "show_raw_agent_reasoning": check_bool,
    "project_doc_max_bytes": check_count(),
    "model_context_window": check_count(minimum=1),
    "model_auto_compact_token_limit": check_count(minimum=1),
    "check_for_update_on_startup": check_bool,
    "file_opener": check_enum(FILE_OPENERS),
    "notify": check_list(check_str(max_len=1024), unique=False, non_empty=True),
    "default_permissions": check_enum(PERMISSION_PROFILES),
    "shell_environment_policy": check_table(
        {
            "inherit": check_enum(SHELL_INHERIT),
            "ignore_default_excludes": check_bool,
            "exclude": check_list(check_str(max_len=256, multiline=False)),
            "include_only": check_list(check_str(max_len=256, multiline=False)),
            "set": check_literal_map(
                "let the variable come from the developer's environment instead",
                check_env_name,
                multiline=True,
            ),
        }
    ),
    "history": check_table(
        {"persistence": check_enum(HISTORY_PERSISTENCE), "max_bytes": check_count()}
    ),
}


# --- browser and computer use ------------------------------------------------------------------------

_ORIGIN_POLICY = check_table(
    {
        "access": check_allow_deny,
        "access_approval_lifetime": check_enum(BROWSER_APPROVAL_LIFETIMES),
        "auto_review": check_allow_deny,
        "downloads": check_allow_deny,
        "full_cdp_access": check_allow_deny,
        "persistent_approval": check_bool,
        "uploads": check_allow_deny,
    }
)
_REQUEST_HEADER = check_table(
    {
        "name": check_str(max_len=128, multiline=False),
        "value": check_str(max_len=1024, multiline=False),
    },
    required=("name", "value"),
)


def check_request_headers(value: Any, path: str) -> list[Issue]:
    issues = check_list(_REQUEST_HEADER, unique=False)(value, path)
    if issues:
        return issues
    as_map = {str(header["name"]): str(header["value"]) for header in value}
    secret = check_literal_map(
        "a header the browser extension sends to every site must not be a credential",
        check_str(max_len=128),
        multiline=False,
    )(as_map, path)
    return [error(path, issue.message) for issue in secret]


BROWSER_USE_KEYS: dict[str, Checker] = {
    "allow_history_access": check_bool,
    "disable_auto_review": check_bool,
    "allow_global_persistent_approval": check_bool,
    "allow_webmcp": check_bool,
    "default_origin_policy": _ORIGIN_POLICY,
    "origins": check_str_map(check_str(max_len=512, multiline=False), _ORIGIN_POLICY),
    "extension": check_table({"request_headers": check_request_headers}),
}

_WINDOWS_EXE = check_table(
    {
        "access": check_allow_deny,
        "product_name": check_str(max_len=256, multiline=False),
        "publisher_name": check_str(max_len=256, multiline=False),
        "binary_name": check_str(max_len=256, multiline=False),
    },
    required=("access", "product_name", "publisher_name"),
)
COMPUTER_USE_KEYS: dict[str, Checker] = {
    "allow_locked_computer_use": check_bool,
    "allow_persistent_approval": check_bool,
    "default_app_access": check_allow_deny,
    "macos": check_table(
        {"bundle_ids": check_str_map(check_str(max_len=256, multiline=False), check_allow_deny)}
    ),
    "windows": check_table(
        {
            "aumids": check_str_map(check_str(max_len=256, multiline=False), check_allow_deny),
            "exes": check_list(_WINDOWS_EXE, unique=False),
        }
    ),
}


# --- every area --------------------------------------------------------------------------------

# Requirement key -> checker, in the order requirements.toml lists them (after the base keys).
AREA_KEYS: dict[str, Checker] = {
    "allowed_permission_profiles": check_permission_profiles,
    "default_permissions": check_enum(PERMISSION_PROFILES),
    "allow_appshots": check_bool,
    "allow_browser_and_computer_use": check_bool,
    "allow_remote_control": check_bool,
    "chatgpt_base_url": check_url,
    "log_dir": check_abs_path,
    "sqlite_home": check_abs_path,
    "windows": check_table(
        {
            "allowed_sandbox_implementations": check_list(
                check_enum(WINDOWS_SANDBOXES), non_empty=True
            ),
            "require_mxc": check_bool,
            "allow_mxc": check_bool,
        }
    ),
    "auto_review": check_table(
        {
            "required_on_models": check_list(check_str(max_len=256, multiline=False)),
            "ignore_rules": check_list(check_str(max_len=256, multiline=False)),
        }
    ),
    "feedback": check_table({"enabled": check_bool}),
    "in_app_browser": check_table({"allow_external_browser_settings_import": check_bool}),
    "application": check_table(
        {
            "network": check_table(
                {
                    "enabled": check_bool,
                    "domains": check_str_map(check_host, check_allow_deny),
                },
                required=("enabled", "domains"),
            ),
            "storage": check_table(
                {
                    "default_project_parent": check_abs_path,
                    "projectless_workspace_root": check_abs_path,
                }
            ),
        }
    ),
    "browser_use": check_table(BROWSER_USE_KEYS),
    "computer_use": check_table(COMPUTER_USE_KEYS),
    "network_proxy": check_network_proxy,
    "hooks": check_table(HOOKS_KEYS),
    "otel": check_table(OTEL_KEYS),
}


def permission_issues(requirements: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, problem) for the permission-profile rules Codex checks across keys at start."""
    allowed = requirements.get("allowed_permission_profiles")
    default = requirements.get("default_permissions")
    if allowed is None:
        if default is not None:
            return [("default_permissions", "requires allowed_permission_profiles")]
        return []
    if default is None:
        if not (allowed.get(":workspace") and allowed.get(":read-only")):
            return [
                (
                    "allowed_permission_profiles",
                    "must allow both ':workspace' and ':read-only' unless default_permissions "
                    "names the profile sessions start with (Codex refuses to start otherwise)",
                )
            ]
        return []
    if not allowed.get(default):
        return [
            (
                "default_permissions",
                f"{default!r} must be allowed by allowed_permission_profiles (Codex refuses "
                "to start otherwise)",
            )
        ]
    return []
