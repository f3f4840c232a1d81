"""The small checkers every part of the policy schema is built from: plain values in, issues
out, each naming the field path it found a problem at (docs/codex.md says why each rule exists).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from providers.base import ENV_VAR_RE, PROVIDER_ID_RE, Issue, error, warning
from providers.fields import text_issues, url_problem
from providers.secrets import is_credential_name, url_has_credentials

# Names of profiles, MCP servers and endpoints follow Codex provider ids: TOML keys and file names.
NAME_RE = PROVIDER_ID_RE
FEATURE_RE = re.compile(r"^[a-z0-9_]{1,80}$")


# --- small checkers ---------------------------------------------------------------------------

Checker = Callable[[Any, str], list[Issue]]


def check_str(
    *,
    non_empty: bool = True,
    max_len: int = 4096,
    multiline: bool = True,
    prose: bool = False,
    joiners: bool | None = None,
) -> Checker:
    """A string; `prose` for names only people read (they may hold direction marks); `joiners`
    (by default where lines are) for free text whose script needs zero-width joiners."""

    def check(value: Any, path: str) -> list[Issue]:
        if not isinstance(value, str):
            return [error(path, f"must be a string, not {type_name(value)}")]
        if non_empty and not value.strip():
            return [error(path, "must not be empty")]
        if len(value) > max_len:
            return [error(path, f"is longer than {max_len} characters")]
        return text_issues(
            path,
            value,
            multiline=multiline,
            prose=prose,
            joiners=joiners,
        )

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
