"""Verification of bundles and signing keys: nothing reaches the disk before all of it passes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policyhub_agent.errors import UnknownSigningKey, VerificationError

MAX_BUNDLE_BYTES = 8 * 1024 * 1024
REQUIREMENTS = "requirements.toml"
CONFIG = "config.toml"
MANAGED_CONFIG = "managed_config.toml"
SYSTEM_FILES = (REQUIREMENTS, CONFIG, MANAGED_CONFIG)
PROFILE_RE = re.compile(r"profiles/([A-Za-z0-9][A-Za-z0-9_-]{0,63})\.config\.toml")
KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
ENDORSEMENT_PURPOSE = "policyhub-signing-key"
MANIFEST_FIELDS = {"organization", "team", "revision", "files", "content_digest", "key_id"}
# Signed since releases are rendered per Codex version; older releases lack it.
OPTIONAL_MANIFEST_FIELDS = {"codex"}
VERSION_RE = re.compile(r"(\d{1,4})\.(\d{1,4})\.(\d{1,4})")
Version = tuple[int, int, int]
# What releases without signed Codex versions were made for, and the newest Codex release
# measured by every PolicyHub that signed no measurement statement.
LEGACY_VERSION: Version = (0, 169, 0)
# The statement signed beside the manifest (a field the manifest cannot carry: agents before
# 0.3.0 refuse a manifest with a field they do not know, and ignore unknown bundle fields).
MEASUREMENT_FIELDS = {"manifest", "measured_until", "purpose"}
MEASUREMENT_PURPOSE = "policyhub-codex-measurement"


def parse_version(text: object) -> Version | None:
    """(0, 130, 0) for "0.130.0"; None for anything else."""
    match = VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def canonical_json(value: Any) -> bytes:
    """The exact bytes the server signs: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def profile_name(file_name: str) -> str | None:
    """The profile a release file name stands for, None for any other name."""
    match = PROFILE_RE.fullmatch(file_name)
    return match.group(1) if match else None


def _b64(value: object, size: int, what: str) -> bytes:
    """Strict base64 of exactly `size` bytes."""
    if not isinstance(value, str):
        raise VerificationError(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{what} is not valid base64") from exc
    if len(raw) != size:
        raise VerificationError(f"{what} is {len(raw)} bytes, not {size}")
    return raw


def signature_valid(public_key: str, message: bytes, signature: str) -> bool:
    """Whether `signature` (base64) is `public_key`'s (base64 raw) Ed25519 signature of `message`."""
    try:
        key = Ed25519PublicKey.from_public_bytes(_b64(public_key, 32, "public key"))
        key.verify(_b64(signature, 64, "signature"), message)
    except (InvalidSignature, VerificationError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Key:
    """One signing key as the server lists it."""

    key_id: str
    public_key: str
    status: str
    endorsed_by: str | None
    endorsement: str | None


def parse_key(value: object) -> Key:
    """A KEY object, checked: its id is the sha256 prefix of its public key, as the server makes it."""
    if not isinstance(value, dict):
        raise VerificationError("a signing key is not a JSON object")
    key_id, public_key = value.get("key_id"), value.get("public_key")
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise VerificationError(f"signing key id {key_id!r} is not 16 hex digits")
    raw = _b64(public_key, 32, f"public key of {key_id}")
    if hashlib.sha256(raw).hexdigest()[:16] != key_id:
        raise VerificationError(f"signing key {key_id} does not match its public key")
    status, endorsed_by, endorsement = (
        value.get("status"),
        value.get("endorsed_by"),
        value.get("endorsement"),
    )
    if status not in ("active", "retired"):
        raise VerificationError(f"signing key {key_id} has unknown status {status!r}")
    if endorsed_by is not None and (
        not isinstance(endorsed_by, str) or not KEY_ID_RE.fullmatch(endorsed_by)
    ):
        raise VerificationError(f"signing key {key_id} names an invalid endorsing key")
    if endorsement is not None and not isinstance(endorsement, str):
        raise VerificationError(f"signing key {key_id} has an invalid endorsement")
    assert isinstance(public_key, str)
    return Key(key_id, public_key, status, endorsed_by, endorsement)


def parse_keys(value: object) -> list[Key]:
    if not isinstance(value, list):
        raise VerificationError("the key list is not a JSON array")
    return [parse_key(item) for item in value]


def endorsement_message(key: Key) -> bytes:
    """What the endorsing key signed for `key`."""
    return canonical_json(
        {"key_id": key.key_id, "public_key": key.public_key, "purpose": ENDORSEMENT_PURPOSE}
    )


def endorsed_keys(
    pinned: Mapping[str, str], offered: list[Key]
) -> tuple[dict[str, str], dict[str, str]]:
    """(keys to pin, why each other unpinned key was not trusted).

    A key is trusted only through a chain of endorsements that starts at a pinned key; an
    unendorsed key is never trusted, and a pinned key id is never re-bound to another key.
    """
    trusted = dict(pinned)
    new: dict[str, str] = {}
    progress = True
    while progress:
        progress = False
        for key in offered:
            if key.key_id in trusted or key.endorsed_by not in trusted or key.endorsement is None:
                continue
            if signature_valid(trusted[key.endorsed_by], endorsement_message(key), key.endorsement):
                trusted[key.key_id] = new[key.key_id] = key.public_key
                progress = True
    reasons: dict[str, str] = {}
    for key in offered:
        if key.key_id in trusted:
            continue
        if key.endorsed_by is None or key.endorsement is None:
            reasons[key.key_id] = "it carries no endorsement by a pinned key"
        elif key.endorsed_by not in trusted:
            reasons[key.key_id] = f"its endorsing key {key.endorsed_by} is not trusted"
        else:
            reasons[key.key_id] = f"its endorsement by {key.endorsed_by} does not verify"
    return new, reasons


@dataclass(frozen=True)
class Bundle:
    """A bundle that passed every check."""

    organization: str
    team: str
    revision: int
    files: dict[str, str]
    key_id: str
    # The Codex versions the files are for, (from, until or None), and the organisation's window
    # they were made for. Releases made before windows say nothing: they were made for 0.169.0.
    versions: tuple[tuple[Version, Version | None], ...] = ((LEGACY_VERSION, None),)
    window: tuple[Version, Version] | None = None
    # From which of those versions Codex fetches from the server itself (the native channel).
    native_from: Version | None = LEGACY_VERSION
    # The newest Codex release measured when the files were made: a later one gets the files
    # made for this one, unmeasured.
    measured_until: Version = LEGACY_VERSION

    def is_for(self, codex: Version) -> bool:
        return any(
            start <= codex and (until is None or codex < until) for start, until in self.versions
        )

    def in_window(self, codex: Version) -> bool:
        return self.window is not None and self.window[0] <= codex <= self.window[1]

    def measured(self, codex: Version) -> bool:
        return codex <= self.measured_until

    def native_channel(self, codex: Version | None) -> bool:
        """Whether Codex `codex` on this machine fetches its policy from the server itself.

        An unknown version gets no channel: 0.164 and 0.165 read `config_server` and then
        refuse every session. Nor does one newer than the measured end: whether it reads the
        table as 0.166 did is not known, and Codex stops on a config server it cannot use, while
        the files the agent writes are read locally by every release.
        """
        return (
            self.native_from is not None
            and codex is not None
            and self.native_from <= codex <= self.measured_until
        )


def _shape(data: object) -> dict[str, Any]:
    """The bundle's fields, with the types the contract gives them."""
    if not isinstance(data, dict):
        raise VerificationError("the bundle is not a JSON object")
    expected: dict[str, type] = {
        "organization": str,
        "team": str,
        "revision": int,
        "files": dict,
        "hashes": dict,
        "manifest": str,
        "signature": str,
        "key_id": str,
    }
    for name, kind in expected.items():
        value = data.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise VerificationError(f"the bundle's {name!r} is missing or not a {kind.__name__}")
    for name in ("files", "hashes"):
        for key, value in data[name].items():
            if not isinstance(value, str):
                raise VerificationError(f"the bundle's {name}[{key!r}] is not a string")
    if not KEY_ID_RE.fullmatch(data["key_id"]):
        raise VerificationError("the bundle's key_id is not 16 hex digits")
    return data


def _names(names: set[str]) -> None:
    """Only the file names Codex reads: no other path can ever be written."""
    for name in sorted(names):
        if name not in SYSTEM_FILES and profile_name(name) is None:
            raise VerificationError(f"the bundle holds a file with a disallowed name: {name!r}")
    for name in (REQUIREMENTS, CONFIG):
        if name not in names:
            raise VerificationError(f"the bundle has no {name}")
    # On a case-insensitive disk (macOS) `Dev` and `dev` are one file: two such profiles would
    # overwrite each other, and dropping one would delete the other.
    folded = [name.casefold() for name in names]
    if len(set(folded)) != len(folded):
        raise VerificationError("the bundle holds file names that differ only in case")


def _manifest(bundle: dict[str, Any], organization: str) -> dict[str, Any]:
    """The signed manifest says exactly what the bundle says, for the enrolled organisation."""
    text = bundle["manifest"]
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise VerificationError("the signed manifest is not valid JSON") from exc
    if not isinstance(manifest, dict) or not (
        MANIFEST_FIELDS <= set(manifest) <= MANIFEST_FIELDS | OPTIONAL_MANIFEST_FIELDS
    ):
        raise VerificationError("the signed manifest does not have the expected fields")
    if canonical_json(manifest) != text.encode():
        raise VerificationError("the signed manifest is not canonical JSON")
    for name in ("organization", "team", "revision", "key_id"):
        if manifest[name] != bundle[name] or type(manifest[name]) is not type(bundle[name]):
            raise VerificationError(
                f"the bundle's {name} {bundle[name]!r} differs from the signed {manifest[name]!r}"
            )
    if manifest["organization"] != organization:
        raise VerificationError(
            f"the bundle is for organisation {manifest['organization']!r}, "
            f"this device is enrolled in {organization!r}"
        )
    if manifest["files"] != bundle["hashes"]:
        raise VerificationError("the bundle's file hashes differ from the signed manifest")
    if not isinstance(manifest["content_digest"], str):
        raise VerificationError("the signed manifest's content_digest is not a string")
    return manifest


def _codex(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The signed Codex versions, checked:
    {"versions": [[from, until|null], ...], "native_channel_from": v|null, "window": [min, max]}."""
    if "codex" not in manifest:
        return {}
    codex = manifest["codex"]
    problem = VerificationError("the signed manifest's codex versions are malformed")
    if not isinstance(codex, dict) or set(codex) != {"versions", "native_channel_from", "window"}:
        raise problem
    spans = []
    for span in codex["versions"] if isinstance(codex["versions"], list) else [None]:
        if not isinstance(span, list) or len(span) != 2:
            raise problem
        start, until = parse_version(span[0]), parse_version(span[1])
        if start is None or (span[1] is not None and until is None):
            raise problem
        spans.append((start, until))
    native = codex["native_channel_from"]
    native_from = parse_version(native)
    window = codex["window"]
    low, high = (
        (parse_version(window[0]), parse_version(window[1]))
        if isinstance(window, list) and len(window) == 2
        else (None, None)
    )
    if not spans or (native is not None and native_from is None) or low is None or high is None:
        raise problem
    return {"versions": tuple(spans), "native_from": native_from, "window": (low, high)}


def _measurement(bundle: Mapping[str, Any], public_key: str) -> dict[str, Any]:
    """The signed end of measurement, checked: a statement by the manifest's key naming this
    manifest's sha256 (so it cannot come from another release). None given: {}."""
    if "measurement" not in bundle and "measurement_signature" not in bundle:
        return {}
    text, signature = bundle.get("measurement"), bundle.get("measurement_signature")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise VerificationError("the bundle's measurement or its signature is not a string")
    if not signature_valid(public_key, text.encode(), signature):
        raise VerificationError("the measurement's signature does not verify")
    problem = VerificationError("the signed measurement is malformed")
    try:
        statement = json.loads(text)
    except ValueError as exc:
        raise problem from exc
    if not isinstance(statement, dict) or set(statement) != MEASUREMENT_FIELDS:
        raise problem
    if canonical_json(statement) != text.encode() or statement["purpose"] != MEASUREMENT_PURPOSE:
        raise problem
    if statement["manifest"] != hashlib.sha256(bundle["manifest"].encode()).hexdigest():
        raise VerificationError("the signed measurement is for another manifest")
    measured = parse_version(statement["measured_until"])
    if measured is None:
        raise problem
    return {"measured_until": measured}


def _contents(files: dict[str, str], hashes: dict[str, str]) -> None:
    """Every file is the signed bytes and parses as TOML."""
    for name in sorted(files):
        try:
            data = files[name].encode()
        except UnicodeEncodeError as exc:
            raise VerificationError(f"{name} is not valid Unicode text") from exc
        if (
            not SHA256_RE.fullmatch(hashes[name])
            or hashlib.sha256(data).hexdigest() != hashes[name]
        ):
            raise VerificationError(f"{name} does not match its signed sha256")
        try:
            tomllib.loads(files[name])
        except tomllib.TOMLDecodeError as exc:
            raise VerificationError(f"{name} is not valid TOML: {exc}") from exc


def verify_bundle(raw: bytes, pinned: Mapping[str, str], organization: str) -> Bundle:
    """The bundle in `raw` if every check passes, else VerificationError naming the first failure.

    Raises UnknownSigningKey (before any signature check) when its key is not in `pinned`, so the
    caller can look for an endorsed successor key and try again.
    """
    if len(raw) > MAX_BUNDLE_BYTES:
        raise VerificationError(f"the bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        data = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationError(
            f"the bundle is not valid JSON (incomplete download?): {exc}"
        ) from exc
    bundle = _shape(data)
    names = set(bundle["files"])
    if names != set(bundle["hashes"]):
        raise VerificationError("the bundle's files and hashes name different files")
    _names(names)
    key_id = bundle["key_id"]
    if key_id not in pinned:
        raise UnknownSigningKey(key_id)
    if not signature_valid(pinned[key_id], bundle["manifest"].encode(), bundle["signature"]):
        raise VerificationError(f"the manifest's signature by key {key_id} does not verify")
    manifest = _manifest(bundle, organization)
    codex = _codex(manifest)
    measured = _measurement(bundle, pinned[key_id])
    _contents(bundle["files"], bundle["hashes"])
    return Bundle(
        organization=bundle["organization"],
        team=bundle["team"],
        revision=bundle["revision"],
        files=dict(bundle["files"]),
        key_id=key_id,
        **codex,
        **measured,
    )
