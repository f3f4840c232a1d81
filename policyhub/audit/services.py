"""Writing audit events; every service that changes something calls `audit_record`."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from policyhub.actors import Actor
from policyhub.audit.models import AuditEvent


def audit_event(
    *,
    organization_id: int | None,
    actor: Actor,
    action: str,
    object_type: str,
    object_key: str,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """One unsaved, validated event (for `audit_record_many`)."""
    event = AuditEvent(
        organization_id=organization_id,
        actor=actor.user,
        actor_kind=actor.kind,
        actor_label=actor.label,
        action=action,
        object_type=object_type,
        object_key=object_key,
        before=before,
        after=after,
        reason=reason,
    )
    # The lengths and choices; not the foreign keys, which are the rows passed in (checking
    # them would cost a query each, per event of a publish).
    event.full_clean(exclude=["organization", "actor"], validate_unique=False)
    return event


def audit_record(**fields: Any) -> AuditEvent:
    """Append one event (the fields of `audit_event`); must run inside the transaction of the
    change it records."""
    [event] = audit_record_many([audit_event(**fields)])
    return event


def audit_record_many(events: list[AuditEvent]) -> list[AuditEvent]:
    """Append events in one statement (a publish records one per release); same rule: inside
    the transaction of the change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change")
    return AuditEvent.objects.bulk_create(events)
