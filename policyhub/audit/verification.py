"""Checking an organisation's chain against its stored events (`manage.py audit verify`)."""

from __future__ import annotations

from dataclasses import dataclass

from policyhub.audit.chain import FIELDS, GENESIS, event_hash
from policyhub.audit.models import AuditChain, AuditEvent

BATCH = 5000


@dataclass(frozen=True)
class ChainReport:
    """OK with the count and the head, or the first broken link: its position and what broke."""

    count: int
    head: str
    broken_at: int | None = None  # the position (seq) of the first event that does not verify
    event_id: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None and not self.problem

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.count} events, head {self.head}"
        where = f"event {self.broken_at}" + (f" (id {self.event_id})" if self.event_id else "")
        return f"BROKEN at {where}: {self.problem}"


def audit_chain_verify(organization_id: int) -> ChainReport:
    """Walk the organisation's events in chain order, recomputing every hash: the first event
    whose content, link or position does not match is reported; then the stored head must be the
    last event (events cut off the end show there)."""
    expected_seq, head = 1, GENESIS
    events = (
        AuditEvent.objects.filter(organization_id=organization_id)
        .order_by("seq")
        .values_list("id", "prev_hash", "hash", *FIELDS)
    )
    for event_id, prev_hash, stored, *values in events.iterator(chunk_size=BATCH):
        content = dict(zip(FIELDS, values, strict=True))
        seq = content["seq"]
        if seq != expected_seq:
            missing = f"event {expected_seq} is missing" if seq > expected_seq else "repeated"
            return ChainReport(expected_seq - 1, head, expected_seq, event_id, missing)
        if prev_hash != head:
            problem = "its link to the previous event does not match that event's hash"
            return ChainReport(seq - 1, head, seq, event_id, problem)
        if event_hash(organization_id, prev_hash, content) != stored:
            problem = "its content does not match its hash (altered after it was written)"
            return ChainReport(seq - 1, head, seq, event_id, problem)
        expected_seq, head = seq + 1, stored
    count = expected_seq - 1
    chain = AuditChain.objects.filter(organization_id=organization_id).first()
    length, stored_head = (chain.length, chain.head) if chain else (0, GENESIS)
    if (length, stored_head) != (count, head):
        problem = (
            f"the chain's head records {length} events ending in {stored_head[:16]}…, "
            f"the trail holds {count}"
        )
        return ChainReport(count, head, count + 1 if length > count else None, None, problem)
    return ChainReport(count, head)
