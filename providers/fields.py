"""Validation and rendering pieces every provider kind shares.

A kind lists its `FieldSpec`s; `check_settings` applies the rules common to all of them (types,
required fields, choices, per-field checks, literal secrets, provider id) and each kind adds only
what is its own. The credential fields (`env_key`, `auth_*`) and their rules live here too, because
Codex validates them the same way for every `[model_providers.<id>]` table.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from providers.base import (
    BUILTIN_PROVIDER_IDS,
    ENV_VAR_RE,
    PROVIDER_ID_RE,
    FieldSpec,
    Issue,
    ProviderKind,
    error,
    warning,
)
from providers.secrets import find_literal_secret, is_credential_name, url_has_credentials

# TOML integers are signed 64-bit; Codex reads these as u64, so both bounds apply.
MAX_TOML_INT = 2**63 - 1

# RFC 9110 field-name token.
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Characters that render invisibly or reorder text hide what a policy file says. Unicode's
# format characters (category Cf: zero-width spaces, joiners, byte-order marks, direction marks,
# embeddings, overrides, isolates, tags, soft hyphens), controls, lone surrogates, line and
# paragraph separators and the characters that render as blank letters are refused in every field
# Codex interprets; free text may hold the few that a script needs.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Letters and marks that render as nothing (Hangul fillers, the combining grapheme joiner).
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u034f")
# The joiners Persian script and emoji sequences need.
JOINERS = frozenset("\u200c\u200d")
# The marks right-to-left scripts need in names and prose (left-to-right, right-to-left and
# Arabic letter marks): they only set the direction of the neutral characters around them.
DIRECTION_MARKS = frozenset("\u200e\u200f\u061c")
# Embeddings, overrides and isolates make text display in another order than it reads
# ("Trojan source"): refused everywhere, names and descriptions included.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Zero-width spaces and the byte-order mark: never needed in a name.
ZERO_WIDTH = frozenset("\u200b\u2060\ufeff")

NEVER_STORE_SECRETS = (
    "PolicyHub never stores secrets; reference the credential by environment variable name "
    "(env_key, env_http_headers) or fetch it with a token command (auth_command)"
)

# Where an admin should put a credential that was typed into one of these maps instead.
_LITERAL_CREDENTIAL_HINTS = {
    "http_headers": "send it from an environment variable with env_http_headers instead",
    "query_params": (
        "Codex cannot read a query parameter from the environment; use env_key, auth_command "
        "or env_http_headers instead"
    ),
}


# --- single-value checks, used as FieldSpec.check / item_check / key_check ---------------------


def env_var_name(value: str) -> str | None:
    """An environment variable NAME such as `AZURE_OPENAI_API_KEY`, never its value."""
    if ENV_VAR_RE.match(value):
        return None
    return "must be an environment variable name (letters, digits and _), not its value"


def positive_int(value: int) -> str | None:
    return None if value > 0 else "must be greater than zero"


def header_name(value: str) -> str | None:
    return None if _HEADER_NAME_RE.match(value) else "is not a valid HTTP header name"


def query_param_name(value: str) -> str | None:
    return None if value.strip() == value and value else "must be a non-empty name without spaces"


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses, where plain http never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(value: str, *, allow_loopback_http: bool = False) -> str | None:
    """What is wrong with a base URL Codex will append paths to, or None."""
    if any(c.isspace() for c in value):
        return "must not contain spaces"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname:
        return "must be an absolute URL with a host, e.g. https://example.com/v1"
    http_allowed = allow_loopback_http and is_loopback_host(parts.hostname)
    if parts.scheme != "https" and not (parts.scheme == "http" and http_allowed):
        return "must use https" + (
            " (plain http only for localhost)" if allow_loopback_http else ""
        )
    if url_has_credentials(value):
        return (
            f"must not carry credentials (user info or a key in the query); {NEVER_STORE_SECRETS}"
        )
    if parts.query or parts.fragment:
        return "must not have a query string or #fragment (Codex appends paths to it)"
    return None


def https_url(value: str) -> str | None:
    return url_problem(value)


def http_url_loopback_ok(value: str) -> str | None:
    return url_problem(value, allow_loopback_http=True)


def choice_error(choices: Sequence[str]) -> str:
    return "must be one of: " + ", ".join(choices)


# --- the credential fields shared by azure, oracle-oci and custom ------------------------------

ENV_KEY = FieldSpec(
    name="env_key",
    type="str",
    label="API key environment variable",
    help="Name of the environment variable holding the key on developer machines.",
    check=env_var_name,
    credential="env",
)
AUTH_COMMAND = FieldSpec(
    name="auth_command",
    type="str",
    label="Token command",
    help="Program Codex runs to print a bearer token, e.g. `az`; arguments go in auth_args.",
    credential="command",
)
AUTH_ARGS = FieldSpec(
    name="auth_args",
    type="str_list",
    label="Token command arguments",
    help="Arguments for the token command, one per item.",
)
AUTH_TIMEOUT_MS = FieldSpec(
    name="auth_timeout_ms",
    type="int",
    label="Token command timeout (ms)",
    help="How long Codex waits for the token command; must be greater than zero.",
    check=positive_int,
)
AUTH_REFRESH_INTERVAL_MS = FieldSpec(
    name="auth_refresh_interval_ms",
    type="int",
    label="Token refresh interval (ms)",
    help="How often Codex re-runs the token command to refresh the token, in milliseconds.",
)
AUTH_OPTIONS = (AUTH_ARGS, AUTH_TIMEOUT_MS, AUTH_REFRESH_INTERVAL_MS)
AUTH_FIELDS = (AUTH_COMMAND, *AUTH_OPTIONS)


def auth_option_issues(settings: Mapping[str, Any]) -> list[Issue]:
    """The `auth_*` options mean nothing without a command; a command is not a shell line."""
    issues = []
    command = settings.get("auth_command")
    for spec in AUTH_OPTIONS:
        if settings.get(spec.name) is not None and command is None:
            issues.append(error(spec.name, "is only used together with auth_command"))
    if isinstance(command, str) and " " in command.strip():
        issues.append(
            warning(
                "auth_command",
                "contains spaces: Codex runs it as one program, so arguments belong in auth_args",
            )
        )
    return issues


def one_credential_required(settings: Mapping[str, Any]) -> list[Issue]:
    """Exactly one of `env_key` and `auth_command`."""
    return one_credential_issues(settings, required=True)


def one_credential_issues(settings: Mapping[str, Any], *, required: bool = False) -> list[Issue]:
    """Codex takes either `env_key` or an `[auth]` command, never both (docs/codex.md)."""
    has_env_key = settings.get("env_key") is not None
    has_command = settings.get("auth_command") is not None
    if has_env_key and has_command:
        return [
            error(
                "auth_command",
                "cannot be combined with env_key (Codex rejects a provider with both); "
                "choose one credential source",
            )
        ]
    if required and not (has_env_key or has_command):
        return [error("env_key", "set either env_key or auth_command")]
    return []


def auth_table(
    settings: Mapping[str, Any], *, default_timeout_ms: int | None = None
) -> dict[str, Any]:
    """The `[model_providers.<id>.auth]` table for a validated token command."""
    table: dict[str, Any] = {"command": settings["auth_command"]}
    if settings.get("auth_args") is not None:
        table["args"] = list(settings["auth_args"])
    timeout_ms = settings.get("auth_timeout_ms", default_timeout_ms)
    if timeout_ms is not None:
        table["timeout_ms"] = timeout_ms
    if settings.get("auth_refresh_interval_ms") is not None:
        table["refresh_interval_ms"] = settings["auth_refresh_interval_ms"]
    return table


def credential_entries(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`env_key`, or the `auth` table: whichever credential source the endpoint uses."""
    if settings.get("env_key") is not None:
        return {"env_key": settings["env_key"]}
    if settings.get("auth_command") is not None:
        return {"auth": auth_table(settings)}
    return {}


# --- provider ids ------------------------------------------------------------------------------


def provider_id_issues(kind: ProviderKind, provider_id: str) -> list[Issue]:
    """Built-in kinds use exactly their Codex id; every other kind must avoid all built-in ids."""
    if kind.builtin_id is not None:
        if provider_id == kind.builtin_id:
            return []
        return [
            error(
                "provider_id",
                f"a {kind.label} endpoint always uses Codex's built-in provider id "
                f"`{kind.builtin_id}`",
            )
        ]
    if not isinstance(provider_id, str) or not PROVIDER_ID_RE.match(provider_id):
        return [
            error(
                "provider_id",
                "must be 1-63 lowercase letters, digits, `-` or `_`, "
                "starting with a letter or digit",
            )
        ]
    if provider_id in BUILTIN_PROVIDER_IDS:
        return [
            error(
                "provider_id",
                f"`{provider_id}` is reserved by Codex for its built-in provider; "
                f"choose another id, e.g. `{provider_id}-{kind.kind}`",
            )
        ]
    return []


# --- generic settings validation ---------------------------------------------------------------


SettingsRule = Callable[[Mapping[str, Any]], list[Issue]]


def check_settings(
    kind: ProviderKind, settings: object, provider_id: str, *rules: SettingsRule
) -> list[Issue]:
    """The rules every kind shares (id, unknown keys, required fields, types, checks, secrets),
    then the kind's own `rules`, which may rely on `settings` being a mapping."""
    issues = provider_id_issues(kind, provider_id)
    if not isinstance(settings, Mapping):
        return [*issues, error("", "settings must be a table of field names to values")]
    issues.extend(_field_issues(kind, settings))
    for rule in rules:
        issues.extend(rule(settings))
    return issues


def _field_issues(kind: ProviderKind, settings: Mapping[str, Any]) -> list[Issue]:
    issues = []
    known = {spec.name for spec in kind.fields}
    for key in settings:
        if key not in known:
            issues.append(error(str(key), f"unknown setting for a {kind.label} endpoint"))
    for spec in kind.fields:
        value = settings.get(spec.name)
        if value is None:
            if spec.required:
                issues.append(error(spec.name, "is required"))
            continue
        issues.extend(field_issues(spec, value))
    return issues


def field_issues(spec: FieldSpec, value: Any) -> list[Issue]:
    """Type, shape, choices, checks and secret rules for one present value."""
    if spec.type == "str":
        if not isinstance(value, str):
            return [error(spec.name, "must be a string")]
        return _string_issues(spec.name, value, spec.check, spec.choices)
    if spec.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return [error(spec.name, "must be a whole number")]
        if not 0 <= value <= MAX_TOML_INT:
            return [error(spec.name, f"must be between 0 and {MAX_TOML_INT}")]
        return _checked(spec.name, value, spec.check)
    if spec.type == "bool":
        return [] if isinstance(value, bool) else [error(spec.name, "must be true or false")]
    if spec.type == "str_list":
        return _list_issues(spec, value)
    return _map_issues(spec, value)


def _checked(path: str, value: Any, check: Callable[[Any], str | None] | None) -> list[Issue]:
    message = check(value) if check else None
    return [error(path, message)] if message else []


def text_issues(
    path: str,
    value: str,
    *,
    multiline: bool = False,
    prose: bool = False,
    joiners: bool | None = None,
) -> list[Issue]:
    """Invisible or control characters, and literal secrets, in any string an admin typed.

    `multiline` free text (instructions) may also hold tabs and line breaks, and, unless
    `joiners` is False (a program or a token Codex compares byte for byte), the zero-width
    joiners that Persian script and emoji sequences need; `prose` (names that only people read)
    refuses only what hides or reorders text (prose_refused, zero-width spaces).
    """
    if prose:
        hidden = [c for c in value if prose_refused(c, multiline=multiline) or c in ZERO_WIDTH]
    else:
        allowed = {"\t", "\n"} if multiline else set()
        if multiline if joiners is None else joiners:
            allowed |= JOINERS
        hidden = [c for c in value if is_hidden_char(c) and c not in allowed]
    if hidden:
        return [error(path, f"contains the control or invisible character {char_name(hidden[0])}")]
    reason = find_literal_secret(value)
    if reason:
        return [error(path, f"{reason}: {NEVER_STORE_SECRETS}")]
    return []


def is_hidden_char(char: str) -> bool:
    return unicodedata.category(char) in HIDDEN_CATEGORIES or char in BLANK_LETTERS


def prose_refused(char: str, *, multiline: bool = True) -> bool:
    """What text people read (names, descriptions, reasons, what an agent reports) may not
    hold: controls (tabs and line breaks only where lines are), lone surrogates, and what
    reorders text. Direction marks, joiners, soft hyphens and the tags of flag emoji pass."""
    if char in "\t\n":
        return not multiline
    return char in BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cs")


def char_name(char: str) -> str:
    """`U+200F RIGHT-TO-LEFT MARK`: how a refusal or a page names a character it cannot show."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}" if name else f"U+{ord(char):04X}"


def _string_issues(
    path: str,
    value: str,
    check: Callable[[Any], str | None] | None,
    choices: Sequence[str] = (),
) -> list[Issue]:
    if not value.strip():
        return [error(path, "must not be empty (leave the setting out instead)")]
    issues = text_issues(path, value) or _checked(path, value, check)
    if issues:
        return issues
    if choices and value not in choices:
        return [error(path, choice_error(choices))]
    return []


def _list_issues(spec: FieldSpec, value: Any) -> list[Issue]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return [error(spec.name, "must be a list of strings")]
    issues: list[Issue] = []
    for index, item in enumerate(value):
        path = f"{spec.name}[{index}]"
        if not isinstance(item, str):
            issues.append(error(path, "must be a string"))
        else:
            issues.extend(_string_issues(path, item, spec.item_check))
    return issues or _checked(spec.name, value, spec.check)


def _map_issues(spec: FieldSpec, value: Any) -> list[Issue]:
    if not isinstance(value, Mapping):
        return [error(spec.name, "must be a table of names to strings")]
    item_check = env_var_name if spec.type == "env_map" else spec.item_check
    issues: list[Issue] = []
    for key, item in value.items():
        path = f"{spec.name}.{key}"
        if not isinstance(key, str) or not key:
            issues.append(error(spec.name, f"has an invalid name {key!r}"))
            continue
        issues.extend(_checked(path, key, spec.key_check) or text_issues(path, key))
        if not isinstance(item, str):
            issues.append(error(path, "must be a string"))
        elif spec.type == "str_map" and item and is_credential_name(key):
            hint = _LITERAL_CREDENTIAL_HINTS.get(spec.name, NEVER_STORE_SECRETS)
            issues.append(
                error(path, f"`{key}` carries a credential and must not be literal; {hint}")
            )
        else:
            issues.extend(_string_issues(path, item, item_check))
    return issues or _checked(spec.name, value, spec.check)


# --- model catalogues --------------------------------------------------------------------------


def regional_models(
    models: Mapping[str, tuple[str, ...]], region: str | None
) -> tuple[str, ...] | None:
    """Models served in `region` (plus those served everywhere); None when the region is unknown."""
    region_known = region is not None and region in models
    if not region_known and "*" not in models:
        return None
    regional = models[region] if region_known and region is not None else ()
    return tuple(dict.fromkeys((*models.get("*", ()), *regional)))


def catalogue_warning(
    kind: ProviderKind, model: str, catalogue: tuple[str, ...] | None, where: str
) -> Issue | None:
    """A warning when `model` is missing from a known catalogue; catalogues lag the clouds."""
    if catalogue is None or model in catalogue:
        return None
    return warning(
        "model",
        f"`{model}` is not in the {kind.label} catalogue {where} (as of "
        f"{kind.capabilities.as_of.isoformat()}); known: {', '.join(catalogue)}",
    )


def region_issues(kind: ProviderKind, field_name: str, settings: Mapping[str, Any]) -> list[Issue]:
    """A warning for a well-formed region the model catalogue does not know yet."""
    spec = kind.field_spec(field_name)
    region = settings.get(spec.name)
    if not isinstance(region, str) or region in kind.models:
        return []
    if spec.check is not None and spec.check(region) is not None:
        return []
    return [
        warning(
            spec.name,
            f"`{region}` is not in PolicyHub's {kind.label} catalogue (as of "
            f"{kind.capabilities.as_of.isoformat()}); models cannot be checked for it",
        )
    ]
