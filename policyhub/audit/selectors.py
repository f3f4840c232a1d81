"""Reads of the audit trail: one organisation's events and the narrowings the audit page offers,
each served by an index of `AuditEvent` at a million events."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import QuerySet

from policyhub.audit.chain import GENESIS
from policyhub.audit.models import ABOUT_TEAM, AuditChain, AuditEvent

# The object types the services record (`object_type` of `audit_record`), for the page's select.
OBJECT_TYPES = (
    ("organization", "organisation"),
    ("provider", "provider endpoint"),
    ("codex", "Codex support window"),
    ("team", "team"),
    ("change_set", "change set"),
    ("publish_run", "publish"),
    ("release", "release"),
    ("signing_key", "signing key"),
    ("device", "device"),
    ("enrollment_token", "enrolment token"),
    ("membership", "membership"),
    ("invitation", "invitation"),
    ("api_token", "API token"),
)
# How far an event's id may lag behind its time: its time is taken just before the INSERT that
# draws its id, so concurrent writers interleave by far less than this.
ID_TIME_SLACK = timedelta(hours=1)


def audit_events(organization_id: int) -> QuerySet[AuditEvent]:
    """The organisation's events (ordered by the caller: the page keys them by id)."""
    return AuditEvent.objects.filter(organization_id=organization_id)


def audit_events_by_actor(events: QuerySet[AuditEvent], label: str) -> QuerySet[AuditEvent]:
    """Events whose actor's label begins with `label`: a person's address finds their own
    events and their API tokens' ("… (API token …)"), "system:" every job's."""
    return events.filter(actor_label__startswith=label)


def audit_events_about_team(events: QuerySet[AuditEvent], path: str) -> QuerySet[AuditEvent]:
    """Events about the team at `path`: its policy (name, requirements, config, profiles, MCP
    servers), its moves (by the path it had) and its releases."""
    return events.alias(about_team=ABOUT_TEAM).filter(about_team=path)


def audit_events_since(
    events: QuerySet[AuditEvent], organization_id: int, moment: datetime
) -> QuerySet[AuditEvent]:
    """Events at or after `moment`. Ids grow with time, so the last event well before it bounds
    the ids: the page stays a scan of the id index however far back `moment` lies."""
    before = (
        audit_events(organization_id)
        .filter(created_at__lt=moment - ID_TIME_SLACK)
        .order_by("-created_at")
        .values_list("id", flat=True)
        .first()
    )
    found = events.filter(created_at__gte=moment)
    return found if before is None else found.filter(id__gt=before)


def audit_events_until(
    events: QuerySet[AuditEvent], organization_id: int, moment: datetime
) -> QuerySet[AuditEvent]:
    """Events at or before `moment`, bounded by the first event well after it (as above)."""
    after = (
        audit_events(organization_id)
        .filter(created_at__gt=moment + ID_TIME_SLACK)
        .order_by("created_at")
        .values_list("id", flat=True)
        .first()
    )
    found = events.filter(created_at__lte=moment)
    return found if after is None else found.filter(id__lt=after)


def audit_chain_head(organization_id: int) -> tuple[int, str]:
    """How many events the organisation's chain holds and the last one's hash (committed)."""
    head = AuditChain.objects.filter(organization_id=organization_id).values_list("length", "head")
    return head.first() or (0, GENESIS)
