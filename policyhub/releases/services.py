"""Writes of signing keys, publish runs and releases.

Publishing renders, validates, signs and stores one release per changed team in a single
transaction under a lock on the organisation: all teams or none, and two publishes of one
organisation run one after the other and agree on revisions.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.audit.services import audit_record
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_check
from policyhub.releases import signing
from policyhub.releases.models import PublishRun, Release, SigningKey
from policyhub.releases.selectors import current_releases, last_revisions
from policyhub.rendering.render import render_team


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


def publish_run_execute(*, run_id: int) -> PublishRun | None:
    """Claim a pending run and publish it; returns None when another worker already has it."""
    claimed = PublishRun.objects.filter(pk=run_id, status=PublishRun.Status.PENDING).update(
        status=PublishRun.Status.RUNNING, started_at=timezone.now()
    )
    if claimed != 1:
        return None
    run = PublishRun.objects.get(pk=run_id)
    try:
        created, rendered = release_publish(run=run)
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


@transaction.atomic
def release_publish(*, run: PublishRun) -> tuple[int, int]:
    """Store a signed release for every team whose files changed; (releases created, teams)."""
    organization = Organization.objects.select_for_update().get(pk=run.organization_id)
    policy = org_policy(organization)
    policy_check(policy)
    key = SigningKey.objects.filter(
        organization=organization, status=SigningKey.Status.ACTIVE
    ).first()
    if key is None:
        key = signing_key_rotate(organization=organization, actor=run.requested_by)
    current = {
        r.team_path: r.content_digest
        for r in current_releases(organization).only("team_path", "content_digest")
    }
    revisions = last_revisions(organization)
    new: list[Release] = []
    for path in sorted(policy.teams):
        revision = revisions.get(path, 0) + 1
        rendered = render_team(policy, path, revision=str(revision))
        if current.get(path) == rendered.content_digest:
            continue
        manifest = signing.canonical_json(
            {
                "organization": organization.slug,
                "team": path,
                "revision": revision,
                "files": rendered.hashes,
                "content_digest": rendered.content_digest,
                "key_id": key.key_id,
            }
        )
        new.append(
            Release(
                organization=organization,
                team_path=path,
                revision=revision,
                files={name: data.decode() for name, data in rendered.files.items()},
                hashes=rendered.hashes,
                content_digest=rendered.content_digest,
                manifest=manifest.decode(),
                signature=signing.sign(key.private_key_encrypted, manifest),
                signing_key=key,
                publish_run=run,
                created_by=run.requested_by,
            )
        )
    changed = [r.team_path for r in new]
    Release.objects.filter(organization=organization, team_path__in=changed, current=True).update(
        current=False
    )
    Release.objects.bulk_create(new)
    for release in new:
        audit_record(
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
    return len(new), len(policy.teams)
