"""Manifests: what an export holds, signed with the organisation's release-signing key, and the
check of a file against one (`manage.py audit verify-export FILE MANIFEST`).

A manifest states the organisation, the filters, what the export is pinned to (a chain position,
or for receipts a moment), the row count, an audit export's chain links at both ends and the
sha256 of the file's bytes. The check needs nothing but
the two files and the public key (from this server's key list, or given): it verifies the
signature, the file's bytes, every row's hash against its content, and for an unfiltered run of
the chain that each row links to the one before it, and reports the first row that fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from django.utils import timezone

from policyhub.actors import Actor
from policyhub.audit.chain import FIELDS, event_hash
from policyhub.exports.files import AUDIT_COLUMNS, RECEIPT_COLUMNS, Export
from policyhub.exports.formats import read
from policyhub.releases import signing
from policyhub.releases.models import SigningKey
from policyhub.releases.services.keys import signing_key_active

FORMAT = "policyhub-export-v1"


def manifest_signed(export: Export, actor: Actor) -> dict[str, Any]:
    """The manifest of an export whose `chunks()` ran to the end, signed with the organisation's
    active key."""
    organization = export.organization
    count, first, last = export.ends()
    body: dict[str, Any] = {
        "format": FORMAT,
        "kind": export.kind,
        "file_format": export.file_format,
        "file_name": export.filename,
        "organization": {"id": organization.pk, "slug": organization.slug},
        "filter": dict(sorted(export.filter.items())),
        **export.pin,
        "contiguous": export.contiguous,
        "rows": count,
        "first": asdict(first) if first else None,
        "last": asdict(last) if last else None,
        "sha256": export.sha256,
        "exported_at": timezone.now().isoformat(),
        "exported_by": actor.label,
    }
    key = signing_key_active(organization=organization, actor=actor)
    body["key_id"] = key.key_id
    body["signature"] = signing.sign(key.private_key_encrypted, _signed_bytes(body))
    return body


# What the signature covers starts with this, so the key that signs releases never signs bytes
# that could be read as a release manifest (an auditor chooses the filter's text).
SIGNED_PREFIX = b"policyhub-export-manifest-v1\n"


def _signed_bytes(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return SIGNED_PREFIX + signing.canonical_json(body)


@dataclass
class ExportCheck:
    """The outcome of checking a file against its manifest: every problem found, first first."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.rows} rows match the signed manifest"
        return "FAILED:\n" + "\n".join(f"  {problem}" for problem in self.problems)


def export_verify(file: Path, manifest_file: Path, public_key: str | None = None) -> ExportCheck:
    """Check `file` against `manifest_file`. The public key is the one given (base64, as the
    key list shows it) or, on the server, the key the manifest names, retired or not; a key the
    server knows as revoked fails the check whichever way it is given."""
    check = ExportCheck()
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} manifest")
        organization = manifest.get("organization")
        if not isinstance(organization, dict) or type(organization.get("id")) is not int:
            raise ValueError("it names no organisation id")
    except (OSError, ValueError) as exc:
        check.problems.append(f"manifest: {exc}")
        return check
    # The key that really signs: the one given (whatever id the manifest claims), else the named
    # one. Whoever holds a revoked key can sign anything, dated as they like.
    signer = _key_id_of(public_key) if public_key else manifest.get("key_id")
    revoked_at = _revoked_at(signer)
    if revoked_at is not None:
        check.problems.append(
            f"manifest: key {signer} was revoked at {revoked_at.isoformat()}: "
            "its signature proves nothing; export again to have the active key sign it"
        )
    key = public_key or _server_key(manifest.get("key_id"))
    if key is None:
        check.problems.append(
            f"manifest: key {manifest.get('key_id')!r} is unknown here; pass its public key"
        )
    elif not signing.verify(key, _signed_bytes(manifest), str(manifest.get("signature", ""))):
        check.problems.append("manifest: the signature does not verify (altered or another key)")
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != manifest.get("sha256"):
        check.problems.append("file: its sha256 is not the manifest's (the bytes changed)")
    with file.open(encoding="utf-8", newline="") as stream:
        if manifest.get("kind") == "audit":
            _check_audit_rows(check, stream, manifest)
        else:
            _check_rows(check, stream, manifest)
    return check


def _check_rows(check: ExportCheck, stream: TextIO, manifest: dict[str, Any]) -> None:
    """Rows without a chain (receipts): each readable, and as many as the manifest says."""
    try:
        for number, _ in enumerate(
            read(str(manifest.get("file_format")), RECEIPT_COLUMNS, stream), start=1
        ):
            check.rows = number
    except (ValueError, UnicodeDecodeError) as exc:
        check.problems.append(f"file: {exc}")
        return
    if check.rows != manifest.get("rows"):
        check.problems.append(f"file: {check.rows} rows, the manifest says {manifest.get('rows')}")


def _key_id_of(public_key: str) -> str | None:
    """A key's id as the server names keys: the first 16 hex digits of its raw key's sha256."""
    try:
        raw = base64.b64decode(public_key, validate=True)
    except ValueError:
        return None
    return hashlib.sha256(raw).hexdigest()[:16]


def _revoked_at(key_id: Any) -> datetime | None:
    """When the organisation revoked this key, if this server knows it and it was."""
    if not isinstance(key_id, str):
        return None
    return (
        SigningKey.objects.filter(key_id=key_id, revoked_at__isnull=False)
        .values_list("revoked_at", flat=True)
        .first()
    )


def _server_key(key_id: Any) -> str | None:
    if not isinstance(key_id, str):
        return None
    return SigningKey.objects.filter(key_id=key_id).values_list("public_key", flat=True).first()


def _check_audit_rows(check: ExportCheck, stream: TextIO, manifest: dict[str, Any]) -> None:
    """Each row's hash against its content; the links of an unbroken run; the count and ends."""
    organization_id = manifest["organization"]["id"]
    previous: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    try:
        rows = read(str(manifest.get("file_format")), AUDIT_COLUMNS, stream)
        for number, row in enumerate(rows, start=1):
            check.rows = number
            first = first or row
            where = f"row {number} (event {row['seq']})"
            if len(check.problems) < 20:
                try:
                    content = {name: row[name] for name in FIELDS}
                    computed = event_hash(organization_id, row["prev_hash"], content)
                except (TypeError, ValueError) as exc:
                    check.problems.append(f"{where}: unreadable ({exc})")
                else:
                    if computed != row["hash"]:
                        check.problems.append(f"{where}: its content does not match its hash")
                follows = previous is None or (
                    row["prev_hash"] == previous["hash"] and row["seq"] == previous["seq"] + 1
                )
                if manifest.get("contiguous") and not follows:
                    check.problems.append(f"{where}: does not follow the row before it")
            previous = row
    except (ValueError, UnicodeDecodeError) as exc:
        check.problems.append(f"file: {exc}")
        return
    if check.rows != manifest.get("rows"):
        check.problems.append(f"file: {check.rows} rows, the manifest says {manifest.get('rows')}")
    for end, last_or_first in (("first", first), ("last", previous)):
        stated = manifest.get(end)
        found = (
            {k: last_or_first[k] for k in ("seq", "prev_hash", "hash")} if last_or_first else None
        )
        if found != stated:
            check.problems.append(f"file: its {end} row is not the manifest's {end}")
