"""The team tree: a member finds a team by name, path, validation state or the provider endpoint
it uses, 50 teams at a time; an editor adds, renames and deletes teams (into their unpublished
changes, a draft change set, reviewed and published like every policy edit) and moves a team
with its subtree (directly: a move is not an edit of the policy document), each delete and move
after seeing what it would touch.

The tree shows the validation stored by the last write of the policy, and counts devices for the
teams on the page only: a page costs the same at 10 teams or 10,000.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import django_filters
from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from policyhub.accounts.permissions import Permission
from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import change_set_draft_of
from policyhub.changes.services import change_set_draft_edit
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.fleet.models import Device
from policyhub.policies.document import SLUG_RE
from policyhub.policies.domain import Json
from policyhub.policies.selectors import (
    CHECK_STATES,
    endpoint_list,
    teams_checked,
    teams_in_state,
    teams_using_endpoint,
)
from policyhub.policies.services import team_move
from policyhub.releases.models import Release
from policyhub.teams.models import Team
from policyhub.teams.selectors import memberships_scoped_to, team_subtrees
from policyhub.teams.services import team_delete_check
from policyhub.validators import plain_text
from policyhub.web.pages import OrgPage, Refusal, keyset_page, org_page, refusal
from providers.base import Issue

# How many of a subtree's paths and scoped editors an impact page lists (it counts them all).
IMPACT_SHOWN = 10
STATE_LABELS = {"errors": "with errors", "warnings": "with warnings only", "valid": "valid"}
STATE_CHOICES = [(state, STATE_LABELS[state]) for state in CHECK_STATES]


# --- the tree -----------------------------------------------------------------------------------


class TeamTreeFilter(django_filters.FilterSet):
    """The tree's filters: part of a name or path, a validation state, an endpoint used."""

    q = django_filters.CharFilter(method="matching", max_length=200, validators=[plain_text])
    state = django_filters.ChoiceFilter(method="in_state", choices=STATE_CHOICES)
    endpoint = django_filters.ChoiceFilter(method="using", choices=[])

    class Meta:
        model = Team
        fields: list[str] = []

    def __init__(self, *args: Any, endpoints: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters["endpoint"].extra["choices"] = [(name, name) for name in endpoints]

    def matching(self, found: QuerySet[Team], name: str, value: str) -> QuerySet[Team]:
        return found.filter(Q(name__icontains=value) | Q(path__icontains=value))

    def in_state(self, found: QuerySet[Team], name: str, value: str) -> QuerySet[Team]:
        return teams_in_state(found, value)

    def using(self, found: QuerySet[Team], name: str, value: str) -> QuerySet[Team]:
        return teams_using_endpoint(found, value)


@dataclass(frozen=True)
class TeamRow:
    """One line of the tree."""

    team: Team
    devices: int
    editable: bool

    @property
    def depth(self) -> int:
        return self.team.path.count("/")


@org_page()
def teams_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The tree in path order, indented by depth: each team's validation state and enrolled
    devices, with search and filters; editors get the controls for the teams they may edit."""
    endpoints = list(endpoint_list(page.org).values_list("name", flat=True))
    filters = TeamTreeFilter(request.GET, queryset=teams_checked(page.org), endpoints=endpoints)
    found = filters.qs if filters.is_valid() else Team.objects.none()
    teams = keyset_page(request, found, key="path")
    devices = dict(
        Device.objects.filter(
            organization=page.org, team__in=[t.pk for t in teams.items], revoked_at__isnull=True
        )
        .values_list("team_id")
        .annotate(count=Count("pk"))
        .order_by()
    )
    rows = [
        TeamRow(team, devices.get(team.pk, 0), page.can.edit(team.path)) for team in teams.items
    ]
    filtered = any(request.GET.get(name) for name in ("q", "state", "endpoint"))
    return render(
        request,
        "web/teams/tree.html",
        {
            "page": page,
            "nav": "teams",
            "filters": filters,
            "given": request.GET,
            "endpoints": endpoints,
            "states": STATE_CHOICES,
            "rows": rows,
            "teams": teams,
            "filtered": filtered,
            "draft": _draft(page),
            "can_create": page.can.policy__edit,
        },
    )


def _draft(page: OrgPage) -> ChangeSet | None:
    """The person's unpublished changes, which their edits here go into."""
    if not page.can.policy__edit or page.actor.user is None:
        return None
    return change_set_draft_of(page.org, page.actor.user.pk)


def _team(page: OrgPage, team_path: str) -> Team:
    found = Team.objects.filter(organization=page.org, path=team_path).first()
    if found is None:
        raise Http404("no such team")
    return found


def _may_edit(page: OrgPage, node: str) -> None:
    """403 for a page whose only purpose is an edit the actor may not make (a viewer, or a team
    editor outside their subtree): its form is not offered, and a forged POST fails the same."""
    if not page.can.edit(node):
        raise PermissionDenied(f"{page.actor.label} may not change {node or 'the organisation'}")


def _saved(request: HttpRequest, page: OrgPage, draft: ChangeSet, what: str) -> HttpResponse:
    url = reverse("web-change-set", args=[page.org.slug, draft.pk])
    messages.success(
        request,
        format_html(
            '{} into your unpublished changes: <a href="{}">change set {}</a> (review, submit '
            "and publish it there).",
            what,
            url,
            draft.pk,
        ),
    )
    return redirect("web-teams", page.org.slug)


def _into_draft(page: OrgPage, edit: Callable[[Json], None], reason: str) -> ChangeSet:
    return change_set_draft_edit(actor=page.actor, organization=page.org, edit=edit, reason=reason)


def _refused(exc: ApplicationError, form_fields: Iterable[str], renamed: dict[str, str]) -> Refusal:
    """A refusal shown beside the form's fields, document paths (`teams.platform/ci.name`)
    included."""
    return refusal(exc, form_fields, renamed)


def _reason_field() -> forms.CharField:
    return forms.CharField(
        max_length=2000,
        required=False,
        validators=[plain_text],
        label="Reason",
        help_text="Why (kept in the audit trail).",
    )


# --- create and rename --------------------------------------------------------------------------


def _slug(value: str) -> None:
    if not SLUG_RE.match(value):
        raise forms.ValidationError("use lowercase letters, digits and '-', starting with one")


class TeamCreateForm(forms.Form):
    parent = forms.CharField(
        max_length=1024,
        required=False,
        validators=[plain_text],
        label="Parent team",
        help_text="The path of the team it goes under (platform/ci); empty for the top level.",
    )
    slug = forms.CharField(
        max_length=63,
        validators=[_slug],
        label="Slug",
        help_text="Its part of the path: lowercase letters, digits and '-'.",
    )
    name = forms.CharField(
        max_length=200,
        required=False,
        validators=[plain_text],
        label="Name",
        help_text="As people see it; the slug when empty.",
    )
    reason = _reason_field()

    def clean_parent(self) -> str:
        return str(self.cleaned_data["parent"]).strip().strip("/")


@org_page(post=Permission.POLICY_EDIT)
def team_new(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """Add a team under a parent (or at the top level), into the person's unpublished changes."""
    if not page.can.policy__edit:
        raise PermissionDenied(f"{page.actor.label} may not change teams")
    refused = Refusal("")
    if request.method == "POST":
        form = TeamCreateForm(request.POST)
        if form.is_valid():
            given = form.cleaned_data
            parent, slug = given["parent"], given["slug"]
            team_path = f"{parent}/{slug}" if parent else slug

            def add(raw: Json) -> None:
                teams = raw.setdefault("teams", {})
                if parent and parent not in teams:
                    raise ApplicationError(
                        f"no team {parent}", [Issue("error", "parent", f"no team {parent!r}")]
                    )
                if team_path in teams:
                    raise ApplicationError(
                        f"team {team_path} exists",
                        [Issue("error", "slug", f"team {team_path!r} exists")],
                    )
                teams[team_path] = {"name": given["name"] or slug}

            try:
                draft = _into_draft(page, add, given["reason"])
            except NotPermitted:
                raise
            except ApplicationError as exc:
                refused = _refused(
                    exc,
                    form.fields,
                    {f"teams.{team_path}": "slug", f"teams.{team_path}.name": "name"},
                )
            else:
                return _saved(request, page, draft, f"Team {team_path} added")
    else:
        form = TeamCreateForm(initial={"parent": request.GET.get("parent", page.access.scope)})
    return render(
        request,
        "web/teams/new.html",
        {"page": page, "nav": "teams", "form": form, "refused": refused},
        # Reached by a POST only when it was refused: success redirects.
        status=400 if request.method == "POST" else 200,
    )


class TeamRenameForm(forms.Form):
    name = forms.CharField(max_length=200, validators=[plain_text], label="Name")
    reason = _reason_field()


@org_page(post=Permission.POLICY_EDIT)
def team_rename_page(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """Give a team another name (its path, and so its address, stays), into the person's
    unpublished changes."""
    team = _team(page, path)
    _may_edit(page, team.path)
    refused = Refusal("")
    if request.method == "POST":
        form = TeamRenameForm(request.POST)
        if form.is_valid():
            name = form.cleaned_data["name"]

            def rename(raw: Json) -> None:
                spec = raw.get("teams", {}).get(team.path)
                if spec is None:
                    raise ApplicationError(
                        f"your unpublished changes delete team {team.path}",
                        [Issue("error", "name", "the team is deleted in your unpublished changes")],
                    )
                spec["name"] = name

            try:
                draft = _into_draft(page, rename, form.cleaned_data["reason"])
            except NotPermitted:
                raise
            except ApplicationError as exc:
                refused = _refused(exc, form.fields, {f"teams.{team.path}.name": "name"})
            else:
                return _saved(request, page, draft, f"Team {team.path} renamed to {name}")
    else:
        form = TeamRenameForm(initial={"name": team.name})
    return render(
        request,
        "web/teams/rename.html",
        {"page": page, "nav": "teams", "team": team, "form": form, "refused": refused},
        # Reached by a POST only when it was refused: success redirects.
        status=400 if request.method == "POST" else 200,
    )


# --- delete and move: their impact first ---------------------------------------------------------


@dataclass
class Impact:
    """What deleting or moving a team touches: its subtree, the devices enrolled there, the
    team editors scoped inside it, whether it has releases; and what refuses the action now."""

    teams: int
    first_paths: list[str]
    devices: int
    editors: list[tuple[str, str]]
    editors_count: int
    has_releases: bool
    blockers: list[str] = field(default_factory=list)

    @property
    def more_paths(self) -> int:
        return self.teams - len(self.first_paths)


def _impact(page: OrgPage, team: Team) -> Impact:
    subtree = team_subtrees(page.org, [team.path])
    scoped = memberships_scoped_to(subtree)
    releases = Release.objects.filter(organization=page.org).filter(
        Q(team_path=team.path) | Q(team_path__startswith=f"{team.path}/")
    )
    return Impact(
        teams=subtree.count(),
        first_paths=list(subtree.order_by("path").values_list("path", flat=True)[:IMPACT_SHOWN]),
        devices=Device.objects.filter(
            organization=page.org, team__in=subtree, revoked_at__isnull=True
        ).count(),
        editors=[
            (m.user.email or m.user.get_username(), m.team.path if m.team else "")
            for m in scoped[:IMPACT_SHOWN]
        ],
        editors_count=scoped.count(),
        has_releases=releases.exists(),
    )


class TeamDeleteForm(forms.Form):
    reason = _reason_field()


@org_page(post=Permission.POLICY_EDIT)
def team_delete_page(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """See what deleting a team and its subtree would touch and what refuses it; confirm to put
    the deletion into the person's unpublished changes."""
    team = _team(page, path)
    _may_edit(page, team.path)
    refused = Refusal("")
    form = TeamDeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():

        def remove(raw: Json) -> None:
            teams = raw.get("teams", {})
            for below in [p for p in teams if p == team.path or p.startswith(f"{team.path}/")]:
                del teams[below]

        try:
            draft = _into_draft(page, remove, form.cleaned_data["reason"])
        except NotPermitted:
            raise
        except ApplicationError as exc:
            refused = refusal(exc, form.fields)
        else:
            return _saved(request, page, draft, f"Deletion of team {team.path}")
    impact = _impact(page, team)
    try:
        team_delete_check(organization=page.org, paths=[team.path])
    except ApplicationError as exc:
        impact.blockers = [exc.message]
    return render(
        request,
        "web/teams/delete.html",
        {
            "page": page,
            "nav": "teams",
            "team": team,
            "impact": impact,
            "form": form,
            "refused": refused,
        },
        # Reached by a POST only when it was refused: success redirects.
        status=400 if request.method == "POST" else 200,
    )


class TeamMoveForm(forms.Form):
    parent = forms.CharField(
        max_length=1024,
        required=False,
        validators=[plain_text],
        label="New parent team",
        help_text="The path of the team to move it under; empty for the top level.",
    )
    reason = _reason_field()

    def clean_parent(self) -> str:
        return str(self.cleaned_data["parent"]).strip().strip("/")


@org_page(post=Permission.POLICY_EDIT)
def team_move_page(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """See what moving a team with its subtree would touch and what refuses it; choose the new
    parent and move it (at once: the live tree changes, the policy document does not)."""
    team = _team(page, path)
    _may_edit(page, team.path)
    refused = Refusal("")
    if request.method == "POST":
        form = TeamMoveForm(request.POST)
        if form.is_valid():
            parent = form.cleaned_data["parent"] or None
            try:
                moved = team_move(
                    team=team,
                    parent_path=parent,
                    actor=page.actor,
                    reason=form.cleaned_data["reason"],
                )
            except NotPermitted:
                raise
            except ApplicationError as exc:
                refused = refusal(exc, form.fields)
            else:
                messages.success(request, f"Team {path} moved to {moved.path}.")
                return redirect("web-teams", page.org.slug)
    else:
        parent_path = team.path.rsplit("/", 1)[0] if "/" in team.path else ""
        form = TeamMoveForm(initial={"parent": parent_path})
    impact = _impact(page, team)
    if impact.devices:
        impact.blockers.append(
            f"{impact.devices} device(s) are enrolled in the subtree: its releases are addressed "
            "by path, so move or revoke them first"
        )
    if page.org.requires_approval:
        impact.blockers.append(
            f"{page.org.slug} requires approval, and a move changes what the subtree inherits: "
            "it is not made directly"
        )
    return render(
        request,
        "web/teams/move.html",
        {
            "page": page,
            "nav": "teams",
            "team": team,
            "impact": impact,
            "form": form,
            "refused": refused,
        },
        # Reached by a POST only when it was refused: success redirects.
        status=400 if request.method == "POST" else 200,
    )


urlpatterns = [
    path("orgs/<slug:slug>/teams/", teams_page, name="web-teams"),
    path("orgs/<slug:slug>/teams/-/new/", team_new, name="web-team-new"),
    path("orgs/<slug:slug>/teams/<path:path>/-/rename/", team_rename_page, name="web-team-rename"),
    path("orgs/<slug:slug>/teams/<path:path>/-/move/", team_move_page, name="web-team-move"),
    path("orgs/<slug:slug>/teams/<path:path>/-/delete/", team_delete_page, name="web-team-delete"),
]
