"""The organisation's dashboard: where a member sees at a glance how the fleet is doing, what
waits for approval or is being published, what was released lately, which Codex versions the
machines run against the support window, and which teams' policies have problems.

Every section is one or two queries over indexed columns, and the validation shown is the one
stored by the last write of the policy: the page costs the same at 10 teams or 10,000, at one
device or 100,000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import urlencode

from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import change_set_list
from policyhub.fleet.selectors import DEVICE_STATES, codex_versions_seen, device_states
from policyhub.policies.checks import stored_issue
from policyhub.policies.document import codex_window
from policyhub.policies.selectors import (
    organization_check,
    team_check_counts,
    team_checks_with_problems,
)
from policyhub.releases.models import PublishRun, Release
from policyhub.web.pages import OrgPage, org_page

# How many rows each list section shows; each links to its full list.
SHOWN = 10
# Bar colours per device state, matching the text colours of the state-* classes.
STATE_COLOURS = {
    "current": "#1b7a3a",
    "behind": "#8a5a00",
    "failing": "#a3141c",
    "stale": "#667085",
    "pending": "#c08a00",
    "revoked": "#98a2b3",
}


@dataclass(frozen=True)
class StateCount:
    """One bar of the fleet chart: a device state, its count, and the device list it links to."""

    state: str
    devices: int
    url: str


@org_page()
def organization_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The dashboard: fleet health, approvals waiting, publishes running or scheduled, recent
    releases, Codex versions against the window, and teams whose policy has problems."""
    org = page.org
    fleet = _fleet_health(page)
    submitted = change_set_list(org).filter(status=ChangeSet.Status.SUBMITTED)
    window = codex_window(org.codex_window)
    org_check = organization_check(org)
    context: dict[str, Any] = {
        "page": page,
        "nav": "dashboard",
        "fleet": fleet,
        "fleet_total": sum(row.devices for row in fleet),
        "fleet_chart": _fleet_chart(fleet),
        "approvals": list(submitted.order_by("-submitted_at", "-pk")[:SHOWN]),
        "approvals_count": submitted.count(),
        "runs": list(
            PublishRun.objects.filter(
                organization=org,
                status__in=[PublishRun.Status.PENDING, PublishRun.Status.RUNNING],
            ).order_by("-pk")[:SHOWN]
        ),
        "scheduled": list(
            change_set_list(org)
            .filter(status=ChangeSet.Status.APPROVED, publish_at__gt=timezone.now())
            .order_by("publish_at", "pk")[:SHOWN]
        ),
        # Only the columns shown: a release row also holds every file it serves, twice.
        "releases": list(
            Release.objects.filter(organization=org)
            .only("team_path", "revision", "created_at", "rollout_percent", "current")
            .order_by("-pk")[:SHOWN]
        ),
        "window": window,
        "codex_seen": codex_versions_seen(org),
        "problems": list(team_checks_with_problems(org)[:SHOWN]),
        "check_counts": team_check_counts(org),
        "org_findings": [stored_issue(f) for f in org_check.findings] if org_check else [],
    }
    return render(request, "web/dashboard.html", context)


def _fleet_health(page: OrgPage) -> list[StateCount]:
    """Devices per state, revoked included, in one grouped query; every state is listed, with
    0 where no device is in it, so the chart's bars keep their places."""
    counted = {
        row["state"]: row["devices"]
        for row in device_states(page.org, include_revoked=True)
        .values("state")
        .annotate(devices=Count("pk"))
        .order_by()
    }
    devices = reverse("web-devices", args=[page.org.slug])
    return [
        StateCount(state, counted.get(state, 0), f"{devices}?{urlencode({'state': state})}")
        for state in DEVICE_STATES
    ]


def _fleet_chart(fleet: list[StateCount]) -> dict[str, Any]:
    """The Chart.js configuration site.js draws; `links` make each bar open its device list."""
    return {
        "type": "bar",
        "data": {
            "labels": [row.state for row in fleet],
            "datasets": [
                {
                    "label": "Devices",
                    "data": [row.devices for row in fleet],
                    "backgroundColor": [STATE_COLOURS[row.state] for row in fleet],
                }
            ],
        },
        "options": {
            "plugins": {"legend": {"display": False}},
            "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}},
        },
        "links": [row.url for row in fleet],
    }


urlpatterns = [
    path("orgs/<slug:slug>/", organization_page, name="organization"),
]
