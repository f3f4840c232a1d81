"""Verification of bundles and signing keys: nothing reaches the disk before all of it passes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
# When the manifest was signed, in a statement of its own (servers from agent 0.3.2 on).
SIGNED_TIME_FIELDS = {"manifest", "purpose", "signed_at"}
SIGNED_TIME_PURPOSE = "policyhub-signed-time"
# The server's signed word that this device belongs to a team: what lets a bundle of another
# team than the one the agent applied last be taken (a move), and only a newer one than it saw.
ASSIGNMENT_FIELDS = {"purpose", "organization", "device_id", "team", "serial"}
ASSIGNMENT_PURPOSE = "policyhub-device-assignment"
MAX_SERIAL = 2**31 - 1


def parse_version(text: object) -> Version | None:
    """(0, 130, 0) for "0.130.0"; None for anything else."""
    match = VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def unicode_clean(value: Any) -> bool:
    """Whether every string in parsed JSON is valid Unicode: JSON escapes can spell lone
    surrogates (`"\\ud800"`), which nothing can sign or encode."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


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
    pinned: Mapping[str, str], offered: list[Key], revoked: Collection[str] = ()
) -> tuple[dict[str, str], dict[str, str]]:
    """(keys to pin, why each other unpinned key was not trusted).

    A key is trusted only through a chain of endorsements that starts at a pinned key; an
    unendorsed key is never trusted, and a pinned key id is never re-bound to another key. A
    `revoked` key is never pinned and endorses nothing, pinned or not.
    """
    trusted = {key_id: key for key_id, key in pinned.items() if key_id not in revoked}
    new: dict[str, str] = {}
    progress = True
    while progress:
        progress = False
        for key in offered:
            if key.key_id in trusted or key.endorsed_by not in trusted or key.endorsement is None:
                continue
            if key.key_id in revoked:
                continue
            if signature_valid(trusted[key.endorsed_by], endorsement_message(key), key.endorsement):
                trusted[key.key_id] = new[key.key_id] = key.public_key
                progress = True
    reasons: dict[str, str] = {}
    for key in offered:
        if key.key_id in trusted:
            continue
        if key.key_id in revoked:
            reasons[key.key_id] = "the organisation revoked it"
        elif key.endorsed_by is not None and key.endorsed_by in revoked:
            reasons[key.key_id] = f"its endorsing key {key.endorsed_by} is revoked"
        elif key.endorsed_by is None or key.endorsement is None:
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
    # When the manifest was signed (UTC, ISO 8601), as the server signed it; None from servers
    # that sign no time.
    signed_at: str | None = None

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
    except (ValueError, RecursionError) as exc:
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


def _canonical(text: str, fields: set[str], purpose: str | None, malformed: str) -> dict[str, Any]:
    """A signed statement's JSON: canonical, exactly `fields`, and (when given) this `purpose`;
    VerificationError(`malformed`) otherwise."""
    problem = VerificationError(malformed)
    try:
        statement = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise problem from exc
    if not isinstance(statement, dict) or set(statement) != fields:
        raise problem
    if canonical_json(statement) != text.encode():
        raise problem
    if purpose is not None and statement["purpose"] != purpose:
        raise problem
    return statement


def _statement(
    bundle: Mapping[str, Any], field: str, what: str, fields: set[str], public_key: str
) -> dict[str, Any] | None:
    """A statement signed beside the manifest (`field` and `field_signature`), checked: by the
    manifest's key, canonical, with exactly `fields`, naming this manifest's sha256 (so it
    cannot come from another release). None when the bundle has none."""
    if field not in bundle and f"{field}_signature" not in bundle:
        return None
    text, signature = bundle.get(field), bundle.get(f"{field}_signature")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise VerificationError(f"the bundle's {what} or its signature is not a string")
    if not signature_valid(public_key, text.encode(), signature):
        raise VerificationError(f"the {what}'s signature does not verify")
    statement = _canonical(text, fields, None, f"the signed {what} is malformed")
    if statement["manifest"] != hashlib.sha256(bundle["manifest"].encode()).hexdigest():
        raise VerificationError(f"the signed {what} is for another manifest")
    return statement


def _measurement(bundle: Mapping[str, Any], public_key: str) -> dict[str, Any]:
    """The signed end of measurement; none given: {}."""
    statement = _statement(bundle, "measurement", "measurement", MEASUREMENT_FIELDS, public_key)
    if statement is None:
        return {}
    measured = parse_version(statement["measured_until"])
    if statement["purpose"] != MEASUREMENT_PURPOSE or measured is None:
        raise VerificationError("the signed measurement is malformed")
    return {"measured_until": measured}


def _signed_time(bundle: Mapping[str, Any], public_key: str, now: datetime) -> dict[str, Any]:
    """When the manifest was signed (servers before this statement give none: {}). A time
    more than a day ahead of this machine's clock is refused: no genuine release has it."""
    statement = _statement(bundle, "signed_time", "signing time", SIGNED_TIME_FIELDS, public_key)
    if statement is None:
        return {}
    at = parse_timestamp(statement["signed_at"])
    if statement["purpose"] != SIGNED_TIME_PURPOSE or at is None:
        raise VerificationError("the signed signing time is malformed")
    if at > now + MAX_CLOCK_SKEW:
        raise VerificationError(
            f"the bundle says it was signed at {statement['signed_at']}, more than a day ahead "
            "of this machine's clock"
        )
    return {"signed_at": statement["signed_at"]}


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
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise VerificationError(
            f"the bundle is not valid JSON (incomplete download?): {exc}"
        ) from exc
    if not unicode_clean(data):
        raise VerificationError("the bundle holds text that is not valid Unicode")
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
    signed = _signed_time(bundle, pinned[key_id], datetime.now(UTC))
    _contents(bundle["files"], bundle["hashes"])
    return Bundle(
        organization=bundle["organization"],
        team=bundle["team"],
        revision=bundle["revision"],
        files=dict(bundle["files"]),
        key_id=key_id,
        **codex,
        **measured,
        **signed,
    )


@dataclass(frozen=True)
class Assignment:
    """A verified team assignment: the team, and how many moves led to it (higher is newer)."""

    team: str
    serial: int


def verify_assignment(
    answer: object, pinned: Mapping[str, str], organization: str, device_id: str
) -> Assignment:
    """The server's signed assignment of this device, checked: signed by a pinned key, for this
    organisation and this device, canonical, with a team and a serial."""
    if not isinstance(answer, dict):
        raise VerificationError("the team assignment is not a JSON object")
    text, signature, key_id = answer.get("statement"), answer.get("signature"), answer.get("key_id")
    if not isinstance(text, str) or not isinstance(signature, str) or not isinstance(key_id, str):
        raise VerificationError("the team assignment lacks its statement, signature or key id")
    if key_id not in pinned:
        raise VerificationError(
            f"the team assignment is signed by key {key_id}, which is not pinned"
        )
    if not signature_valid(pinned[key_id], text.encode(), signature):
        raise VerificationError("the team assignment's signature does not verify")
    problem = VerificationError("the signed team assignment is malformed")
    statement = _canonical(text, ASSIGNMENT_FIELDS, ASSIGNMENT_PURPOSE, str(problem))
    if statement["organization"] != organization or statement["device_id"] != device_id:
        raise VerificationError("the signed team assignment is for another device")
    team, serial = statement["team"], statement["serial"]
    if not isinstance(team, str) or not team:
        raise problem
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 <= serial <= MAX_SERIAL:
        raise problem
    return Assignment(team, serial)


# --- revocations ----------------------------------------------------------------------------

REVOCATIONS_PURPOSE = "policyhub-key-revocations"
REVOCATIONS_FIELDS = {"purpose", "organization", "revoked", "issued_at"}
SELF_REVOCATION_PURPOSE = "policyhub-key-self-revocation"
# A revocation list dated further ahead of this machine's clock is ignored: one dated far in the
# future would make every real list after it look stale.
MAX_CLOCK_SKEW = timedelta(days=1)


def parse_timestamp(text: object) -> datetime | None:
    """A moment as revocations state it (ISO 8601 with a zone, "...Z"); None for anything else."""
    if not isinstance(text, str) or len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def self_revocation_message(organization: str, key_id: str, revoked_at: str) -> bytes:
    """What a revoked key signed of itself."""
    return canonical_json(
        {
            "key_id": key_id,
            "organization": organization,
            "purpose": SELF_REVOCATION_PURPOSE,
            "revoked_at": revoked_at,
        }
    )


def self_revoked(value: object, organization: str) -> tuple[dict[str, str], int]:
    """(key id -> when, how many entries did not verify) of the answer's `self_revocations`.

    Each proves itself: the key's id is the sha256 prefix of the public key given with it, and
    that key signed its own revocation. Only the key's holder can make one and it can only take
    trust away, so no other key is needed: this is how a machine learns that its only trusted
    key is revoked. Absent (a server before revocations): nothing.
    """
    if not isinstance(value, list):
        return {}, 0 if value is None else 1
    revoked: dict[str, str] = {}
    bad = 0
    for entry in value:
        proved = _self_revocation(entry, organization)
        if proved is None:
            bad += 1
        else:
            revoked[proved[0]] = proved[1]
    return revoked, bad


def _self_revocation(entry: object, organization: str) -> tuple[str, str] | None:
    """(key id, when) of one self-revocation that proves itself, else None."""
    if not isinstance(entry, dict):
        return None
    try:
        key = parse_key({**entry, "status": "retired"})
    except VerificationError:
        return None
    at, signature = entry.get("revoked_at"), entry.get("signature")
    if not isinstance(at, str) or parse_timestamp(at) is None or not isinstance(signature, str):
        return None
    message = self_revocation_message(organization, key.key_id, at)
    return (key.key_id, at) if signature_valid(key.public_key, message, signature) else None


@dataclass(frozen=True)
class RevocationList:
    """A revocation list that passed every check: the keys it revokes (id -> when) and when it
    was issued."""

    revoked: dict[str, str]
    issued_at: str


def _revocation_statement(text: str, organization: str) -> tuple[dict[str, str], str]:
    """The list's revoked keys and issue time, from its canonical JSON statement."""
    problem = VerificationError("the revocation list is malformed")
    statement = _canonical(text, REVOCATIONS_FIELDS, REVOCATIONS_PURPOSE, str(problem))
    if statement["organization"] != organization:
        raise VerificationError(
            f"the revocation list is for organisation {statement['organization']!r}, this device "
            f"is enrolled in {organization!r}"
        )
    entries = statement["revoked"]
    if not isinstance(entries, list) or parse_timestamp(statement["issued_at"]) is None:
        raise problem
    revoked: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"key_id", "revoked_at"}:
            raise problem
        key_id, at = entry["key_id"], entry["revoked_at"]
        if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
            raise problem
        if parse_timestamp(at) is None:
            raise problem
        revoked[key_id] = at
    return revoked, statement["issued_at"]


def verify_revocations(
    answer: Mapping[str, Any],
    pinned: Mapping[str, str],
    offered: list[Key],
    revoked: Collection[str],
    organization: str,
    now: datetime,
) -> RevocationList | None:
    """The answer's revocation list if it is genuine; None when the answer carries none (a
    server before revocations, or no key was ever revoked). VerificationError says why a list
    is ignored.

    Genuine: canonical JSON for this organisation, signed by a key this machine trusts (pinned,
    or endorsed through pinned keys) that neither it nor the list revokes, and issued no later
    than a day ahead of this machine's clock. Whether it is newer than the one the machine
    holds is the caller's question (`newer_revocations`).
    """
    text = answer.get("revocations")
    signature, key_id = answer.get("revocations_signature"), answer.get("revocations_key_id")
    if text is None and signature is None and key_id is None:
        return None
    if not isinstance(text, str) or not isinstance(signature, str) or not isinstance(key_id, str):
        raise VerificationError("the revocation list, its signature or its key id is missing")
    listed, issued_at = _revocation_statement(text, organization)
    # Every key the list or this machine revokes is left out of the trust that checks it.
    untrusted = set(revoked) | set(listed)
    trusted = {k: v for k, v in pinned.items() if k not in untrusted}
    trusted.update(endorsed_keys(trusted, offered, untrusted)[0])
    if key_id not in trusted:
        why = "is revoked" if key_id in untrusted else "is not trusted by this machine"
        raise VerificationError(f"the revocation list is signed by key {key_id}, which {why}")
    if not signature_valid(trusted[key_id], text.encode(), signature):
        raise VerificationError(f"the revocation list's signature by key {key_id} does not verify")
    issued = parse_timestamp(issued_at)
    assert issued is not None
    if issued > now + MAX_CLOCK_SKEW:
        raise VerificationError(
            f"the revocation list was issued at {issued_at}, more than a day ahead of this "
            "machine's clock"
        )
    return RevocationList(listed, issued_at)


def newer_revocations(listed: RevocationList, held: str | None) -> bool:
    """Whether a genuine list is newer than the one the machine holds (issued at `held`)."""
    before = parse_timestamp(held)
    issued = parse_timestamp(listed.issued_at)
    assert issued is not None
    return before is None or issued > before


@dataclass(frozen=True)
class KeyUpdate:
    """What the server's key answer changes for this machine: the keys it trusts now (revoked
    ones dropped, endorsed new ones added), every key it knows revoked, the newest list it holds,
    why offered keys were not trusted, and what it ignored (a forged or stale list)."""

    pinned: dict[str, str]
    revoked: dict[str, str]
    issued_at: str | None
    reasons: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def key_update(
    answer: Mapping[str, Any],
    pinned: Mapping[str, str],
    revoked: Mapping[str, str],
    issued_at: str | None,
    organization: str,
    now: datetime,
) -> KeyUpdate:
    """The keys and revocations of a key answer (the key list or the enrolment answer), applied
    to what the machine holds. Revocations only ever add up: a genuine list newer than the one
    held adds its keys (and with it, pinned keys the answer does not list are dropped);
    self-revocations add theirs; nothing un-revokes a key. A malformed key list is a
    VerificationError, as it always was; a bad revocation list is only ignored."""
    offered = parse_keys(answer.get("keys"))
    known = dict(revoked)
    proved, bad = self_revoked(answer.get("self_revocations"), organization)
    known.update(proved)
    ignored = [f"{bad} self-revocation(s) that do not verify"] if bad else []
    try:
        listed = verify_revocations(answer, pinned, offered, known, organization, now)
    except VerificationError as exc:
        listed = None
        ignored.append(str(exc))
    kept = dict(pinned)
    if listed is not None:
        if newer_revocations(listed, issued_at):
            known.update({k: v for k, v in listed.revoked.items() if k not in known})
            issued_at = listed.issued_at
            # The server that issued it lists every key it did not revoke: a pinned key it does
            # not list is none of the organisation's (say one a revoked key endorsed before this
            # machine knew of the revocation), and goes too.
            kept = {k: v for k, v in kept.items() if k in {key.key_id for key in offered}}
        elif listed.issued_at != issued_at:
            ignored.append(
                f"the revocation list issued at {listed.issued_at} is older than the one this "
                f"machine holds (issued at {issued_at})"
            )
    kept = {k: v for k, v in kept.items() if k not in known}
    new, reasons = endorsed_keys(kept, offered, known)
    return KeyUpdate({**kept, **new}, known, issued_at, reasons, ignored)
