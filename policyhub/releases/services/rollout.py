"""Staged rollout: a team's current release reaches a stable share of its devices, the release it
replaced serves the rest, until the rollout is promoted (everyone) or aborted (no one)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.accounts.selectors import organization_lock
from policyhub.actors import Actor
from policyhub.audit.services import audit_record
from policyhub.errors import ApplicationError
from policyhub.releases.models import Release, SigningKey
from policyhub.releases.services.signed import release_save, release_state
from providers.base import Issue


@transaction.atomic
def release_rollout_start(
    *, organization: Organization, team_path: str, percent: int, actor: Actor
) -> Release:
    """Serve the team's current release to `percent`% of its devices, the release it replaced to
    the rest. Run again to widen or narrow the rollout."""
    organization = _locked(organization, actor)
    release = _current(organization, team_path)
    if not 1 <= percent <= 99:
        raise ApplicationError(
            "a staged rollout reaches 1 to 99% of the devices; promote it to reach all of them",
            [Issue("error", "percent", f"{percent} is not between 1 and 99")],
        )
    if percent == release.rollout_percent:
        raise ApplicationError(
            f"revision {release.revision} of team {team_path} already reaches {percent}% of its devices"
        )
    previous = release.previous or _replaced(release)
    if previous is None:
        raise ApplicationError(
            f"revision {release.revision} is the first release of team {team_path}: there is no earlier "
            "release for the devices outside a staged rollout",
            [Issue("error", "team", "no previous release to fall back to")],
        )
    if previous.signing_key.status == SigningKey.Status.REVOKED:
        raise ApplicationError(
            f"revision {previous.revision} of team {team_path}, which the devices outside a staged "
            f"rollout would get, was signed by the revoked key {previous.signing_key.key_id}: "
            "machines refuse it; publish or roll back first",
            [Issue("error", "team", "the release to fall back to was signed by a revoked key")],
        )
    before = release_state(release)
    release.rollout_percent, release.previous = percent, previous
    release_save(release, ["rollout_percent", "previous"])
    after = {**release_state(release), "previous": previous.revision}
    _audit(organization, actor, "start", release, before, after)
    return release


@transaction.atomic
def release_rollout_promote(
    *, organization: Organization, team_path: str, actor: Actor, percent: int = 100
) -> Release:
    """Widen the team's staged rollout to `percent`% of its devices; at 100 (the default) it
    ends, serving the current release to every device. Never narrows: a promotion that meets a
    rollout already wider (someone promoted first) is refused rather than undoing theirs."""
    organization = _locked(organization, actor)
    release = _in_rollout(organization, team_path)
    if not release.rollout_percent < percent <= 100:
        raise ApplicationError(
            f"a promotion widens a staged rollout: revision {release.revision} of team {team_path} "
            f"already reaches {release.rollout_percent}% of its devices",
            [
                Issue(
                    "error",
                    "percent",
                    f"{percent} is not between {release.rollout_percent + 1} and 100",
                )
            ],
        )
    before = release_state(release)
    release.rollout_percent = percent
    release_save(release, ["rollout_percent"])
    _audit(organization, actor, "promote", release, before, release_state(release))
    return release


@transaction.atomic
def release_rollout_abort(*, organization: Organization, team_path: str, actor: Actor) -> Release:
    """End the team's staged rollout by serving the previous release to every device again.

    The aborted release stays stored, marked aborted and never current again; returns the
    release that is current now.
    """
    organization = _locked(organization, actor)
    aborted = _in_rollout(organization, team_path)
    restored = aborted.previous
    # A partial rollout always has one (constraint release_partial_rollout_has_previous).
    assert restored is not None
    before = {"aborted": release_state(aborted), "restored": release_state(restored)}
    aborted.current, aborted.aborted_at = False, timezone.now()
    release_save(aborted, ["current", "aborted_at"])
    # Everyone gets it back, even if it was itself mid-rollout when it was replaced.
    restored.current, restored.rollout_percent = True, 100
    release_save(restored, ["current", "rollout_percent"])
    after = {"aborted": release_state(aborted), "restored": release_state(restored)}
    _audit(organization, actor, "abort", aborted, before, after)
    return restored


def _locked(organization: Organization, actor: Actor) -> Organization:
    authorize(actor, organization, Permission.RELEASE_MANAGE, doing="manage staged rollouts")
    return organization_lock(organization.pk)


def _current(organization: Organization, team_path: str) -> Release:
    release = (
        Release.objects.filter(organization=organization, team_path=team_path, current=True)
        .select_related("previous__signing_key")
        .first()
    )
    if release is None:
        raise ApplicationError(
            f"team {team_path} has no current release",
            [Issue("error", "team", f"no release of {team_path!r} is current")],
        )
    return release


def _in_rollout(organization: Organization, team_path: str) -> Release:
    release = _current(organization, team_path)
    if release.rollout_percent >= 100:
        raise ApplicationError(
            f"revision {release.revision} of team {team_path} is not in a staged rollout: it already "
            "reaches every device (to go back, roll back to an earlier revision)"
        )
    return release


def _replaced(release: Release) -> Release | None:
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


def _audit(
    organization: Organization,
    actor: Actor,
    verb: str,
    release: Release,
    before: object,
    after: object,
) -> None:
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action=f"release.rollout_{verb}",
        object_type="release",
        object_key=f"{release.team_path} r{release.revision}",
        before=before,
        after=after,
    )
