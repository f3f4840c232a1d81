"""Text checks shared by API input: what PostgreSQL cannot store or a reader cannot see."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError


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
