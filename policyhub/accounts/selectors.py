"""Reads of organisations, memberships, invitations and API tokens."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet
from django.utils import timezone

from policyhub import credentials
from policyhub.accounts.models import ApiToken, Invitation, Membership, Organization
from policyhub.accounts.permissions import Permission, access
from policyhub.actors import Actor, ActorKind


def organizations_for(user: User | AnonymousUser) -> QuerySet[Organization]:
    """The organisations `user` is a member of (none for anonymous users)."""
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user_id=user.pk).order_by("slug")


def organizations_open_to(actor: Actor, *, through_sso: bool) -> QuerySet[Organization]:
    """The organisations `actor` may open, as `access.organization_for_request` decides: a
    token only its own (while its person may still view it), a person their memberships, less
    those that require single sign-on unless this session signed in `through_sso`."""
    if not actor.is_person or actor.user is None:
        return Organization.objects.none()
    if actor.kind == ActorKind.TOKEN:
        found = Organization.objects.filter(pk=actor.token_organization_id or 0)
        organization = found.first()
        if (
            organization is None
            or Permission.ORG_VIEW not in access(actor, organization).permissions
        ):
            return Organization.objects.none()
        return found
    found = organizations_for(actor.user)
    return found if through_sso else found.filter(sso_required=False)


def organization_lock(organization_id: int) -> Organization:
    """The organisation's row, locked until the transaction ends: the writers of one
    organisation's policy, releases and keys go one after the other and see each other's work.

    FOR NO KEY UPDATE, not FOR UPDATE: it still excludes every other holder of this lock (and
    any update of the row), but not the key-share lock with which PostgreSQL checks a foreign
    key to the organisation. Those checks run when a transaction commits (Django's constraints
    are deferred), after it has taken the head of the organisation's audit chain; a publish
    holding FOR UPDATE and waiting for that head, while such a write (a publish request, a
    claim, an approval) waited for the organisation, deadlocked, and PostgreSQL aborted one of
    the two (tests/faults/test_concurrent_publishes.py)."""
    return Organization.objects.select_for_update(no_key=True).get(pk=organization_id)


def membership_lock(organization: Organization, user_id: int) -> Membership | None:
    """A person's membership row, locked until the transaction ends: serialises what one person
    does in one organisation (their draft change set) without holding the organisation."""
    return (
        Membership.objects.select_for_update()
        .filter(organization=organization, user_id=user_id)
        .first()
    )


def members(organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user", "team")
        .order_by("user__email", "user__username")
    )


def membership_of(organization: Organization, user_key: str) -> Membership | None:
    """A member named by email or username."""
    return (
        members(organization)
        .filter(Q(user__email__iexact=user_key) | Q(user__username=user_key))
        .first()
    )


def user_by_key(user_key: str) -> User | None:
    """A user named by email (as people sign in) or username."""
    return (
        User.objects.filter(Q(email__iexact=user_key) | Q(username=user_key)).order_by("pk").first()
    )


def invitations_pending(organization: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        organization=organization,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    )


def invitation_refusal(invitation: Invitation | None) -> str | None:
    """Why this invitation cannot be accepted now, or None if it can."""
    if invitation is None:
        return "unknown invitation"
    if invitation.revoked_at is not None:
        return "this invitation was withdrawn"
    if invitation.accepted_at is not None:
        return "this invitation has been used"
    if invitation.expires_at <= timezone.now():
        return "this invitation has expired"
    return None


def invitation_link(secret: str) -> str:
    return f"{settings.BASE_URL.rstrip('/')}/invitations/{secret}/"


def invitation_for_secret(secret: object) -> Invitation | None:
    if not credentials.well_formed(secret, credentials.INVITATION_PREFIX):
        return None
    return (
        Invitation.objects.select_related("organization")
        .filter(secret_hash=credentials.secret_hash(secret))
        .first()
    )


def api_tokens(organization: Organization, *, user: User | None = None) -> QuerySet[ApiToken]:
    found = ApiToken.objects.filter(organization=organization).select_related("user")
    return found.filter(user=user) if user is not None else found


def api_token_for_secret(secret: object) -> ApiToken | None:
    """The usable token holding `secret`: not revoked, not expired, its user still a member."""
    if not credentials.well_formed(secret, credentials.API_TOKEN_PREFIX):
        return None
    token = (
        ApiToken.objects.select_related("user", "organization")
        .filter(
            secret_hash=credentials.secret_hash(secret),
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            user__is_active=True,
        )
        .first()
    )
    if token is None:
        return None
    still_member = Membership.objects.filter(
        organization_id=token.organization_id, user_id=token.user_id
    ).exists()
    return token if still_member else None
