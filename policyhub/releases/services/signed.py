"""The signed, stored form of a team's file sets: the one place that shapes a release, so that
publishing and rollback cannot drift apart."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.releases import signing, wire
from policyhub.releases.models import PublishRun, Release, ReleaseVariant, SigningKey
from providers.codex_versions import LEGACY_RELEASE_VERSION


@dataclass(frozen=True)
class FileSet:
    """One file set of a release, before signing: its files, their digest, its Codex versions."""

    files: dict[str, bytes]
    content_digest: str
    codex: dict[str, Any]


# What a manifest says of the Codex versions: exactly these, which agents 0.2.0 and later check.
# `measured_until` is signed apart, in the measurement statement (signing.measurement_message).
MANIFEST_CODEX = ("versions", "native_channel_from", "window")

# What the manifest of a release made before support windows would have said: such releases
# were rendered for one Codex release only, and every later one reads them as it does.
LEGACY_CODEX = {
    "versions": [[LEGACY_RELEASE_VERSION, None]],
    "native_channel_from": LEGACY_RELEASE_VERSION,
    "window": [LEGACY_RELEASE_VERSION, LEGACY_RELEASE_VERSION],
}


def _signed_set(
    *, organization: Organization, team_path: str, revision: int, file_set: FileSet, key: SigningKey
) -> dict[str, Any]:
    """The stored and served form of one file set, its manifest signed with `key`."""
    hashes = {
        name: hashlib.sha256(data).hexdigest() for name, data in sorted(file_set.files.items())
    }
    manifest = signing.canonical_json(
        {
            "organization": organization.slug,
            "team": team_path,
            "revision": revision,
            "files": hashes,
            "content_digest": file_set.content_digest,
            "codex": {k: v for k, v in file_set.codex.items() if k in MANIFEST_CODEX},
            "key_id": key.key_id,
        }
    ).decode()
    texts = {name: data.decode() for name, data in file_set.files.items()}
    signature = signing.sign(key.private_key_encrypted, manifest.encode())
    measured = file_set.codex.get("measured_until")
    measurement = None
    if measured is not None:
        statement = signing.measurement_message(manifest, measured)
        measurement = statement.decode(), signing.sign(key.private_key_encrypted, statement)
    stamp = signing.signed_time_message(manifest, timezone.now())
    signed_time = stamp.decode(), signing.sign(key.private_key_encrypted, stamp)
    return {
        "codex": file_set.codex,
        "files": texts,
        "hashes": hashes,
        "manifest": manifest,
        "signature": signature,
        "etag": wire.etag(manifest),
        "agent_body": wire.agent_body(
            organization=organization.slug,
            team_path=team_path,
            revision=revision,
            files=texts,
            hashes=hashes,
            manifest=manifest,
            signature=signature,
            key_id=key.key_id,
            measurement=measurement,
            signed_time=signed_time,
        ),
    }


def signed_release(
    *,
    organization: Organization,
    team_path: str,
    revision: int,
    sets: list[FileSet],
    content_digest: str,
    key: SigningKey,
    previous: Release | None,
    publish_run: PublishRun | None,
    created_by: User | None,
    provenance: dict[str, Any],
) -> tuple[Release, list[ReleaseVariant]]:
    """An unsaved, current release of `sets` at `revision`: the first set (the window's newest
    versions) on the release itself, the others as its unsaved variants."""
    signed = [
        _signed_set(
            organization=organization,
            team_path=team_path,
            revision=revision,
            file_set=file_set,
            key=key,
        )
        for file_set in sets
    ]
    primary, *others = signed
    native = primary["codex"].get("native_channel_from") is not None
    release = Release(
        organization=organization,
        team_path=team_path,
        revision=revision,
        content_digest=content_digest,
        native_body=wire.native_body(
            organization=organization.slug,
            team_path=team_path,
            revision=revision,
            files=primary["files"],
        )
        if native
        else wire.NO_NATIVE_BODY,
        signing_key=key,
        previous=previous,
        publish_run=publish_run,
        created_by=created_by,
        provenance=provenance,
        **primary,
    )
    variants = [
        ReleaseVariant(release=release, content_digest=file_set.content_digest, **fields)
        for file_set, fields in zip(sets[1:], others, strict=True)
    ]
    return release, variants


def releases_save(signed: list[tuple[Release, list[ReleaseVariant]]]) -> list[Release]:
    """Store new releases and their variants, in one statement each (a publish may release every
    team; a rollback stores one)."""
    releases = Release.objects.bulk_create([release for release, _ in signed])
    for release, (_, variants) in zip(releases, signed, strict=True):
        for variant in variants:
            variant.release = release  # now with its primary key
    ReleaseVariant.objects.bulk_create([v for _, variants in signed for v in variants])
    return releases


def release_save(release: Release, fields: list[str]) -> None:
    """Store a change of an existing release's state (current, rollout), validated."""
    release.full_clean()
    release.save(update_fields=fields)


def release_state(release: Release) -> dict[str, object]:
    """What the audit trail records of a release's state before and after a change."""
    return {
        "revision": release.revision,
        "current": release.current,
        "rollout_percent": release.rollout_percent,
        "content_digest": release.content_digest,
    }
