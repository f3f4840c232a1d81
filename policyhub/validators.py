"""Checks shared by every input: text PostgreSQL cannot store or a reader cannot see, and the
lifetimes people give tokens and invitations."""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.exceptions import ValidationError

from policyhub.errors import ApplicationError
from providers.base import Issue
from providers.fields import char_name, prose_refused

_DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def is_plain_text(value: str) -> bool:
    """Nothing `plain_text` refuses."""
    return not any(prose_refused(char) for char in value)


def plain_text(value: str) -> None:
    """Refuse control characters (other than tab and newline), lone surrogates and the
    characters that reorder text: PostgreSQL cannot store NUL or surrogates, and the others hide
    or reorder text for whoever reads it later ("Trojan source"). The marks and joiners scripts
    need pass."""
    for char in value:
        if prose_refused(char):
            raise ValidationError(f"contains the control or invisible character {char_name(char)}")


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
