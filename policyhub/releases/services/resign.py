"""Signing again what a revoked key signed, as a worker does it after the revocation commits.

Every team whose current release was signed by a revoked key gets a new revision with the same
files, signed by the active key, so that no machine is left with only a release it must refuse.
A team in a staged rollout whose other devices get a release signed by a revoked key gets that
content re-signed too, as a new revision that serves those devices (never current itself), and
then its current content again above it, so that revisions only ever grow for every device.

It works from what is stored, not from the revocation that asked for it: run twice, the second
run finds nothing to do. All of it runs in one transaction under the organisation's lock, like a
publish. Nothing here enqueues work (revocation.py and tasks.py do), so the tasks can import it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction

from policyhub.accounts.models import Organization
from policyhub.accounts.selectors import organization_lock
from policyhub.actors import Actor
from policyhub.audit.models import AuditEvent
from policyhub.audit.services import audit_event, audit_record_many
from policyhub.errors import ApplicationError
from policyhub.releases.models import Release, ReleaseVariant, SigningKey
from policyhub.releases.selectors import last_revisions, releases_to_resign
from policyhub.releases.services.keys import signing_key_active
from policyhub.releases.services.rollback import file_sets_retitled
from policyhub.releases.services.signed import release_state, releases_save, signed_release

log = logging.getLogger(__name__)

# Teams are re-signed this many at a time (the transaction still makes it all or nothing): a
# worker holds one batch of files, not every team's.
RESIGN_BATCH = 500


@dataclass
class Resigned:
    """What a re-signing did: releases stored, teams they serve, teams it could not re-sign."""

    releases: int = 0
    teams: int = 0
    refused: list[str] = field(default_factory=list)


@transaction.atomic
def releases_resign(*, organization_id: int, actor: Actor) -> Resigned:
    """Re-sign, with the active key, every release a team serves that a revoked key signed; in
    the name of whoever revoked the key (the recovery sweep: "system:key-revocation")."""
    organization = organization_lock(organization_id)
    paths = list(
        releases_to_resign()
        .filter(organization=organization)
        .order_by("team_path")
        .values_list("team_path", flat=True)
    )
    done = Resigned()
    if not paths:
        return done
    key = signing_key_active(organization=organization, actor=actor)
    revisions = last_revisions(organization)
    for start in range(0, len(paths), RESIGN_BATCH):
        _batch(organization, key, actor, revisions, paths[start : start + RESIGN_BATCH], done)
    return done


Signed = tuple[Release, list[ReleaseVariant]]


def _batch(
    organization: Organization,
    key: SigningKey,
    actor: Actor,
    revisions: dict[str, int],
    paths: list[str],
    done: Resigned,
) -> None:
    served = (
        releases_to_resign()
        .filter(organization=organization, team_path__in=paths)
        .select_related("organization", "signing_key", "previous__signing_key")
        .prefetch_related("variants", "previous__variants")
        .order_by("team_path")
    )
    stand_ins: list[Signed] = []
    currents: list[tuple[Release, Signed]] = []
    for current in served:
        try:
            stand_in, new = _resigned(organization, key, actor, current, revisions)
        except ApplicationError as exc:
            # A stored file that no longer matches its own digest is never signed again; the
            # team keeps its release (and its machines refuse it) until it is published anew.
            done.refused.append(f"{current.team_path}: {exc.message}")
            log.error("release %s not re-signed: %s", current, exc.message)
            continue
        if stand_in is not None:
            stand_ins.append(stand_in)
        currents.append((current, new))
    if not currents:
        return
    # The stand-ins first: the new current releases point at them.
    releases_save(stand_ins)
    Release.objects.filter(pk__in=[current.pk for current, _ in currents]).update(current=False)
    releases_save([new for _, new in currents])
    events = [
        _event(organization, actor, key, release.previous, release) for release, _ in stand_ins
    ]
    events += [_event(organization, actor, key, current, new) for current, (new, _) in currents]
    audit_record_many(events)
    done.releases += len(stand_ins) + len(currents)
    done.teams += len(currents)


def _resigned(
    organization: Organization,
    key: SigningKey,
    actor: Actor,
    current: Release,
    revisions: dict[str, int],
) -> tuple[Signed | None, Signed]:
    """The team's new releases: a stand-in for the release the devices outside a staged rollout
    get, when a revoked key signed it, and the new current release with the current content."""
    path = current.team_path
    previous = current.previous
    partial = current.rollout_percent < 100
    stand_in: Signed | None = None
    revision = revisions.get(path, 0)
    if (
        partial
        and previous is not None
        and previous.signing_key.status == SigningKey.Status.REVOKED
    ):
        revision += 1
        stand_in = _copy(organization, key, actor, previous, revision, previous=previous)
        stand_in[0].current = False
    revision += 1
    # In a rollout the other devices keep what they had (or its stand-in); otherwise the
    # replaced release is `previous`, as for any new revision.
    behind = (stand_in[0] if stand_in else previous) if partial else current
    new = _copy(organization, key, actor, current, revision, previous=behind)
    new[0].rollout_percent = current.rollout_percent
    revisions[path] = revision
    return stand_in, new


def _copy(
    organization: Organization,
    key: SigningKey,
    actor: Actor,
    source: Release,
    revision: int,
    *,
    previous: Release | None,
) -> Signed:
    return signed_release(
        organization=organization,
        team_path=source.team_path,
        revision=revision,
        sets=file_sets_retitled(source, revision=revision),
        content_digest=source.content_digest,
        key=key,
        previous=previous,
        publish_run=None,
        created_by=actor.user,
        provenance=source.provenance,
    )


def _event(
    organization: Organization,
    actor: Actor,
    key: SigningKey,
    source: Release | None,
    release: Release,
) -> AuditEvent:
    assert source is not None  # a stand-in's `previous` is the release it stands in for
    return audit_event(
        organization_id=organization.pk,
        actor=actor,
        action="release.resign",
        object_type="release",
        object_key=f"{release.team_path} r{release.revision}",
        before={**release_state(source), "signing_key": source.signing_key.key_id},
        after={
            **release_state(release),
            "content_of": source.revision,
            "signing_key": key.key_id,
            "hashes": release.hashes,
        },
    )
