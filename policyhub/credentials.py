"""The secrets PolicyHub hands out: enrolment tokens and device credentials for machines, API
tokens and invitations for people.

Each is a 256-bit random URL-safe string with a kind prefix (so a leaked one is recognisable in
logs and secret scanners); only its sha256 is stored, so a database leak reveals none.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TypeGuard

ENROLLMENT_PREFIX = "phe_"
DEVICE_PREFIX = "phd_"
API_TOKEN_PREFIX = "pht_"
INVITATION_PREFIX = "phi_"
# token_urlsafe(32) is 43 characters of [A-Za-z0-9_-].
_SHAPE = {
    prefix: re.compile(rf"{prefix}[A-Za-z0-9_-]{{43}}")
    for prefix in (ENROLLMENT_PREFIX, DEVICE_PREFIX, API_TOKEN_PREFIX, INVITATION_PREFIX)
}


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def well_formed(secret: object, prefix: str) -> TypeGuard[str]:
    """Whether `secret` could be one of ours; anything else is refused before any lookup."""
    return isinstance(secret, str) and _SHAPE[prefix].fullmatch(secret) is not None
