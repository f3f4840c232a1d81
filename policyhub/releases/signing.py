"""Ed25519 signing keys: generated here, private halves encrypted at rest with a key derived from
SIGNING_KEY_SECRET, manifests canonical JSON so any verifier reproduces the signed bytes."""

from __future__ import annotations

import base64
import hashlib
import json
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


def sign(private_key_encrypted: bytes | memoryview, message: bytes) -> str:
    private = Ed25519PrivateKey.from_private_bytes(_fernet().decrypt(bytes(private_key_encrypted)))
    return base64.b64encode(private.sign(message)).decode()


def verify(public_key: str, message: bytes, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key)).verify(
            base64.b64decode(signature), message
        )
    except (InvalidSignature, ValueError):
        return False
    return True
