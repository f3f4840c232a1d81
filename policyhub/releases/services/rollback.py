"""Rollback: a team's old content as a new, re-signed revision."""

from __future__ import annotations

import json

from django.db import transaction
from django.db.models import Max

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.accounts.selectors import organization_lock
from policyhub.actors import Actor
from policyhub.audit.services import audit_record
from policyhub.errors import ApplicationError
from policyhub.policies.document import codex_window
from policyhub.releases.models import Release
from policyhub.releases.services.keys import signing_key_active
from policyhub.releases.services.signed import (
    LEGACY_CODEX,
    FileSet,
    release_save,
    release_state,
    releases_save,
    signed_release,
)
from policyhub.rendering.render import retitle
from providers.base import Issue
from providers.codex_versions import in_spans, parse_version, segments, version_text


@transaction.atomic
def release_rollback(
    *,
    organization: Organization,
    team_path: str,
    to_revision: int,
    actor: Actor,
    reason: str = "",
) -> Release:
    """A new current revision of the team carrying the files of `to_revision`, signed afresh.

    Only the header lines change (they name the new revision); every body, and so the content
    digest, is the old release's. The replaced release stays stored as `previous`.
    """
    authorize(actor, organization, Permission.RELEASE_MANAGE, doing="roll teams back")
    organization = organization_lock(organization.pk)
    team = Release.objects.filter(organization=organization, team_path=team_path)
    target = team.filter(revision=to_revision).first()
    if target is None:
        raise ApplicationError(
            f"team {team_path} has no revision {to_revision}",
            [Issue("error", "to_revision", f"no stored revision {to_revision} of {team_path!r}")],
        )
    current = team.filter(current=True).first()
    if current is not None and current.content_digest == target.content_digest:
        raise ApplicationError(
            f"team {team_path} already serves the content of revision {to_revision} (current "
            f"revision {current.revision}); nothing to roll back",
            [Issue("error", "to_revision", "same content as the current release")],
        )
    _covers_window(organization, target)
    revision = (team.aggregate(top=Max("revision"))["top"] or 0) + 1
    release, variants = signed_release(
        organization=organization,
        team_path=team_path,
        revision=revision,
        # Every set of the target, under the new revision: bodies, digests and versions are kept.
        sets=file_sets_retitled(target, revision=revision),
        content_digest=target.content_digest,
        key=signing_key_active(organization=organization, actor=actor),
        previous=current,
        provenance=target.provenance,
        publish_run=None,
        created_by=actor.user,
    )
    before = None
    if current is not None:
        before = release_state(current)
        current.current = False
        release_save(current, ["current"])
    release.full_clean()
    for variant in variants:
        variant.full_clean(exclude=["release"])  # stored with it, just below
    releases_save([(release, variants)])
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="release.rollback",
        object_type="release",
        object_key=f"{team_path} r{revision}",
        before=before,
        after={**release_state(release), "content_of": to_revision, "hashes": release.hashes},
        reason=reason,
    )
    return release


def file_sets_retitled(release: Release, *, revision: int) -> list[FileSet]:
    """Every file set of a stored release, the release's own first, for signing again under
    `revision`: only the header lines change (they name the revision); bodies, digests and Codex
    versions are the release's (a rollback, a re-signing after a key's revocation)."""
    label = f"{release.organization.slug}/{release.team_path}"

    def retitled(files: dict[str, str]) -> dict[str, bytes]:
        return {
            name: retitle(text.encode(), team=label, revision=str(revision))
            for name, text in files.items()
        }

    return [
        FileSet(
            retitled(release.files),
            json.loads(release.manifest)["content_digest"],
            release.codex or LEGACY_CODEX,
        ),
        *(FileSet(retitled(v.files), v.content_digest, v.codex) for v in release.variants.all()),
    ]


def _covers_window(organization: Organization, target: Release) -> None:
    """Refuse old content whose sets do not cover every Codex version the organisation runs now
    (made before the window was widened): some machines would get files made for others."""
    window = codex_window(organization.codex_window)
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
            f"revision {target.revision} of {target.team_path} was made for other Codex versions than the "
            f"support window now holds ({window.min_version} to {window.max_version}; none of "
            f"its file sets is for {', '.join(missing)}); publish the policy instead",
            [Issue("error", "to_revision", "made for another Codex support window")],
        )
