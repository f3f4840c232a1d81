"""A team's history: its policy, files and release as of any moment (replayed from the audit
trail), and its releases newest first with the publish run, change sets and policy changes
behind each; the changes are shown to those who may read the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from policyhub.accounts.permissions import Permission
from policyhub.audit.models import AuditEvent
from policyhub.errors import ApplicationError
from policyhub.history.selectors import (
    ReleaseChanges,
    TeamAsOf,
    team_as_of,
    team_releases,
    timeline_changes,
)
from policyhub.releases.models import Release
from policyhub.teams.models import Team
from policyhub.web.pages import OrgPage, Refusal, keyset_page, org_page, refusal
from policyhub.web.views.team import files
from policyhub.web.views.team.page import effective, shown

# Timeline entries a page shows: each reads up to CHANGES_SHOWN changes.
TIMELINE_PAGE = 20


class AsOfForm(forms.Form):
    at = forms.DateTimeField(
        label="As of (UTC)",
        input_formats=[
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M:%S.%f",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d",
        ],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}),
        help_text="A date, or a date and time, in UTC.",
    )


@dataclass(frozen=True)
class ChangeShown:
    """A change behind a release, its values as an admin writes them."""

    event: AuditEvent
    before: str
    after: str


@dataclass(frozen=True)
class EntryShown:
    """A release of the timeline and the changes behind it, as the page shows them."""

    entry: ReleaseChanges
    changes: list[ChangeShown]


def _value(value: object) -> str:
    return "(unset)" if value is None else shown(value)


def _entries(entries: list[ReleaseChanges]) -> list[EntryShown]:
    return [
        EntryShown(
            entry,
            [ChangeShown(e, _value(e.before), _value(e.after)) for e in entry.changes],
        )
        for entry in entries
    ]


def _as_of(page: OrgPage, found: TeamAsOf) -> dict[str, Any]:
    """What the page shows of the team then."""
    then = found.then
    # For the link to the diff between the release then and the one current now.
    current = (
        Release.objects.filter(organization=page.org, team_path=then.path, current=True)
        .values_list("revision", flat=True)
        .first()
        if found.release is not None
        else None
    )
    return {
        "then": then,
        "spec": then.policy.teams[then.path],
        "chain": [label for label, _ in then.policy.chain(then.path)],
        "validation": found.validation,
        "effective": effective(found.validation.resolved),
        "sets": [
            files.FileSet(list(v.spans), {n: b.decode() for n, b in v.team.files.items()})
            for v in found.variants
        ],
        "render_error": found.render_error,
        "release": found.release,
        "current_revision": current,
    }


@org_page()
def team_history_page(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """The team as of the moment asked for (`?at=`), and its timeline a page at a time."""
    team = Team.objects.filter(organization=page.org, path=path).only("name", "path").first()
    if team is None and not Release.objects.filter(organization=page.org, team_path=path).exists():
        raise Http404("no such team")
    form = AsOfForm(request.GET if request.GET.get("at") else None)
    context: dict[str, Any] = {"page": page, "nav": "teams", "team": team, "team_path": path}
    found: Refusal | None = None
    if form.is_bound and form.is_valid():
        try:
            context |= _as_of(page, team_as_of(page.org, path, form.cleaned_data["at"]))
        except ApplicationError as refused:
            found = refusal(refused, ["at"]).onto(form)
    timeline = keyset_page(
        request,
        team_releases(page.org, path),
        key="revision",
        descending=True,
        size=TIMELINE_PAGE,
        cast=int,
    )
    audits = Permission.AUDIT_VIEW in page.access.permissions
    entries = (
        timeline_changes(page.org, path, timeline.items)
        if audits
        else [ReleaseChanges(release, None, None, [], False) for release in timeline.items]
    )
    context |= {
        "form": form,
        "refused": found,
        "timeline": timeline,
        "entries": _entries(entries),
        "audits": audits,
    }
    return render(request, "web/team/history.html", context)
