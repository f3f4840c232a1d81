"""The audit log: who changed what in the organisation, newest first. Auditors, admins and owners
narrow it by actor, team, object type and time, and open an event to see it before and after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse

from policyhub.accounts.permissions import Permission
from policyhub.audit.filters import AuditFilter
from policyhub.audit.models import AuditEvent
from policyhub.audit.selectors import audit_chain_head, audit_events
from policyhub.exports.formats import FORMATS
from policyhub.web.pages import OrgPage, keyset_page, org_page


@dataclass(frozen=True)
class EventRow:
    """An event as the page shows it, its before and after as indented JSON."""

    event: AuditEvent
    before: str | None
    after: str | None


def _shown(value: Any) -> str | None:
    return None if value is None else json.dumps(value, indent=2, sort_keys=True)


@org_page()
def audit_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The organisation's events newest first, fifty a page, narrowed by the filters."""
    page.require(Permission.AUDIT_VIEW)
    found = AuditFilter(
        request.GET, queryset=audit_events(page.org.pk), organization_id=page.org.pk
    )
    events = found.qs if found.is_valid() else AuditEvent.objects.none()
    listed = keyset_page(request, events, key="id", descending=True, cast=int)
    rows = [EventRow(e, _shown(e.before), _shown(e.after)) for e in listed.items]
    filtered = any(request.GET.get(name) for name in found.filters)
    length, head = audit_chain_head(page.org.pk)
    return render(
        request,
        "web/audit/events.html",
        {
            "page": page,
            "nav": "audit",
            "filters": found.form,
            "rows": rows,
            "listed": listed,
            "filtered": filtered,
            "chain": {"length": length, "head": head},
            "exports": _exports(page, found, length) if found.is_valid() else [],
        },
    )


@dataclass(frozen=True)
class ExportLink:
    label: str
    file: str
    manifest: str


def _exports(page: OrgPage, found: AuditFilter, through: int) -> list[ExportLink]:
    """The export of what the filters select, in each format, pinned to the chain as shown, so
    the file and its manifest describe the same events however long after they are fetched."""
    query = QueryDict(mutable=True)
    for name in found.filters:
        value = found.form.cleaned_data.get(name) and found.form.data.get(name)
        if value:
            query[name] = value
    query["through"] = str(through)
    links = []
    for file_format in FORMATS:
        kwargs = {"slug": page.org.slug, "file_format": file_format}
        links.append(
            ExportLink(
                file_format.upper() if file_format != "ndjson" else "NDJSON",
                f"{reverse('audit-export', kwargs=kwargs)}?{query.urlencode()}",
                f"{reverse('audit-export-manifest', kwargs=kwargs)}?{query.urlencode()}",
            )
        )
    return links


urlpatterns = [
    path("orgs/<slug:slug>/audit/", audit_page, name="web-audit"),
]
