"""The secrets PolicyHub hands out: enrolment tokens, device credentials and their fetch-only
credentials for machines, API tokens and invitations for people.

Each is a 256-bit URL-safe string with a kind prefix (so a leaked one is recognisable in logs and
secret scanners); only its sha256 is stored, so a database leak reveals none.

A device holds two: its credential (`phd_`, kept private by the agent) for everything the device
API offers, and a fetch credential (`phf_`) that the native channel's URL carries in
`requirements.toml`, a file every local user can read. The fetch credential is derived from the
device credential (an HMAC keyed by it), so the agent computes it itself and the server stores
only its hash; it fetches the bundle the machine already has and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import TypeGuard

ENROLLMENT_PREFIX = "phe_"
DEVICE_PREFIX = "phd_"
FETCH_PREFIX = "phf_"
API_TOKEN_PREFIX = "pht_"
INVITATION_PREFIX = "phi_"
# token_urlsafe(32) is 43 characters of [A-Za-z0-9_-].
_SHAPE = {
    prefix: re.compile(rf"{prefix}[A-Za-z0-9_-]{{43}}")
    for prefix in (
        ENROLLMENT_PREFIX,
        DEVICE_PREFIX,
        FETCH_PREFIX,
        API_TOKEN_PREFIX,
        INVITATION_PREFIX,
    )
}


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def fetch_credential(device_credential: str) -> str:
    """The fetch-only credential of a device credential (the agent derives it the same way)."""
    mac = hmac.digest(device_credential.encode(), b"policyhub fetch credential", "sha256")
    return FETCH_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def well_formed(secret: object, prefix: str) -> TypeGuard[str]:
    """Whether `secret` could be one of ours; anything else is refused before any lookup."""
    return isinstance(secret, str) and _SHAPE[prefix].fullmatch(secret) is not None
