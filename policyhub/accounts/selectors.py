"""Reads of organisations and memberships."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from policyhub.accounts.models import Membership, Organization, Role
from policyhub.errors import NotPermitted
from providers.base import Issue


def organizations_for(user: User | AnonymousUser) -> QuerySet[Organization]:
    """The organisations `user` is a member of (none for anonymous users)."""
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user_id=user.pk).order_by("slug")


def require_role(
    organization: Organization, user: User, roles: tuple[Role, ...], doing: str
) -> None:
    """Refuse, naming the roles that may, unless `user` holds one of `roles` in the organisation."""
    if not Membership.objects.filter(organization=organization, user=user, role__in=roles).exists():
        allowed = ", ".join(r.value for r in roles)
        raise NotPermitted(
            f"{user.get_username()} may not {doing} in {organization.slug}",
            [Issue("error", "user", f"needs one of the roles {allowed} in {organization.slug}")],
        )


def organization_lock(organization_id: int) -> Organization:
    """The organisation's row, locked until the transaction ends: the writers of one
    organisation's policy, releases and keys go one after the other and see each other's work."""
    return Organization.objects.select_for_update().get(pk=organization_id)
