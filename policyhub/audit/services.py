"""Writing audit events; every service that changes something calls `audit_record`."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from policyhub.actors import Actor
from policyhub.audit.chain import FIELDS, GENESIS, event_hash
from policyhub.audit.context import current_origin
from policyhub.audit.models import AuditChain, AuditEvent


def audit_event(
    *,
    organization_id: int,
    actor: Actor,
    action: str,
    object_type: str,
    object_key: str,
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEvent:
    """One unsaved, validated event (for `audit_record_many`), from where the current request or
    task came (audit.context)."""
    origin = current_origin()
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
        source_address=origin.source_address,
        request_id=origin.request_id,
    )
    # The lengths and choices; not the foreign keys, which are the rows passed in (checking
    # them would cost a query each, per event of a publish), nor the chain, set on writing.
    event.full_clean(
        exclude=["organization", "actor", "seq", "prev_hash", "hash"], validate_unique=False
    )
    return event


AUDIT_BATCH = 2000


def audit_record(**fields: Any) -> AuditEvent:
    """Append one event (the fields of `audit_event`); must run inside the transaction of the
    change it records."""
    [event] = audit_record_many([audit_event(**fields)])
    return event


def audit_record_many(events: list[AuditEvent]) -> list[AuditEvent]:
    """Append events in one statement (a publish records one per release); same rule: inside
    the transaction of the change. Each is linked into its organisation's chain under a lock on
    the chain's head, held until the change commits."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change")
    by_organization: dict[int, list[AuditEvent]] = {}
    for event in events:
        if event.organization_id is None:
            raise ValueError("every audit event belongs to an organisation (its chain)")
        by_organization.setdefault(event.organization_id, []).append(event)
    # Heads in id order, so two writers touching the same organisations never deadlock.
    for organization_id in sorted(by_organization):
        _link(organization_id, by_organization[organization_id])
    # In statements of a bounded size: an apply of a large document records tens of thousands.
    return AuditEvent.objects.bulk_create(events, batch_size=AUDIT_BATCH)


def _link(organization_id: int, events: list[AuditEvent]) -> None:
    AuditChain.objects.bulk_create(
        [AuditChain(organization_id=organization_id, head=GENESIS)], ignore_conflicts=True
    )
    chain = AuditChain.objects.select_for_update().get(organization_id=organization_id)
    now = timezone.now()
    for event in events:
        event.created_at = now
        event.seq = chain.length + 1
        event.prev_hash = chain.head
        event.hash = event_hash(organization_id, chain.head, _content(event))
        chain.length, chain.head = event.seq, event.hash
    chain.save(update_fields=["length", "head"])


def _content(event: AuditEvent) -> dict[str, Any]:
    """The hashed fields of an event (`actor_id`, not the user row)."""
    return {name: getattr(event, name) for name in FIELDS}
