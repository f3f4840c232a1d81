"""What each role may do, in one place, and the one check every service makes.

    authorize(actor, organization, Permission.PUBLISH, doing="publish")

A person (signed in, or through an API token) acts with the permissions of their role in the
organisation; an API token with what both its role ceiling and its user's current role allow, in
its own organisation only. A team editor holds `policy.edit` only inside their subtree: every node
a change touches must lie in it. The server operator may do everything, under their own name; a
system job only what it is listed for. docs/access.md has the matrix as a table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from policyhub.accounts.models import Membership, Organization, Role
from policyhub.actors import Actor, ActorKind
from policyhub.errors import NotPermitted
from providers.base import Issue


class Permission(StrEnum):
    ORG_VIEW = "org.view"  # the policy, releases, change sets, fleet
    AUDIT_VIEW = "audit.view"  # the audit trail and its exports
    POLICY_EDIT = "policy.edit"  # apply a policy, or propose one as a change set
    CHANGE_SET_REVIEW = "change_set.review"  # approve or reject someone else's change set
    PUBLISH = "publish"  # ask for a publish run
    RELEASE_MANAGE = "release.manage"  # roll back, start, promote or abort a rollout
    SIGNING_KEY_ROTATE = "signing_key.rotate"
    SIGNING_KEY_REVOKE = "signing_key.revoke"  # a compromised key; re-signs what it signed
    FLEET_MANAGE = "fleet.manage"  # enrolment tokens, moving and revoking devices
    ORG_SETTINGS = "org.settings"  # approval and single sign-on requirements
    MEMBERS_MANAGE = "members.manage"  # invite, change roles, remove (not owners)
    OWNERS_MANAGE = "owners.manage"  # make or remove owners, transfer ownership
    API_TOKENS = "api_tokens"  # hold API tokens of one's own


EVERYTHING = frozenset(Permission)
ROLE_PERMISSIONS: Mapping[str, frozenset[Permission]] = {
    Role.OWNER: EVERYTHING,
    Role.ADMIN: EVERYTHING - {Permission.OWNERS_MANAGE},
    Role.TEAM_EDITOR: frozenset(
        {Permission.ORG_VIEW, Permission.POLICY_EDIT, Permission.API_TOKENS}
    ),
    Role.APPROVER: frozenset(
        {Permission.ORG_VIEW, Permission.CHANGE_SET_REVIEW, Permission.API_TOKENS}
    ),
    Role.AUDITOR: frozenset({Permission.ORG_VIEW, Permission.AUDIT_VIEW, Permission.API_TOKENS}),
    Role.VIEWER: frozenset({Permission.ORG_VIEW, Permission.API_TOKENS}),
}
# Held by a team editor only for the nodes of their subtree.
SCOPED = frozenset({Permission.POLICY_EDIT})
# What a system job may do on its own: the scheduler publishes change sets approved for later.
SYSTEM_PERMISSIONS = frozenset({Permission.PUBLISH, Permission.ORG_VIEW})
# The node of the organisation itself (endpoints, the root node, the Codex window, its name).
ORGANIZATION_NODE = ""


@dataclass(frozen=True)
class Access:
    """What an actor may do in one organisation."""

    permissions: frozenset[Permission]
    role: str | None = None  # None for the operator and system jobs
    scope: str | None = None  # a team editor's subtree root

    def covers(self, path: str) -> bool:
        """Whether a node (a team path; "" for the organisation's own) lies in the scope."""
        return self.scope is None or path == self.scope or path.startswith(f"{self.scope}/")


def role_permissions(role: str) -> frozenset[Permission]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def ceiling_allowed(ceiling: str, membership: Membership) -> bool:
    """Whether a token role may be given to this member: never more than their own role can do,
    and a team editor's subtree only to a team editor."""
    if ceiling == Role.TEAM_EDITOR and membership.role != Role.TEAM_EDITOR:
        return False
    return role_permissions(ceiling) <= role_permissions(membership.role)


def access(actor: Actor, organization: Organization) -> Access:
    """The actor's permissions in `organization` (none for strangers and tokens of elsewhere)."""
    if actor.kind == ActorKind.OPERATOR:
        return Access(EVERYTHING)
    if actor.kind == ActorKind.SYSTEM:
        return Access(SYSTEM_PERMISSIONS)
    if not actor.is_person or actor.user is None or not actor.user.is_active:
        return Access(frozenset())
    if actor.kind == ActorKind.TOKEN and actor.token_organization_id != organization.pk:
        return Access(frozenset())
    membership = (
        Membership.objects.filter(organization=organization, user=actor.user)
        .select_related("team")
        .first()
    )
    if membership is None:
        return Access(frozenset())
    permissions = role_permissions(membership.role)
    if actor.kind == ActorKind.TOKEN:
        if actor.token_role == Role.TEAM_EDITOR and membership.role != Role.TEAM_EDITOR:
            # A team editor's token is bound to their subtree; promoted or moved to another
            # role, they have none for it to keep to, and it would edit everything.
            return Access(frozenset(), membership.role)
        permissions &= role_permissions(actor.token_role)
    scope = membership.team.path if membership.team is not None else None
    return Access(permissions, membership.role, scope)


def authorize(
    actor: Actor,
    organization: Organization,
    permission: Permission,
    *,
    doing: str,
    nodes: Iterable[str] = (),
) -> Access:
    """Refuse, naming what is missing, unless the actor holds `permission` in the organisation
    (and, for a team editor, every one of `nodes` lies in their subtree)."""
    found = access(actor, organization)
    if permission not in found.permissions:
        allowed = ", ".join(r for r, perms in ROLE_PERMISSIONS.items() if permission in perms)
        reason = (
            f"is not a member of {organization.slug}"
            if found.role is None and actor.is_person
            else f"needs one of the roles {allowed} in {organization.slug}"
        )
        raise NotPermitted(
            f"{actor.label} may not {doing} in {organization.slug}",
            [Issue("error", "actor", reason)],
        )
    if permission in SCOPED and found.scope is not None:
        outside = sorted({node for node in nodes if not found.covers(node)})
        if outside:
            raise NotPermitted(
                f"{actor.label} may {doing} only for team {found.scope} and the teams below it",
                [
                    Issue(
                        "error",
                        f"teams.{node}" if node else "organization",
                        f"is outside the team editor's scope {found.scope}",
                    )
                    for node in outside
                ],
            )
    return found
