"""Writes of signing keys, publish runs and releases.

Publishing renders, validates, signs and stores one release per changed team in a single
transaction under a lock on the organisation: all teams or none, and two publishes of one
organisation run one after the other and agree on revisions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.audit.services import audit_event, audit_record, audit_record_many
from policyhub.changes.models import ChangeSet
from policyhub.changes.services import change_sets_publish_due
from policyhub.errors import ApplicationError
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_check
from policyhub.policies.validation import TeamValidation
from policyhub.releases import signing, wire
from policyhub.releases.models import PublishRun, Release, ReleaseVariant, SigningKey
from policyhub.releases.selectors import current_releases_with_published_digest, last_revisions
from policyhub.rendering.render import render_release, retitle
from providers.base import Issue
from providers.codex_versions import in_spans, parse_version, segments, version_text


@transaction.atomic
def signing_key_rotate(*, organization: Organization, actor: User | None) -> SigningKey:
    """A new active key; the previous one is retired and keeps verifying what it signed."""
    Organization.objects.select_for_update().get(pk=organization.pk)
    retired = SigningKey.objects.filter(
        organization=organization, status=SigningKey.Status.ACTIVE
    ).first()
    if retired is not None:
        retired.status, retired.retired_at = SigningKey.Status.RETIRED, timezone.now()
        retired.full_clean()
        retired.save(update_fields=["status", "retired_at"])
    key_id, public_key, encrypted = signing.generate()
    key = SigningKey(
        organization=organization,
        key_id=key_id,
        public_key=public_key,
        private_key_encrypted=encrypted,
    )
    if retired is not None:
        # Machines pinned the old key; its signature over the new one lets them trust it.
        key.endorsed_by = retired
        key.endorsement = signing.sign(
            retired.private_key_encrypted, signing.endorsement_message(key_id, public_key)
        )
    key.full_clean()
    key.save()
    audit_record(
        organization=organization,
        actor=actor,
        action="signing_key.rotate",
        object_type="signing_key",
        object_key=key_id,
        before={"key_id": retired.key_id, "status": "retired"} if retired else None,
        after={"key_id": key_id, "public_key": public_key},
    )
    return key


@transaction.atomic
def publish_run_request(*, organization: Organization, actor: User | None) -> PublishRun:
    """Record a publish run and hand it to a worker once the row is committed."""
    from policyhub.releases.tasks import publish_run_task

    run = PublishRun(organization=organization, requested_by=actor)
    run.full_clean()
    run.save()
    audit_record(
        organization=organization,
        actor=actor,
        action="publish_run.request",
        object_type="publish_run",
        object_key=str(run.pk),
    )
    transaction.on_commit(lambda: publish_run_task.delay(run.pk))
    return run


def _claimable() -> Q:
    """Pending runs, and running ones whose worker let the lease expire (it died)."""
    expired = Q(status=PublishRun.Status.RUNNING, lease_expires_at__lt=timezone.now())
    return Q(status=PublishRun.Status.PENDING) | expired


def publish_run_execute(*, run_id: int) -> PublishRun | None:
    """Claim a run and publish it; returns None when another worker holds it or it is done.

    The claim is one conditional UPDATE, so exactly one worker wins. A worker killed mid-run
    leaves no release (the publish transaction dies with it) and a running row whose lease
    expires; the redelivered task or the recovery sweep then claims it again.
    """
    now = timezone.now()
    claimed = PublishRun.objects.filter(_claimable(), pk=run_id).update(
        status=PublishRun.Status.RUNNING,
        started_at=now,
        lease_expires_at=now + timedelta(seconds=settings.PUBLISH_LEASE_SECONDS),
        attempts=F("attempts") + 1,
    )
    if claimed != 1:
        return None
    run = PublishRun.objects.get(pk=run_id)
    try:
        created, rendered = release_publish(run=run)
    except (OperationalError, InterfaceError):
        # The database went away: nothing was stored; the task's retry claims the run again.
        PublishRun.objects.filter(pk=run_id).update(status=PublishRun.Status.PENDING)
        raise
    except Exception as exc:
        # The publish transaction rolled back: nothing was stored. Record why on the run.
        PublishRun.objects.filter(pk=run_id).update(
            status=PublishRun.Status.FAILED, finished_at=timezone.now(), error=str(exc)[:10_000]
        )
        raise
    PublishRun.objects.filter(pk=run_id).update(
        status=PublishRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        teams_rendered=rendered,
        releases_created=created,
    )
    return PublishRun.objects.get(pk=run_id)


def publish_runs_recover() -> list[int]:
    """Hand every claimable run that is not moving to a worker again; returns their ids.

    Pending runs older than a minute lost their task (the broker was down at commit time);
    running runs past their lease lost their worker.
    """
    stale = Q(
        status=PublishRun.Status.PENDING, created_at__lt=timezone.now() - timedelta(minutes=1)
    )
    expired = Q(status=PublishRun.Status.RUNNING, lease_expires_at__lt=timezone.now())
    ids = list(PublishRun.objects.filter(stale | expired).values_list("pk", flat=True))
    from policyhub.releases.tasks import publish_run_task

    for run_id in ids:
        publish_run_task.delay(run_id)
    return ids


@transaction.atomic
def release_publish(*, run: PublishRun) -> tuple[int, int]:
    """Apply the due approved change sets, then store a signed release for every team whose files
    changed; (releases created, teams)."""
    organization = Organization.objects.select_for_update().get(pk=run.organization_id)
    applied = change_sets_publish_due(organization=organization, run=run)
    policy = org_policy(organization)
    validations: dict[str, TeamValidation] = {}
    policy_check(policy, validations)  # every team resolved once, for rendering below
    key = signing_key_active(organization=organization, actor=run.requested_by)
    current = {
        r.team_path: r
        for r in current_releases_with_published_digest(organization).defer("files", "manifest")
    }
    revisions = last_revisions(organization)
    signed: list[tuple[Release, list[ReleaseVariant]]] = []
    created = 0
    for path in sorted(policy.teams):
        revision = revisions.get(path, 0) + 1
        rendered = render_release(
            policy, path, revision=str(revision), validation=validations.pop(path)
        )
        previous = current.get(path)
        # Unchanged policy, nothing to release: neither what devices get now, nor what this team
        # was last published (so a rollback or an aborted rollout is not undone by a publish
        # that another team's change set off).
        if previous is not None and rendered.content_digest in (
            previous.content_digest,
            previous.published_digest,  # type: ignore[attr-defined]
        ):
            continue
        primary = rendered.primary
        sets = [primary, *(v for v in rendered.variants if v is not primary)]
        signed.append(
            _signed_release(
                organization=organization,
                team_path=path,
                revision=revision,
                sets=[FileSet(v.team.files, v.team.content_digest, v.codex) for v in sets],
                content_digest=rendered.content_digest,
                key=key,
                previous=previous,
                publish_run=run,
                created_by=run.requested_by,
                provenance=rendered.validation.resolved.provenance(),
            )
        )
        if len(signed) == PUBLISH_BATCH:
            # Stored as they come (the transaction still makes it all or nothing): a worker
            # holds one batch of bodies, not every team's.
            created += _publish_batch(organization, run, applied, signed)
            signed = []
    created += _publish_batch(organization, run, applied, signed)
    return created, len(policy.teams)


PUBLISH_BATCH = 500


def _publish_batch(
    organization: Organization,
    run: PublishRun,
    applied: list[ChangeSet],
    signed: list[tuple[Release, list[ReleaseVariant]]],
) -> int:
    """Make these new releases current, link them to the applied change sets, audit them."""
    changed = [release.team_path for release, _ in signed]
    Release.objects.filter(organization=organization, team_path__in=changed, current=True).update(
        current=False
    )
    new = _releases_save(signed)
    Release.change_sets.through.objects.bulk_create(
        [
            Release.change_sets.through(release_id=release.pk, changeset_id=change_set.pk)
            for release in new
            for change_set in applied
        ]
    )
    audit_record_many(
        [
            audit_event(
                organization=organization,
                actor=run.requested_by,
                action="release.publish",
                object_type="release",
                object_key=f"{release.team_path} r{release.revision}",
                after={
                    "content_digest": release.content_digest,
                    "hashes": release.hashes,
                    "run": run.pk,
                },
            )
            for release in new
        ]
    )
    return len(new)


# --- rollback and staged rollout ------------------------------------------------------------------


def signing_key_active(*, organization: Organization, actor: User | None) -> SigningKey:
    """The organisation's active signing key, made on first use."""
    key = SigningKey.objects.filter(
        organization=organization, status=SigningKey.Status.ACTIVE
    ).first()
    return key if key is not None else signing_key_rotate(organization=organization, actor=actor)


@dataclass(frozen=True)
class FileSet:
    """One file set of a release, before signing: its files, their digest, its Codex versions."""

    files: dict[str, bytes]
    content_digest: str
    codex: dict[str, Any]


# What releases made before support windows were rendered for.
LEGACY_CODEX = {
    "versions": [["0.169.0", None]],
    "native_channel_from": "0.169.0",
    "window": ["0.169.0", "0.169.0"],
}


def _signed_set(
    *, organization: Organization, team_path: str, revision: int, file_set: FileSet, key: SigningKey
) -> dict[str, Any]:
    """The stored and served form of one file set, its manifest signed with `key`.

    The one place that shapes the signed manifest, so publishing and rollback cannot drift apart.
    """
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
            "codex": file_set.codex,
            "key_id": key.key_id,
        }
    ).decode()
    texts = {name: data.decode() for name, data in file_set.files.items()}
    signature = signing.sign(key.private_key_encrypted, manifest.encode())
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
        ),
    }


def _signed_release(
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
    provenance: dict[str, Any] | None = None,
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
        provenance=provenance if provenance is not None else {},
        **primary,
    )
    variants = [
        ReleaseVariant(release=release, content_digest=file_set.content_digest, **fields)
        for file_set, fields in zip(sets[1:], others, strict=True)
    ]
    return release, variants


def _releases_save(signed: list[tuple[Release, list[ReleaseVariant]]]) -> list[Release]:
    """Store new releases and their variants (bulk: a publish may release every team)."""
    releases = Release.objects.bulk_create([release for release, _ in signed])
    for release, (_, variants) in zip(releases, signed, strict=True):
        for variant in variants:
            variant.release = release  # now with its primary key
    ReleaseVariant.objects.bulk_create([v for _, variants in signed for v in variants])
    return releases


def _rollback_covers_window(organization: Organization, target: Release) -> None:
    """Refuse old content whose sets do not cover every Codex version the organisation runs now
    (made before the window was widened): some machines would get files made for others."""
    window = org_policy(organization).codex
    codex_sets = [target.codex or LEGACY_CODEX, *target.variants.values_list("codex", flat=True)]
    spans = [
        (parse_version(start), parse_version(until) if until else None)
        for codex in codex_sets
        for start, until in codex["versions"]
    ]
    low, high = parse_version(window.min_version), parse_version(window.max_version)
    missing = [
        version_text(start) for start, _ in segments(low, high) if not in_spans(start, spans)
    ]
    if missing:
        raise ApplicationError(
            f"r{target.revision} of {target.team_path} was made for other Codex versions than the "
            f"support window now holds ({window.min_version} to {window.max_version}; none of "
            f"its file sets is for {', '.join(missing)}); publish the policy instead",
            [Issue("error", "to_revision", "made for another Codex support window")],
        )


def _release_save(release: Release, fields: list[str] | None = None) -> None:
    release.full_clean()
    release.save(update_fields=fields)


def _release_current(organization: Organization, team_path: str) -> Release:
    release = (
        Release.objects.filter(organization=organization, team_path=team_path, current=True)
        .select_related("previous")
        .first()
    )
    if release is None:
        raise ApplicationError(
            f"team {team_path} has no current release",
            [Issue("error", "team_path", f"no release of {team_path!r} is current")],
        )
    return release


def _release_replaced(release: Release) -> Release | None:
    """The release that was current when `release` was stored, for releases that do not record
    it: every new release becomes current, and only an aborted one steps back, so it is the newest
    earlier revision that was not aborted."""
    return (
        Release.objects.filter(
            organization_id=release.organization_id,
            team_path=release.team_path,
            revision__lt=release.revision,
            aborted_at__isnull=True,
        )
        .order_by("-revision")
        .first()
    )


def _release_state(release: Release) -> dict[str, object]:
    return {
        "revision": release.revision,
        "current": release.current,
        "rollout_percent": release.rollout_percent,
        "content_digest": release.content_digest,
    }


@transaction.atomic
def release_rollback(
    *,
    organization: Organization,
    team_path: str,
    to_revision: int,
    actor: User | None,
    reason: str = "",
) -> Release:
    """A new current revision of the team carrying the files of `to_revision`, signed afresh.

    Only the header lines change (they name the new revision); every body, and so the content
    digest, is the old release's. The replaced release stays stored as `previous`.
    """
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    team = Release.objects.filter(organization=organization, team_path=team_path)
    target = team.filter(revision=to_revision).first()
    if target is None:
        raise ApplicationError(
            f"team {team_path} has no release r{to_revision}",
            [Issue("error", "to_revision", f"no stored release r{to_revision} of {team_path!r}")],
        )
    current = team.filter(current=True).first()
    if current is not None and current.content_digest == target.content_digest:
        raise ApplicationError(
            f"team {team_path} already serves the content of r{to_revision} (current "
            f"r{current.revision}); nothing to roll back",
            [Issue("error", "to_revision", "same content as the current release")],
        )
    revision = (team.aggregate(top=Max("revision"))["top"] or 0) + 1
    label = f"{organization.slug}/{team_path}"

    def retitled(files: dict[str, str]) -> dict[str, bytes]:
        return {
            name: retitle(text.encode(), team=label, revision=str(revision))
            for name, text in files.items()
        }

    _rollback_covers_window(organization, target)
    # Every set of the target, under the new revision: bodies, digests and versions are kept.
    sets = [
        FileSet(
            retitled(target.files),
            json.loads(target.manifest)["content_digest"],
            target.codex or LEGACY_CODEX,
        ),
        *(
            FileSet(retitled(v.files), v.content_digest, v.codex)
            for v in target.variants.order_by("id")
        ),
    ]
    release, variants = _signed_release(
        organization=organization,
        team_path=team_path,
        revision=revision,
        sets=sets,
        content_digest=target.content_digest,
        key=signing_key_active(organization=organization, actor=actor),
        previous=current,
        provenance=target.provenance,
        publish_run=None,
        created_by=actor,
    )
    before = None
    if current is not None:
        before = _release_state(current)
        current.current = False
        _release_save(current, ["current"])
    _release_save(release)
    for variant in variants:
        variant.release = release
        variant.full_clean()
        variant.save()
    audit_record(
        organization=organization,
        actor=actor,
        action="release.rollback",
        object_type="release",
        object_key=f"{team_path} r{revision}",
        before=before,
        after={**_release_state(release), "content_of": to_revision, "hashes": release.hashes},
        reason=reason,
    )
    return release


@transaction.atomic
def release_rollout_start(
    *, organization: Organization, team_path: str, percent: int, actor: User | None
) -> Release:
    """Serve the team's current release to `percent`% of its devices, the release it replaced to
    the rest. Run again to widen or narrow the rollout."""
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    release = _release_current(organization, team_path)
    if not 1 <= percent <= 99:
        raise ApplicationError(
            "a staged rollout reaches 1 to 99% of the devices; promote it to reach all of them",
            [Issue("error", "percent", f"{percent} is not between 1 and 99")],
        )
    if percent == release.rollout_percent:
        raise ApplicationError(
            f"r{release.revision} of team {team_path} already reaches {percent}% of its devices"
        )
    previous = release.previous or _release_replaced(release)
    if previous is None:
        raise ApplicationError(
            f"r{release.revision} is the first release of team {team_path}: there is no earlier "
            "release for the devices outside a staged rollout",
            [Issue("error", "team_path", "no previous release to fall back to")],
        )
    before = _release_state(release)
    release.rollout_percent, release.previous = percent, previous
    _release_save(release, ["rollout_percent", "previous"])
    audit_record(
        organization=organization,
        actor=actor,
        action="release.rollout_start",
        object_type="release",
        object_key=f"{team_path} r{release.revision}",
        before=before,
        after={**_release_state(release), "previous": previous.revision},
    )
    return release


def _release_in_rollout(organization: Organization, team_path: str) -> Release:
    release = _release_current(organization, team_path)
    if release.rollout_percent >= 100:
        raise ApplicationError(
            f"r{release.revision} of team {team_path} is not in a staged rollout: it already "
            "reaches every device (to go back, roll back to an earlier revision)"
        )
    return release


@transaction.atomic
def release_rollout_promote(
    *, organization: Organization, team_path: str, actor: User | None
) -> Release:
    """End the team's staged rollout by serving the current release to every device."""
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    release = _release_in_rollout(organization, team_path)
    before = _release_state(release)
    release.rollout_percent = 100
    _release_save(release, ["rollout_percent"])
    audit_record(
        organization=organization,
        actor=actor,
        action="release.rollout_promote",
        object_type="release",
        object_key=f"{team_path} r{release.revision}",
        before=before,
        after=_release_state(release),
    )
    return release


@transaction.atomic
def release_rollout_abort(
    *, organization: Organization, team_path: str, actor: User | None
) -> Release:
    """End the team's staged rollout by serving the previous release to every device again.

    The aborted release stays stored, marked aborted and never current again; returns the
    release that is current now.
    """
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    aborted = _release_in_rollout(organization, team_path)
    restored = aborted.previous
    assert (
        restored is not None
    )  # a partial rollout always has one (release_partial_rollout_has_previous)
    before = {"aborted": _release_state(aborted), "restored": _release_state(restored)}
    aborted.current, aborted.aborted_at = False, timezone.now()
    _release_save(aborted, ["current", "aborted_at"])
    # Everyone gets it back, even if it was itself mid-rollout when it was replaced.
    restored.current, restored.rollout_percent = True, 100
    _release_save(restored, ["current", "rollout_percent"])
    audit_record(
        organization=organization,
        actor=actor,
        action="release.rollout_abort",
        object_type="release",
        object_key=f"{team_path} r{aborted.revision}",
        before=before,
        after={"aborted": _release_state(aborted), "restored": _release_state(restored)},
    )
    return restored
