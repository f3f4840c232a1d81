"""Writes of organisations and memberships."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from policyhub.accounts.models import Membership, Organization
from policyhub.audit.services import audit_record


@transaction.atomic
def organization_create(*, slug: str, name: str, actor: User | None) -> Organization:
    """Create an empty organisation (its policy arrives through `policy_apply`)."""
    org = Organization(slug=slug, name=name)
    org.full_clean()
    org.save()
    audit_record(
        organization=org,
        actor=actor,
        action="organization.create",
        object_type="organization",
        object_key=slug,
        after={"slug": slug, "name": name},
    )
    return org


@transaction.atomic
def membership_grant(
    *, organization: Organization, user: User, role: str, actor: User | None
) -> Membership:
    """Give `user` a role in `organization` (replacing an earlier role)."""
    membership = Membership.objects.filter(organization=organization, user=user).first()
    before = membership.role if membership else None
    membership = membership or Membership(organization=organization, user=user)
    membership.role = role
    membership.full_clean()
    membership.save()
    audit_record(
        organization=organization,
        actor=actor,
        action="membership.grant",
        object_type="membership",
        object_key=user.get_username(),
        before=before,
        after=role,
    )
    return membership
