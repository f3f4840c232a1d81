"""Checks shared by every input: text PostgreSQL cannot store or a reader cannot see, and the
lifetimes people give tokens and invitations."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

from django.core.exceptions import ValidationError

from policyhub.errors import ApplicationError
from providers.base import Issue

_DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def is_plain_text(value: str) -> bool:
    """No control characters but tab and newline, no lone surrogates."""
    return all(char in "\t\n" or unicodedata.category(char) not in ("Cc", "Cs") for char in value)


def plain_text(value: str) -> None:
    """Refuse control characters (other than tab and newline) and lone surrogates: PostgreSQL
    cannot store NUL or surrogates, and the others hide text from whoever reads it later."""
    for char in value:
        if char in "\t\n":
            continue
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValidationError(f"contains the control character U+{ord(char):04X}")


def duration_parse(
    text: str, *, field: str = "expires", maximum: timedelta = timedelta(days=365)
) -> timedelta:
    """`30m`, `12h`, `7d`: a lifetime someone gives a token or an invitation."""
    match = _DURATION_RE.match(text.strip())
    if not match:
        raise ApplicationError(
            f"{field} must be a number followed by m, h or d (e.g. 7d)",
            [Issue("error", field, f"{text!r} is not a duration like 30m, 12h or 7d")],
        )
    value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if value > maximum:
        longest = f"{maximum.days}d"
        raise ApplicationError(
            f"{field} may be at most {longest}",
            [Issue("error", field, f"{text} is longer than {maximum.days} days")],
        )
    return value
