"""Writes of organisations and memberships."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from policyhub.accounts.models import Membership, Organization, Role
from policyhub.audit.services import audit_record
from policyhub.errors import ApplicationError
from providers.base import Issue


@transaction.atomic
def organization_create(*, slug: str, name: str, actor: User | None) -> Organization:
    """Create an empty organisation (its policy arrives through `policy_apply`)."""
    org = Organization(slug=slug, name=name)
    org.full_clean()
    org.save()
    audit_record(
        organization_id=org.pk,
        actor=actor,
        action="organization.create",
        object_type="organization",
        object_key=slug,
        after={"slug": slug, "name": name},
    )
    return org


@transaction.atomic
def membership_grant(
    *,
    organization: Organization,
    user: User,
    role: str,
    actor: User | None,
    team_path: str | None = None,
) -> Membership:
    """Give `user` a role in `organization` (replacing an earlier role); a team editor's
    `team_path` names the root of the subtree they may edit."""
    if (role == Role.TEAM_EDITOR) != (team_path is not None):
        message = "is required for a team editor, and only a team editor has one"
        raise ApplicationError("the membership is invalid", [Issue("error", "team", message)])
    team = None
    if team_path is not None:
        # The organisation's own teams (teams sit above accounts: reached through the relation).
        team = organization.teams.filter(path=team_path).first()
        if team is None:
            message = f"no team {team_path!r} in {organization.slug}"
            raise ApplicationError("the membership is invalid", [Issue("error", "team", message)])
    membership = Membership.objects.filter(organization=organization, user=user).first()
    before = _grant_data(membership) if membership else None
    membership = membership or Membership(organization=organization, user=user)
    membership.role, membership.team = role, team
    membership.full_clean()
    membership.save()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="membership.grant",
        object_type="membership",
        object_key=user.get_username(),
        before=before,
        after=_grant_data(membership),
    )
    return membership


def _grant_data(membership: Membership) -> str | dict[str, str]:
    # A plain role as before; a team editor's scope alongside it.
    if membership.team is None:
        return membership.role
    return {"role": membership.role, "team": membership.team.path}
