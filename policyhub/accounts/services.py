"""Writes of organisations, their settings and people: memberships, invitations, ownership and
API tokens. Each checks what its actor may do (accounts.permissions) and is audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from policyhub import credentials
from policyhub.accounts.models import ApiToken, Invitation, Membership, Organization, Role
from policyhub.accounts.permissions import Permission, authorize, ceiling_allowed
from policyhub.accounts.selectors import (
    invitation_for_secret,
    invitation_link,
    invitation_refusal,
    organization_lock,
)
from policyhub.actors import Actor, ActorKind
from policyhub.audit.services import audit_record
from policyhub.errors import ApplicationError, NotPermitted, invalid_fields
from providers.base import Issue

INVITATION_LIFETIME = timedelta(days=7)
MAX_TOKEN_LIFETIME = timedelta(days=365)


# --- organisations ------------------------------------------------------------------------------


@transaction.atomic
def organization_create(*, actor: Actor, slug: str, name: str, owner: User) -> Organization:
    """Create an empty organisation with its first owner (its policy arrives through
    `policy_apply`). Deployment-wide: only the server operator or a superuser may."""
    if not (
        actor.kind == ActorKind.OPERATOR
        or (actor.kind == ActorKind.USER and actor.user is not None and actor.user.is_superuser)
    ):
        raise NotPermitted(
            f"{actor.label} may not create organisations",
            [Issue("error", "actor", "only the server operator or a superuser may")],
        )
    org = Organization(slug=slug, name=name)
    try:
        org.full_clean()
    except ValidationError as exc:
        raise invalid_fields("the organisation cannot be created", exc) from None
    org.save()
    audit_record(
        organization_id=org.pk,
        actor=actor,
        action="organization.create",
        object_type="organization",
        object_key=slug,
        after={"slug": slug, "name": name},
    )
    _membership_save(org, owner, Role.OWNER, None, actor=actor)
    return org


@transaction.atomic
def organization_settings_update(
    *,
    actor: Actor,
    organization: Organization,
    requires_approval: bool | None = None,
    sso_required: bool | None = None,
) -> Organization:
    """Change whether change sets need a second person's approval, and whether members must
    sign in through single sign-on."""
    authorize(
        actor, organization, Permission.ORG_SETTINGS, doing="change the organisation's settings"
    )
    organization = organization_lock(organization.pk)
    wanted = {"requires_approval": requires_approval, "sso_required": sso_required}
    changed = {key: value for key, value in wanted.items() if value is not None}
    before = {key: getattr(organization, key) for key in changed}
    for key, value in changed.items():
        setattr(organization, key, value)
    organization.full_clean()
    organization.save(update_fields=list(changed))
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="organization.settings_update",
        object_type="organization",
        object_key=organization.slug,
        before=before,
        after=changed,
    )
    return organization


# --- members ------------------------------------------------------------------------------------


@transaction.atomic
def membership_grant(
    *,
    actor: Actor,
    organization: Organization,
    user: User,
    role: str,
    team_path: str | None = None,
) -> Membership:
    """Give `user` a role in `organization`, or change the one they have; a team editor's
    `team_path` names the root of the subtree they may edit. Making or unmaking an owner takes an
    owner, and the organisation always keeps one."""
    organization = organization_lock(organization.pk)
    current = Membership.objects.filter(organization=organization, user=user).first()
    _authorize_members(actor, organization, {role, current.role if current else ""})
    if current is not None and current.role == Role.OWNER and role != Role.OWNER:
        _keep_an_owner(organization, current)
    return _membership_save(organization, user, role, team_path, actor=actor)


@transaction.atomic
def membership_remove(*, actor: Actor, membership: Membership) -> None:
    """Take a member out of the organisation (anyone may leave); their API tokens there go too."""
    organization = organization_lock(membership.organization_id)
    # Read again under the lock: the role decides who may remove it and whether an owner stays.
    found = Membership.objects.filter(pk=membership.pk).select_related("user").first()
    if found is None:  # gone already
        return
    membership = found
    leaving = _acts_as(actor, membership.user_id, organization)
    if not leaving:
        _authorize_members(actor, organization, {membership.role})
    if membership.role == Role.OWNER:
        _keep_an_owner(organization, membership)
    for token in ApiToken.objects.filter(
        organization=organization, user_id=membership.user_id, revoked_at__isnull=True
    ):
        _token_revoke(token, actor, reason="member removed")
    before = _membership_data(membership)
    username = membership.user.email or membership.user.get_username()
    membership.delete()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="membership.remove",
        object_type="membership",
        object_key=username,
        before=before,
    )


@transaction.atomic
def ownership_transfer(*, actor: Actor, organization: Organization, to: User) -> Membership:
    """Make another member the owner; the acting owner stays on as an admin."""
    organization = organization_lock(organization.pk)
    authorize(actor, organization, Permission.OWNERS_MANAGE, doing="transfer ownership")
    target = Membership.objects.filter(organization=organization, user=to).first()
    if target is None:
        raise ApplicationError(
            f"{to.email or to.get_username()} is not a member of {organization.slug}",
            [Issue("error", "to", "ownership goes to an existing member")],
        )
    new_owner = _membership_save(organization, to, Role.OWNER, None, actor=actor)
    if actor.is_person and actor.user is not None and actor.user.pk != to.pk:
        _membership_save(organization, actor.user, Role.ADMIN, None, actor=actor)
    return new_owner


def _authorize_members(actor: Actor, organization: Organization, roles: set[str]) -> None:
    authorize(
        actor, organization, Permission.MEMBERS_MANAGE, doing="manage the organisation's members"
    )
    if Role.OWNER in roles:
        authorize(actor, organization, Permission.OWNERS_MANAGE, doing="make or unmake owners")


def _acts_as(actor: Actor, user_id: int, organization: Organization) -> bool:
    """Whether the actor is this person, acting in this organisation (a token only in its own)."""
    if not actor.is_person or actor.user is None or actor.user.pk != user_id:
        return False
    return actor.kind != ActorKind.TOKEN or actor.token_organization_id == organization.pk


def _keep_an_owner(organization: Organization, leaving: Membership) -> None:
    others = Membership.objects.filter(organization=organization, role=Role.OWNER).exclude(
        pk=leaving.pk
    )
    if not others.exists():
        raise ApplicationError(
            f"{organization.slug} must keep an owner: transfer ownership first",
            [Issue("error", "role", "the organisation's last owner")],
        )


def _membership_save(
    organization: Organization, user: User, role: str, team_path: str | None, *, actor: Actor
) -> Membership:
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
    before = _membership_data(membership) if membership else None
    membership = membership or Membership(organization=organization, user=user)
    membership.role, membership.team = role, team
    membership.full_clean()
    membership.save()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="membership.grant",
        object_type="membership",
        object_key=user.email or user.get_username(),
        before=before,
        after=_membership_data(membership),
    )
    return membership


def _membership_data(membership: Membership) -> str | dict[str, str]:
    # A plain role as before; a team editor's scope alongside it.
    if membership.team is None:
        return membership.role
    return {"role": membership.role, "team": membership.team.path}


# --- invitations --------------------------------------------------------------------------------


@transaction.atomic
def invitation_create(
    *,
    actor: Actor,
    organization: Organization,
    email: str,
    role: str,
    team_path: str = "",
    lifetime: timedelta = INVITATION_LIFETIME,
) -> tuple[Invitation, str]:
    """Invite `email` to join with `role`; the link is mailed, and returned with the invitation
    (shown this once). A newer invitation for the same address replaces a pending one."""
    organization = organization_lock(organization.pk)
    _authorize_members(actor, organization, {role})
    email = email.strip().lower()
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise ApplicationError(
            f"{email} is already a member of {organization.slug}",
            [Issue("error", "email", "already a member; change their role instead")],
        )
    if (role == Role.TEAM_EDITOR) != bool(team_path):
        raise ApplicationError(
            "a team editor is invited to a team, and only a team editor",
            [Issue("error", "team", "is required for a team editor, and only for one")],
        )
    if team_path and not organization.teams.filter(path=team_path).exists():
        raise ApplicationError(
            f"no team {team_path!r} in {organization.slug}",
            [Issue("error", "team", f"no team {team_path!r}")],
        )
    if not timedelta(0) < lifetime <= timedelta(days=30):
        raise ApplicationError(
            "an invitation expires within 30 days",
            [Issue("error", "expires", "must be between 1 minute and 30 days")],
        )
    for pending in Invitation.objects.filter(
        organization=organization,
        email__iexact=email,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
    ):
        _invitation_revoke(pending, actor, reason="replaced by a new invitation")
    secret = credentials.new_secret(credentials.INVITATION_PREFIX)
    invitation = Invitation(
        organization=organization,
        email=email,
        role=role,
        team_path=team_path,
        secret_hash=credentials.secret_hash(secret),
        invited_by=actor.label,
        invited_by_kind=actor.kind,
        invited_by_user=actor.user,
        expires_at=timezone.now() + lifetime,
    )
    invitation.full_clean()
    invitation.save()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="invitation.create",
        object_type="invitation",
        object_key=str(invitation.pk),
        after=_invitation_data(invitation),
    )
    link = invitation_link(secret)
    transaction.on_commit(
        lambda: send_mail(
            f"You are invited to {organization.name} on PolicyHub",
            f"{actor.label} invited you to join {organization.name} ({organization.slug}) on "
            f"PolicyHub as {role}.\n\nAccept the invitation: {link}\n\n"
            f"It can be used once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC.\n",
            None,
            [email],
        )
    )
    return invitation, secret


@transaction.atomic
def invitation_accept(*, actor: Actor, secret: str) -> Membership:
    """The invited person joins: signed in, with the invited address verified on their account."""
    found = invitation_for_secret(secret)
    invitation = None
    if found is not None:
        # The organisation first, then the invitation: the order invitation_create locks in.
        organization_lock(found.organization_id)
        invitation = (
            Invitation.objects.select_for_update(of=("self",))
            .select_related("organization", "invited_by_user")
            .get(pk=found.pk)
        )
    problem = invitation_refusal(invitation)
    if invitation is None or problem:
        raise ApplicationError(
            problem or "unknown invitation", [Issue("error", "invitation", problem or "unknown")]
        )
    user = actor.user
    if actor.kind != ActorKind.USER or user is None:
        raise NotPermitted("an invitation is accepted by the person it was sent to, signed in")
    verified = EmailAddress.objects.filter(
        user=user, email__iexact=invitation.email, verified=True
    ).exists()
    if not verified:
        raise ApplicationError(
            f"this invitation is for {invitation.email}; sign in with that address, verified",
            [Issue("error", "email", f"{invitation.email} is not a verified address of yours")],
        )
    organization = invitation.organization
    _inviter_may_still_invite(invitation)
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise ApplicationError(
            f"you are already a member of {organization.slug}",
            [Issue("error", "invitation", "already a member")],
        )
    invitation.accepted_at, invitation.accepted_by = timezone.now(), user
    invitation.full_clean()
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="invitation.accept",
        object_type="invitation",
        object_key=str(invitation.pk),
        after=_invitation_data(invitation),
    )
    return _membership_save(
        organization, user, invitation.role, invitation.team_path or None, actor=actor
    )


def _inviter_may_still_invite(invitation: Invitation) -> None:
    """An invitation carries its sender's authority: someone removed or demoted since cannot
    get back in (or let anyone else in) through one they sent before."""
    if invitation.invited_by_kind == ActorKind.OPERATOR:
        return
    inviter = invitation.invited_by_user
    try:
        if inviter is None:
            raise NotPermitted(f"{invitation.invited_by} no longer has an account")
        _authorize_members(Actor.for_user(inviter), invitation.organization, {invitation.role})
    except NotPermitted as refused:
        raise ApplicationError(
            f"{invitation.invited_by} may no longer invite people as {invitation.role}; "
            "ask for a new invitation",
            [Issue("error", "invitation", refused.message)],
        ) from refused


@transaction.atomic
def invitation_revoke(*, actor: Actor, invitation: Invitation) -> Invitation:
    organization = organization_lock(invitation.organization_id)
    _authorize_members(actor, organization, {invitation.role})
    if invitation.revoked_at is None and invitation.accepted_at is None:
        _invitation_revoke(invitation, actor, reason="")
    return invitation


def _invitation_revoke(invitation: Invitation, actor: Actor, *, reason: str) -> None:
    _revoke(invitation, actor, "invitation", _invitation_data, reason)


def _revoke(
    item: Invitation | ApiToken,
    actor: Actor,
    object_type: str,
    data: Callable[[Any], dict[str, Any]],
    reason: str,
) -> None:
    """Revoke an invitation or a token: stamped, kept (the audit trail points at it), audited."""
    before = data(item)
    item.revoked_at = timezone.now()
    item.full_clean()
    item.save(update_fields=["revoked_at"])
    audit_record(
        organization_id=item.organization_id,
        actor=actor,
        action=f"{object_type}.revoke",
        object_type=object_type,
        object_key=str(item.pk),
        before=before,
        after=data(item),
        reason=reason,
    )


def _invitation_data(invitation: Invitation) -> dict[str, Any]:
    return {
        "email": invitation.email,
        "role": invitation.role,
        "team": invitation.team_path or None,
        "expires_at": invitation.expires_at.isoformat(),
        "accepted": invitation.accepted_at is not None,
        "revoked": invitation.revoked_at is not None,
    }


# --- API tokens ---------------------------------------------------------------------------------


@transaction.atomic
def api_token_create(
    *,
    actor: Actor,
    organization: Organization,
    name: str,
    role: str,
    lifetime: timedelta = timedelta(days=90),
) -> tuple[ApiToken, str]:
    """A new API token of the acting person for one organisation, at most at `role` (never more
    than their own role allows); returns it with its secret, which is shown this once."""
    if actor.kind != ActorKind.USER or actor.user is None:
        raise NotPermitted(
            f"{actor.label} may not create API tokens",
            [Issue("error", "actor", "a person signs in to create their own tokens")],
        )
    # Under the organisation's lock, as removing a member is: a token made while its person is
    # being removed would otherwise outlive the membership.
    organization = organization_lock(organization.pk)
    authorize(actor, organization, Permission.API_TOKENS, doing="create API tokens")
    membership = Membership.objects.get(organization=organization, user=actor.user)
    if role not in Role.values or not ceiling_allowed(role, membership):
        raise ApplicationError(
            f"a token may not do more than its owner's role ({membership.role})",
            [Issue("error", "role", f"{role!r} is above {membership.role!r}")],
        )
    if not timedelta(0) < lifetime <= MAX_TOKEN_LIFETIME:
        raise ApplicationError(
            "an API token expires within 365 days",
            [Issue("error", "expires", "must be between 1 minute and 365 days")],
        )
    secret = credentials.new_secret(credentials.API_TOKEN_PREFIX)
    token = ApiToken(
        user=actor.user,
        organization=organization,
        name=name,
        role=role,
        secret_hash=credentials.secret_hash(secret),
        prefix=secret[:10],
        expires_at=timezone.now() + lifetime,
    )
    token.full_clean()
    token.save()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="api_token.create",
        object_type="api_token",
        object_key=str(token.pk),
        after=_token_data(token),
    )
    return token, secret


@transaction.atomic
def api_token_revoke(*, actor: Actor, token: ApiToken, reason: str = "") -> ApiToken:
    """Its owner may revoke a token, and so may whoever manages the organisation's members."""
    token = ApiToken.objects.select_for_update().select_related("organization").get(pk=token.pk)
    if not _acts_as(actor, token.user_id, token.organization):
        authorize(actor, token.organization, Permission.MEMBERS_MANAGE, doing="revoke API tokens")
    if token.revoked_at is None:
        _token_revoke(token, actor, reason=reason)
    return token


def _token_revoke(token: ApiToken, actor: Actor, *, reason: str) -> None:
    _revoke(token, actor, "api_token", _token_data, reason)


def api_token_used(token: ApiToken) -> None:
    """Note the token's last use (at most once a minute: a busy script does not write per call).
    Telemetry, not a change: not audited."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def _token_data(token: ApiToken) -> dict[str, Any]:
    return {
        "user": token.user.email or token.user.get_username(),
        "name": token.name,
        "role": token.role,
        "prefix": token.prefix,
        "expires_at": token.expires_at.isoformat(),
        "revoked": token.revoked_at is not None,
    }
