"""The filters of the audit trail, shared by the audit page, the API and `manage.py audit
export`: each narrows in SQL through an index of the trail."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet

from policyhub.audit.models import AuditEvent
from policyhub.audit.selectors import (
    OBJECT_TYPES,
    audit_events_about_team,
    audit_events_by_actor,
    audit_events_since,
    audit_events_until,
)

DATE_ONLY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")
MOMENT_HELP = "A date (2026-01-31) or a time (2026-01-31 14:00), in UTC."


class UntilField(forms.DateTimeField):
    """A date or a time; a date alone means up to the end of that day."""

    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        if moment is not None and isinstance(value, str) and DATE_ONLY.match(value):
            moment = datetime.combine(moment.date() + timedelta(days=1), time(), moment.tzinfo)
            moment -= timedelta(microseconds=1)
        return moment


class UntilFilter(django_filters.DateTimeFilter):
    field_class = UntilField


class AuditFilter(django_filters.FilterSet):
    """Actor (label prefix), team (exact path), object type and a time range."""

    actor = django_filters.CharFilter(method="by_actor", max_length=300, label="Actor begins with")
    team = django_filters.CharFilter(method="by_team", max_length=1024, label="Team path")
    object_type = django_filters.ChoiceFilter(
        choices=OBJECT_TYPES, label="Object type", empty_label="any type"
    )
    since = django_filters.DateTimeFilter(method="by_since", label="Since", help_text=MOMENT_HELP)
    until = UntilFilter(method="by_until", label="Until", help_text=MOMENT_HELP)

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def __init__(self, *args: Any, organization_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization_id = organization_id

    def by_actor(self, events: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        return audit_events_by_actor(events, value.strip())

    def by_team(self, events: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        return audit_events_about_team(events, value.strip().strip("/"))

    def by_since(
        self, events: QuerySet[AuditEvent], name: str, value: datetime
    ) -> QuerySet[AuditEvent]:
        return audit_events_since(events, self.organization_id, value)

    def by_until(
        self, events: QuerySet[AuditEvent], name: str, value: datetime
    ) -> QuerySet[AuditEvent]:
        return audit_events_until(events, self.organization_id, value)
