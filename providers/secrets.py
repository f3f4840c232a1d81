"""Spot literal credentials in admin input, so that no secret is ever stored or rendered.

PolicyHub only ever holds references to credentials (environment variable names, token commands).
These heuristics refuse the common ways a real key slips into a form anyway. They lean towards
silence on ordinary settings (URLs, paths, model ids, OCIDs, UUIDs, API versions, command flags):
an admin who is told that `openai.gpt-oss-120b` is a secret stops reading the messages.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

# Well-known credential shapes, searched anywhere in a value (e.g. inside `--key=...` arguments).
_KNOWN_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
        "contains a PEM private key",
    ),
    # OpenAI (`sk-`, `sk-proj-`, `sk-svcacct-`) and look-alikes; the digit keeps kebab-case out.
    (
        re.compile(r"(?<![A-Za-z0-9])sk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}"),
        "looks like an API key",
    ),
    (
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
        "looks like an AWS access key id",
    ),
    (re.compile(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}"), "looks like a GitHub token"),
    (re.compile(r"(?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{22,}"), "looks like a GitHub token"),
    (re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}"), "looks like a Slack token"),
    (re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}"), "looks like a Google API key"),
    (
        re.compile(r"(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
        "looks like a JSON Web Token",
    ),
    (
        re.compile(r"\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE),
        "carries a literal bearer token",
    ),
)

# Whole-token shapes: only judged when the token is exactly this.
# Azure keys are 32 hex digits; 40 and 64 hex digits are usually commit ids and digests, not keys.
_AZURE_HEX_KEY = re.compile(r"[0-9a-fA-F]{32}")
_AZURE_LONG_KEY = re.compile(r"[A-Za-z0-9]{84}")
# Identifiers that are long and random-looking by design, and not secrets.
_OCID = re.compile(r"ocid1\.[a-z0-9_]+\.[a-z0-9_-]*\.[a-z0-9_-]*\.[a-z0-9._-]*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_ENV_VAR_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'`]+")
_PATH_SEPARATORS = re.compile(r"[/\\]")
# AWS secret access keys: 40 characters of base64, often with `/` or `+`.
_AWS_SECRET_KEY = re.compile(r"[A-Za-z0-9/+]{40}")

# Tokens are split on whitespace and the separators of `--flag=value`, `k:v,k2:v2` style arguments.
_TOKEN_SPLIT = re.compile(r"[\s=,;\"'`]+")

_GENERIC_MIN_LENGTH = 32
# Bits per character. Random base62/base64 text of 32+ characters scores about 4.5; identifiers and
# words built from a small alphabet stay well below 4.
_GENERIC_MIN_ENTROPY = 4.0
# Share of neighbouring characters of different classes (lower, upper, digit, other). Random text
# switches at about 0.6; camelCase names and words switch once a word, about 0.25.
_GENERIC_MIN_SWITCH_RATE = 0.4
# Random text scatters its digits; names keep them together (`Name2024`, `gpt-oss-120b`).
_GENERIC_MIN_DIGIT_RUNS = 2
_DIGIT_RUN = re.compile(r"[0-9]+")

# Parts of a query-parameter name that mark its value as a credential (`api-key`, `sig`, ...).
_CREDENTIAL_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "sig",
        "signature",
        "credential",
        "credentials",
        "auth",
        "authorization",
    }
)


def find_literal_secret(value: str) -> str | None:
    """A short reason when `value` looks like a literal credential, else None."""
    for pattern, reason in _KNOWN_SHAPES:
        if pattern.search(value):
            return reason
    # URLs first and whole: splitting on `=` would tear `?api-key=...` apart.
    if any(url_has_credentials(url) for url in _URL.findall(value)):
        return "URL carries credentials"
    for token in _TOKEN_SPLIT.split(_URL.sub(" ", value)):
        token_reason = _token_secret_reason(token)
        if token_reason:
            return token_reason
    return None


def url_has_credentials(url: str) -> bool:
    """True when a URL embeds credentials: user info, or a query parameter named like a key."""
    try:
        parts = urlsplit(url)
        has_userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        return False
    if has_userinfo:
        return True
    return any(
        value and is_credential_name(name)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )


def is_credential_name(name: str) -> bool:
    """True when a header or parameter name says its value is a credential (`X-Api-Key`, `sig`)."""
    lowered = name.lower()
    if any(word in lowered for word in ("token", "secret", "password", "authorization", "cookie")):
        return True
    parts = set(re.split(r"[-_.\s]+", lowered))
    return bool(parts & _CREDENTIAL_WORDS) or "api-key" in lowered or "api_key" in lowered


def shannon_entropy(text: str) -> float:
    """Bits of information per character of `text`, by its own character frequencies."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


def _token_secret_reason(token: str) -> str | None:
    if _OCID.fullmatch(token) or _UUID.fullmatch(token):
        return None
    if _AZURE_HEX_KEY.fullmatch(token):
        return "looks like an Azure API key"
    if _AZURE_LONG_KEY.fullmatch(token) and _mixed_classes(token):
        return "looks like an Azure API key"
    if _looks_like_aws_secret_key(token):
        return "looks like an AWS secret access key"
    if _looks_random(token):
        return "looks like a random token (a key or password?)"
    return None


def _looks_random(token: str) -> bool:
    # Environment variable names and path segments are long by nature, not random; a path is
    # judged segment by segment so `/opt/Helper2026/x64` passes while a random segment does not.
    if _ENV_VAR_NAME.fullmatch(token):
        return False
    return any(_random_segment(segment) for segment in _PATH_SEPARATORS.split(token))


def _random_segment(token: str) -> bool:
    return (
        len(token) >= _GENERIC_MIN_LENGTH
        and _mixed_classes(token)
        and shannon_entropy(token) >= _GENERIC_MIN_ENTROPY
        and _class_switch_rate(token) >= _GENERIC_MIN_SWITCH_RATE
        and len(_DIGIT_RUN.findall(token)) >= _GENERIC_MIN_DIGIT_RUNS
    )


def _looks_like_aws_secret_key(token: str) -> bool:
    return (
        _AWS_SECRET_KEY.fullmatch(token) is not None
        and not token.startswith("/")
        and _mixed_classes(token)
        and shannon_entropy(token) >= _GENERIC_MIN_ENTROPY
    )


def _class_switch_rate(token: str) -> float:
    classes = [_char_class(c) for c in token]
    switches = sum(a != b for a, b in itertools.pairwise(classes))
    return switches / (len(token) - 1)


def _char_class(char: str) -> str:
    if char.islower():
        return "lower"
    if char.isupper():
        return "upper"
    return "digit" if char.isdigit() else "other"


def _mixed_classes(token: str) -> bool:
    has_lower = any(c.islower() for c in token)
    has_upper = any(c.isupper() for c in token)
    has_digit = any(c.isdigit() for c in token)
    return has_lower and has_upper and has_digit
