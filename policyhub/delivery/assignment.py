"""A device's signed team assignment: the organisation's word that a machine belongs to a team.

The agent refuses a release of another team than the one it applied last unless the server
proves the move with this statement, numbered higher than any it saw (`Device.assignment`
counts the moves), so neither a replayed answer nor a proxy can switch a machine's team or
undo a move by replaying an older one.
"""

from __future__ import annotations

from typing import Any

from policyhub.fleet.models import Device
from policyhub.releases import signing
from policyhub.releases.models import SigningKey


def device_assignment(device_id: str) -> dict[str, Any] | None:
    """The statement, its signature by the active key and the key's id; None when the
    organisation has no active key yet (it has signed nothing a machine could apply)."""
    device = Device.objects.select_related("organization", "team").get(pk=device_id)
    key = SigningKey.objects.filter(
        organization_id=device.organization_id, status=SigningKey.Status.ACTIVE
    ).first()
    if key is None:
        return None
    statement = signing.assignment_message(
        device.organization.slug, str(device.pk), device.team.path, device.assignment
    )
    return {
        "statement": statement.decode(),
        "signature": signing.sign(key.private_key_encrypted, statement),
        "key_id": key.key_id,
    }
