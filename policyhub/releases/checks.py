"""System checks of a production deployment (`manage.py check --deploy`) for release signing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

SIGNING_KEY_SECRET_MIN_LENGTH = 32
# Fewer different characters than this (or one sequence repeated) is a pattern, not a secret.
SIGNING_KEY_SECRET_MIN_DISTINCT = 8
_HINT = (
    "Set SIGNING_KEY_SECRET to a random value of its own, at least "
    f"{SIGNING_KEY_SECRET_MIN_LENGTH} characters, e.g. the output of "
    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`, and keep it as safe as "
    "the database backups (changing it makes the stored signing keys unreadable)."
)


def _signing_key_secret_problem(secret: str) -> tuple[str, str] | None:
    """(check id, what is wrong) with SIGNING_KEY_SECRET; None if it will do."""
    if not secret:
        return (
            "releases.E001",
            "SIGNING_KEY_SECRET is empty: the signing keys are stored as good as unencrypted",
        )
    if secret == settings.SECRET_KEY:
        return "releases.E002", (
            "SIGNING_KEY_SECRET is not set (it then falls back to SECRET_KEY) or equals "
            "SECRET_KEY: a leak of either would give away both"
        )
    if len(secret) < SIGNING_KEY_SECRET_MIN_LENGTH:
        return "releases.E003", (
            f"SIGNING_KEY_SECRET has {len(secret)} characters; it needs at least "
            f"{SIGNING_KEY_SECRET_MIN_LENGTH}"
        )
    # A string is one sequence repeated exactly when it occurs inside itself doubled, off the ends.
    if len(set(secret)) < SIGNING_KEY_SECRET_MIN_DISTINCT or secret in (secret * 2)[1:-1]:
        return "releases.E004", (
            f"SIGNING_KEY_SECRET has too little entropy (fewer than "
            f"{SIGNING_KEY_SECRET_MIN_DISTINCT} different characters, or one sequence repeated)"
        )
    return None


@register(Tags.security, deploy=True)
def signing_key_secret_check(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """The release signing keys are stored encrypted with a key derived from SIGNING_KEY_SECRET
    (releases/signing.py): whoever has it and a database copy can sign releases every machine
    trusts. In production it must be set, strong, and not SECRET_KEY, to which settings.py falls
    back so that `make run` and the tests need none."""
    problem = _signing_key_secret_problem(settings.SIGNING_KEY_SECRET)
    if problem is None:
        return []
    check_id, message = problem
    return [Error(message, hint=_HINT, id=check_id)]
