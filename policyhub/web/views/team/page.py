"""One team's page, and the organisation's own node: what the team gets and which node set
each value, the files Codex would receive for each Codex version set, what is published and
how it differs, the team's devices and its child teams; an editor edits the node here.

Everything is read for this node and its chain only (`team_policy`): the page costs the same
in an organisation of ten teams or ten thousand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from policyhub.errors import ApplicationError
from policyhub.fleet.selectors import device_states
from policyhub.policies.resolution import Provenance, Resolved
from policyhub.policies.validation import TeamValidation, validate_team
from policyhub.releases.selectors import current_release_of_team
from policyhub.rendering.render import render_release
from policyhub.teams.models import Team
from policyhub.web.pages import OrgPage, Refusal, org_page
from policyhub.web.views.team import files
from policyhub.web.views.team.node import Editor, FormEditor, NodeScope, editors, node_scope

DEVICES_SHOWN = 20
CHILDREN_SHOWN = 50
# Plan lines of the editor's draft shown in its banner; the change set's page has them all.
PLAN_SHOWN = 20


def shown(value: object) -> str:
    """A value as an admin writes it: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Row:
    """One effective value and the node that set it."""

    section: str
    key: str
    value: str
    origin: Provenance | None

    @property
    def narrowed(self) -> bool:
        return self.origin is not None and self.origin.how == "narrowed"


def _rows(section: str, values: dict[str, Any], origins: dict[str, Provenance]) -> list[Row]:
    rows = []
    for key, value in sorted(values.items()):
        if key == "features" and isinstance(value, dict):
            # Each feature was set by a node of its own.
            rows += [
                Row(section, f"features.{name}", shown(flag), origins.get(f"features.{name}"))
                for name, flag in sorted(value.items())
            ]
        else:
            rows.append(Row(section, key, shown(value), origins.get(key)))
    return rows


def effective(resolved: Resolved) -> dict[str, Any]:
    return {
        "rows": _rows("requirements", resolved.requirements, resolved.requirements_from)
        + _rows("config", resolved.config, resolved.config_from),
        "profiles": [
            (name, _rows("profile", settings, resolved.profiles_from[name]))
            for name, settings in sorted(resolved.profiles.items())
        ],
        "mcp_servers": [
            (name, shown(server), resolved.mcp_servers_from.get(name))
            for name, server in sorted(resolved.mcp_servers.items())
        ],
    }


def _children(page: OrgPage, path: str) -> list[Team]:
    found = Team.objects.filter(organization=page.org)
    found = found.filter(parent__path=path) if path else found.filter(parent__isnull=True)
    return list(found.only("path", "name").order_by("path")[: CHILDREN_SHOWN + 1])


def _files(scope: NodeScope, validation: TeamValidation) -> dict[str, Any]:
    """The unpublished sets, the published release and the diff between them."""
    unpublished: list[files.FileSet] = []
    if not validation.errors:
        try:
            rendered = render_release(
                scope.policy, scope.path, revision=files.UNPUBLISHED, validation=validation
            )
            unpublished = files.unpublished_sets(rendered)
        except ApplicationError:
            unpublished = []
    release = current_release_of_team(scope.page.org, scope.path)
    published = files.published_sets(release) if release is not None else []
    diff = (
        files.sets_diff(published, unpublished, release.revision)
        if release is not None and unpublished
        else []
    )
    return {"unpublished": unpublished, "release": release, "published": published, "diff": diff}


def node_render(
    request: HttpRequest,
    scope: NodeScope,
    *,
    posted: tuple[str, Editor] | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    """The page of `scope`'s node; after a refused or unfinished POST, with the posted form as
    it was typed and the refusal beside it."""
    page, path = scope.page, scope.path
    validation = validate_team(scope.policy, path)
    chain = [label for label, _ in scope.policy.chain(path)]
    children = _children(page, path)
    context: dict[str, Any] = {
        "page": page,
        "nav": "teams",
        "scope": scope,
        "team": scope.policy.teams[path] if path else None,
        "chain": chain,
        "ancestors": chain[1:-1] if path else [],
        "validation": validation,
        "effective": effective(validation.resolved),
        "children": children[:CHILDREN_SHOWN],
        "more_children": len(children) > CHILDREN_SHOWN,
        "can_edit": page.can.edit(path),
        "posted_section": posted[0] if posted else "",
        "refused": refused,
    }
    if posted is not None and refused is not None:
        # Shown above the form that was sent.
        editor = posted[1]
        target = editor.form if isinstance(editor, FormEditor) else editor
        target.refused = refused  # type: ignore[union-attr]
    if context["can_edit"]:
        context["editors"] = editors(scope, posted)
        if scope.draft is not None:
            context["draft_plan"] = scope.draft.plan[:PLAN_SHOWN]
            context["draft_more"] = max(len(scope.draft.plan) - PLAN_SHOWN, 0)
    if path:
        context |= _files(scope, validation)
        found = (
            device_states(page.org)
            .filter(team__path=path)
            .order_by("hostname", "id")[: DEVICES_SHOWN + 1]
        )
        devices = list(found)
        context["devices"] = devices[:DEVICES_SHOWN]
        context["more_devices"] = len(devices) > DEVICES_SHOWN
    return render(request, "web/team/page.html", context, status=status)


@org_page()
def team_page(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """One team: its effective policy with the node that set each value, the files each Codex
    version set gets, what is published and the diff to it, its devices and child teams; an
    editor edits the team's own node (into their draft change set)."""
    return node_render(request, node_scope(page, path))


@org_page()
def root_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The organisation's own node: what it sets for every team, checked on its own; an editor
    of the whole organisation edits it here (into their draft change set)."""
    return node_render(request, node_scope(page, ""))
