"""Editing a node from its page: each form saves into the editor's own draft change set
(`change_set_draft_edit`), and, as the editor types, is checked against the team's chain for
every Codex version of the window without writing anything."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from policyhub.accounts.permissions import Permission
from policyhub.changes.services import change_set_draft_edit
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.policies import window
from policyhub.policies.domain import Json, OrgPolicy
from policyhub.policies.resolution import Resolved
from policyhub.policies.validation import TeamValidation, errors_of, validate_team
from policyhub.web import team_forms
from policyhub.web.labels import codex_label
from policyhub.web.pages import OrgPage, is_htmx, org_page
from policyhub.web.views.team.node import (
    Editor,
    NodeScope,
    bound_editor,
    editors,
    in_document,
    node_scope,
    place,
    with_node,
)
from policyhub.web.views.team.page import node_render
from providers.base import Issue

ANCHORS = {
    "requirements": "edit-requirements",
    "config": "edit-config",
    "profile": "edit-profiles",
    "profile-delete": "edit-profiles",
    "mcp": "edit-mcp",
    "rules": "edit-rules",
    "toml": "edit-toml",
}


def _editable(page: OrgPage, path: str) -> NodeScope:
    """The node, if the actor may edit it: a team editor outside their subtree gets 403, as
    their pages offer them no form there."""
    scope = node_scope(page, path)
    if not page.can.edit(path):
        raise PermissionDenied(f"{page.actor.label} may not edit this node")
    return scope


def _node_table(raw: Json, path: str) -> Json:
    """The node's tables inside the policy document (the root's are the document's own)."""
    if not path:
        return raw
    table = raw.get("teams", {}).get(path)
    if table is None:
        raise ApplicationError(
            f"your draft change set deletes team {path}; discard it to edit the team",
            [Issue("error", f"teams.{path}", "is not in the draft")],
        )
    return table  # type: ignore[no-any-return]


def _back(scope: NodeScope, section: str) -> HttpResponse:
    page = scope.page
    where = (
        reverse("team", args=[page.org.slug, scope.path])
        if scope.path
        else reverse("web-root", args=[page.org.slug])
    )
    return redirect(f"{where}#{ANCHORS.get(section, 'edit')}")


def _save(
    request: HttpRequest, scope: NodeScope, section: str, editor: Editor | None, change: Any
) -> HttpResponse:
    """Apply `change(table)` to the node in the editor's draft; the refusal goes beside the
    form's fields, the page keeping what was typed."""
    page = scope.page

    def edit(raw: Json) -> None:
        change(_node_table(raw, scope.path))

    try:
        draft = change_set_draft_edit(
            actor=page.actor,
            organization=page.org,
            edit=edit,
            reason=request.POST.get("reason", "")[:2000],
        )
    except NotPermitted:
        raise
    except ApplicationError as exc:
        if editor is None:
            messages.error(request, exc.message)
            for issue in exc.issues:
                messages.error(request, f"{issue.path}: {issue.message}")
            return _back(scope, section)
        refused = place(scope, editor, exc)
        return node_render(request, scope, posted=(section, editor), refused=refused, status=400)
    messages.success(
        request,
        f"Saved into your draft change set {draft.pk}. Nothing changes for any machine until it "
        "is submitted, approved and published.",
    )
    return _back(scope, section)


def _edit(request: HttpRequest, page: OrgPage, path: str, section: str) -> HttpResponse:
    scope = _editable(page, path)
    if section == "profile-delete":
        name = request.POST.get("name", "")

        def remove(table: Json) -> None:
            profiles = dict(table.get("profiles", {}))
            if profiles.pop(name, None) is None:
                raise ApplicationError(f"this node has no profile {name!r}")
            if profiles:
                table["profiles"] = profiles
            else:
                table.pop("profiles", None)

        return _save(request, scope, section, None, remove)
    add_row = request.POST.get("action") == "add-row"
    editor = bound_editor(scope, section, request.POST, add_row=add_row)
    if add_row:
        # One more empty row; nothing is saved until the form is.
        if is_htmx(request):
            return render(
                request,
                f"web/team/_{section}.html",
                {"page": page, "scope": scope, "editors": editors(scope, (section, editor))},
            )
        return node_render(request, scope, posted=(section, editor))
    if not editor.is_valid():
        return node_render(request, scope, posted=(section, editor), status=400)
    return _save(request, scope, section, editor, editor.apply)


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def team_edit(request: HttpRequest, page: OrgPage, path: str, section: str) -> HttpResponse:
    """Save one form of a team's node into the editor's draft change set."""
    return _edit(request, page, path, section)


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def root_edit(request: HttpRequest, page: OrgPage, section: str) -> HttpResponse:
    """Save one form of the organisation's own node into the editor's draft change set."""
    return _edit(request, page, "", section)


# --- live validation -----------------------------------------------------------------------


def _validate(request: HttpRequest, page: OrgPage, path: str, section: str) -> HttpResponse:
    scope = _editable(page, path)
    editor = bound_editor(scope, section, request.POST)
    context: dict[str, Any] = {"page": page, "scope": scope, "section": section}
    if editor.is_valid():
        table = team_forms.node_table(team_forms.table_node(scope.shown))
        editor.apply(table)
        # Checked with the endpoints of the editor's draft, where saving it checks it.
        drafted = replace(scope.policy, endpoints=scope.edit_endpoints)
        candidate = with_node(drafted, path, team_forms.table_node(table))
        validation = validate_team(candidate, path)
        issues = in_document(validation.issues)
        errors = errors_of(issues)
        placed = place(scope, editor, ApplicationError("", errors))
        context |= {
            "checked": True,
            "errors": errors,
            "unplaced": placed.other,
            "warnings": [i for i in issues if i.severity == "warning"],
            "segments": _segments(candidate, path, validation),
        }
    context["editors"] = editors(scope, (section, editor))
    context["forms"] = _forms_of(editor)
    return render(request, "web/team/_live.html", context)


def _segments(
    policy: OrgPolicy, path: str, validation: TeamValidation
) -> list[tuple[str, list[Issue] | None]]:
    """The window's Codex version sets, each with the findings only its versions have (None
    where the node could not be resolved to check them)."""
    if errors_of(window.window_issues(policy.codex)):
        return []
    resolved = validation.resolved
    unresolved = resolved == Resolved() and bool(validation.errors)
    label = path or policy.root_label
    return [
        (
            codex_label([segment]),
            None
            if unresolved or errors_of(resolved.issues)
            else in_document(window.team_window_issues(policy, resolved, [segment], label)),
        )
        for segment in window.team_segments(policy, resolved)
    ]


def _forms_of(editor: Editor) -> list[Any]:
    rows = getattr(editor, "rows", None)
    if rows is not None:
        return list(rows.forms)
    return [editor.form]  # type: ignore[attr-defined]


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def team_validate(request: HttpRequest, page: OrgPage, path: str, section: str) -> HttpResponse:
    """Check a form of a team's node as typed (htmx): findings beside the fields and for each
    Codex version set of the window; nothing is written."""
    return _validate(request, page, path, section)


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def root_validate(request: HttpRequest, page: OrgPage, section: str) -> HttpResponse:
    """Check a form of the organisation's own node as typed; nothing is written."""
    return _validate(request, page, "", section)
