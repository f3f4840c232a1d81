"""Revoking a compromised signing key: distinct from rotation, which keeps trusting the old key.

A revoked key is trusted for nothing any more. What it signed that machines are served is signed
again by the active key (services/resign.py, by a worker once the revocation commits), and every
machine learns of the revocation from the signed list it is served beside the keys.

Revoking the active key first makes a new one. The revoked key must not vouch for its successor
(whoever holds it could make keys of their own the same way), so the new key is endorsed by the
newest retired key that is not revoked, which machines that pinned it follow; with no such key it
is endorsed by none, and machines that trusted only revoked keys must be enrolled again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.accounts.selectors import organization_lock
from policyhub.actors import Actor
from policyhub.audit.services import audit_record
from policyhub.errors import ApplicationError
from policyhub.releases import signing
from policyhub.releases.models import RevocationList, SigningKey
from policyhub.releases.selectors import releases_to_resign
from policyhub.releases.services.keys import signing_key_active, signing_key_new
from policyhub.releases.tasks import releases_resign_enqueue
from policyhub.validators import is_plain_text
from providers.base import Issue

REASON_MAX_LENGTH = 2000


@dataclass(frozen=True)
class KeyRevocation:
    """A revocation as it stands when it commits."""

    revoked: SigningKey
    # The key that signs from now on: a new one when the revoked key was the active one.
    active: SigningKey
    rotated: bool
    # Teams serving a release signed by a revoked key, re-signed by a worker after the commit.
    teams_to_resign: int

    @property
    def reenrolment_needed(self) -> bool:
        """Whether no machine can learn the new active key by an endorsement: the revoked key
        was the active one and no retired key was left to endorse its successor."""
        return self.rotated and self.active.endorsed_by_id is None


@transaction.atomic
def signing_key_revoke(
    *, actor: Actor, organization: Organization, key_id: str, reason: str
) -> KeyRevocation:
    """Revoke one of the organisation's keys (a new active key first, if it is the active one),
    sign the new list of revoked keys with the active key, and hand the re-signing of what the
    revoked key signed to a worker once this commits."""
    authorize(
        actor,
        organization,
        Permission.SIGNING_KEY_REVOKE,
        doing="revoke the organisation's signing keys",
    )
    reason = _reason(reason)
    organization = organization_lock(organization.pk)
    key = SigningKey.objects.filter(organization=organization, key_id=key_id).first()
    if key is None:
        raise ApplicationError(
            f"{organization.slug} has no signing key {key_id}",
            [Issue("error", "key_id", f"no signing key {key_id!r} in {organization.slug}")],
        )
    if key.status == SigningKey.Status.REVOKED:
        assert key.revoked_at is not None
        raise ApplicationError(
            f"signing key {key_id} was already revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC",
            [Issue("error", "key_id", "already revoked")],
        )
    before = {"key_id": key.key_id, "status": key.status}
    rotated = key.status == SigningKey.Status.ACTIVE
    now = timezone.now()
    key.status, key.revoked_at, key.revocation_reason = SigningKey.Status.REVOKED, now, reason
    key.self_revocation = signing.sign(
        key.private_key_encrypted,
        signing.self_revocation_message(organization.slug, key.key_id, now),
    )
    key.full_clean()
    key.save(update_fields=["status", "revoked_at", "revocation_reason", "self_revocation"])
    active = (
        _successor(organization, actor, key)
        if rotated
        else signing_key_active(organization=organization, actor=actor)
    )
    _revocations_issue(organization, active)
    teams = releases_to_resign().filter(organization=organization).count()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="signing_key.revoke",
        object_type="signing_key",
        object_key=key.key_id,
        before=before,
        after={
            "key_id": key.key_id,
            "status": key.status,
            "revoked_at": signing.timestamp(now),
            "active_key": active.key_id,
            "teams_to_resign": teams,
        },
        reason=reason,
    )
    releases_resign_enqueue(organization.pk, actor)
    return KeyRevocation(key, active, rotated, teams)


def _reason(reason: str) -> str:
    reason = reason.strip()
    problem = None
    if not reason:
        problem = "say why the key is revoked (it is recorded with the revocation)"
    elif len(reason) > REASON_MAX_LENGTH:
        problem = f"at most {REASON_MAX_LENGTH} characters"
    elif not is_plain_text(reason):
        problem = "contains control characters"
    if problem is not None:
        raise ApplicationError(
            f"the reason for the revocation is refused: {problem}",
            [Issue("error", "reason", problem)],
        )
    return reason


def _successor(organization: Organization, actor: Actor, revoked: SigningKey) -> SigningKey:
    """The new active key after the active one was revoked, endorsed by the newest retired key
    that is not revoked (never by the revoked one), or by none."""
    endorser = (
        SigningKey.objects.filter(organization=organization, status=SigningKey.Status.RETIRED)
        .order_by("-created_at", "-id")
        .first()
    )
    key = signing_key_new(organization, endorser=endorser)
    key.full_clean()
    key.save()
    audit_record(
        organization_id=organization.pk,
        actor=actor,
        action="signing_key.rotate",
        object_type="signing_key",
        object_key=key.key_id,
        before={"key_id": revoked.key_id, "status": revoked.status},
        after={
            "key_id": key.key_id,
            "public_key": key.public_key,
            "endorsed_by": endorser.key_id if endorser else None,
        },
    )
    return key


def _revocations_issue(organization: Organization, active: SigningKey) -> None:
    """The organisation's list of every revoked key, signed by the active key, replacing the
    previous list (recorded by the revocation's own event). Agents ignore a list no newer than
    the one they hold, so it is always issued after the previous one, whatever the clock did."""
    revoked = SigningKey.objects.filter(
        organization=organization, status=SigningKey.Status.REVOKED
    ).values_list("key_id", "revoked_at")
    found = RevocationList.objects.filter(organization=organization).first()
    issued_at = timezone.now()
    if found is not None and issued_at <= found.issued_at:
        issued_at = found.issued_at + timedelta(microseconds=1)
    statement = signing.revocations_message(
        organization.slug, [(key_id, at) for key_id, at in revoked if at is not None], issued_at
    )
    listed = found or RevocationList(organization=organization)
    listed.statement = statement.decode()
    listed.signature = signing.sign(active.private_key_encrypted, statement)
    listed.signing_key = active
    listed.issued_at = issued_at
    listed.full_clean()
    listed.save()
