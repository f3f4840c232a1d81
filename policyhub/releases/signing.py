"""Ed25519 signing keys: generated here, private halves encrypted at rest with a key derived from
SIGNING_KEY_SECRET, manifests canonical JSON so any verifier reproduces the signed bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def _fernet() -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"policyhub signing keys"
    ).derive(settings.SIGNING_KEY_SECRET.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def generate() -> tuple[str, str, bytes]:
    """A new key pair: (key id, base64 public key, encrypted private key)."""
    private = Ed25519PrivateKey.generate()
    public_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    private_raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key_id = hashlib.sha256(public_raw).hexdigest()[:16]
    return key_id, base64.b64encode(public_raw).decode(), _fernet().encrypt(private_raw)


def canonical_json(value: Any) -> bytes:
    """The exact bytes that are signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def endorsement_message(key_id: str, public_key: str) -> bytes:
    """What an organisation's previous key signs to vouch for its successor."""
    return canonical_json(
        {"key_id": key_id, "public_key": public_key, "purpose": "policyhub-signing-key"}
    )


# What a revocation list says it is, and what a key's signature over its own revocation says.
REVOCATIONS_PURPOSE = "policyhub-key-revocations"
SELF_REVOCATION_PURPOSE = "policyhub-key-self-revocation"


def timestamp(moment: datetime) -> str:
    """A moment as revocations state it: UTC, ISO 8601, to the microsecond, ending in Z."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def revocations_message(
    organization: str, revoked: list[tuple[str, datetime]], issued_at: datetime
) -> bytes:
    """The organisation's list of revoked keys (id and when), signed by its active key. Agents
    keep the revocations of every list they verified and ignore a list no newer than the last."""
    return canonical_json(
        {
            "purpose": REVOCATIONS_PURPOSE,
            "organization": organization,
            "revoked": [
                {"key_id": key_id, "revoked_at": timestamp(at)}
                for key_id, at in sorted(revoked, key=lambda item: (item[1], item[0]))
            ],
            "issued_at": timestamp(issued_at),
        }
    )


def self_revocation_message(organization: str, key_id: str, revoked_at: datetime) -> bytes:
    """What a revoked key signs of itself. Only its holder can make it, and it can only take
    trust away, so a machine honours it with no other key: the one way a machine whose only
    trusted key is revoked learns of it."""
    return canonical_json(
        {
            "purpose": SELF_REVOCATION_PURPOSE,
            "organization": organization,
            "key_id": key_id,
            "revoked_at": timestamp(revoked_at),
        }
    )


def measurement_message(manifest: str, measured_until: str) -> bytes:
    """What a release's key signs beside a file set's manifest: the newest Codex release
    measured when the set was made, bound to that manifest by its sha256. Apart from the
    manifest because agents before 0.3.0 refuse a manifest with any field they do not know,
    and ignore a bundle field they do not know."""
    return canonical_json(
        {
            "manifest": hashlib.sha256(manifest.encode()).hexdigest(),
            "measured_until": measured_until,
            "purpose": "policyhub-codex-measurement",
        }
    )


def signed_time_message(manifest: str, signed_at: datetime) -> bytes:
    """When a release's key signed a manifest, bound to it by its sha256: with the manifest's
    organisation, team and revision, the time the release was made. Apart from the manifest for
    the reason measurement_message gives."""
    return canonical_json(
        {
            "manifest": hashlib.sha256(manifest.encode()).hexdigest(),
            "purpose": "policyhub-signed-time",
            "signed_at": timestamp(signed_at),
        }
    )


def assignment_message(organization: str, device_id: str, team: str, serial: int) -> bytes:
    """What the organisation's key signs when it tells a device which team it belongs to: the
    agent takes another team's release only with this, numbered higher than any it saw (a move
    undone by replaying an older assignment is refused)."""
    return canonical_json(
        {
            "device_id": device_id,
            "organization": organization,
            "purpose": "policyhub-device-assignment",
            "serial": serial,
            "team": team,
        }
    )


def sign(private_key_encrypted: bytes | memoryview, message: bytes) -> str:
    return base64.b64encode(_private_key(bytes(private_key_encrypted)).sign(message)).decode()


@lru_cache(maxsize=16)
def _private_key(private_key_encrypted: bytes) -> Ed25519PrivateKey:
    """The decrypted key, kept for the few keys a process signs with: a publish signs two
    statements per file set, and deriving and decrypting each time was most of the cost."""
    return Ed25519PrivateKey.from_private_bytes(_fernet().decrypt(private_key_encrypted))


def verify(public_key: str, message: bytes, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key)).verify(
            base64.b64decode(signature), message
        )
    except (InvalidSignature, ValueError):
        return False
    return True
