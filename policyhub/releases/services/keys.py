"""Writes of signing keys: rotation, and the active key made on first use (revocation, which
also re-signs releases, is services/revocation.py)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.accounts.selectors import organization_lock
from policyhub.actors import Actor
from policyhub.audit.services import audit_record
from policyhub.releases import signing
from policyhub.releases.models import SigningKey


@transaction.atomic
def signing_key_rotate(*, actor: Actor, organization: Organization) -> SigningKey:
    """A new active key; the previous one is retired and keeps verifying what it signed."""
    authorize(
        actor,
        organization,
        Permission.SIGNING_KEY_ROTATE,
        doing="rotate the organisation's signing key",
    )
    return _rotate(organization, actor)


def signing_key_active(*, organization: Organization, actor: Actor) -> SigningKey:
    """The organisation's active signing key, made on first use by an action its actor was
    already allowed (a publish, a rollback, an enrolment token)."""
    key = SigningKey.objects.filter(
        organization=organization, status=SigningKey.Status.ACTIVE
    ).first()
    return key if key is not None else _rotate(organization, actor)


@transaction.atomic
def _rotate(organization: Organization, actor: Actor) -> SigningKey:
    organization_lock(organization.pk)
    retired = SigningKey.objects.filter(
        organization=organization, status=SigningKey.Status.ACTIVE
    ).first()
    if retired is not None:
        retired.status, retired.retired_at = SigningKey.Status.RETIRED, timezone.now()
        retired.full_clean()
        retired.save(update_fields=["status", "retired_at"])
    # Machines pinned the old key; its signature over the new one lets them trust it.
    key = signing_key_new(organization, endorser=retired)
    key.full_clean()
    key.save()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="signing_key.rotate",
        object_type="signing_key",
        object_key=key.key_id,
        before={"key_id": retired.key_id, "status": "retired"} if retired else None,
        after={"key_id": key.key_id, "public_key": key.public_key},
    )
    return key


def signing_key_new(organization: Organization, *, endorser: SigningKey | None) -> SigningKey:
    """A new, unsaved active key, endorsed by `endorser` (its signature over the new key's id and
    public half) when one is given; its caller retires or revokes the old key, stores the new one
    and records both."""
    key_id, public_key, encrypted = signing.generate()
    key = SigningKey(
        organization=organization,
        key_id=key_id,
        public_key=public_key,
        private_key_encrypted=encrypted,
    )
    if endorser is not None:
        key.endorsed_by = endorser
        key.endorsement = signing.sign(
            endorser.private_key_encrypted, signing.endorsement_message(key_id, public_key)
        )
    return key
