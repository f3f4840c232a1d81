"""One policy node as its page edits it: the chain that shapes it (`team_policy`, never the
whole organisation), the node as the editor sees it (their draft change set's, else the live
one), the editors of its sections, and findings placed beside the fields they name."""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Protocol

from django import forms
from django.http import Http404, QueryDict
from django.urls import reverse

from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import (
    change_set_draft_of,
    change_set_endpoints,
    change_set_node_table,
)
from policyhub.errors import ApplicationError
from policyhub.policies.document import NODE_SECTIONS, document_path
from policyhub.policies.domain import Endpoint, Json, Node, OrgPolicy
from policyhub.policies.selectors import team_policy
from policyhub.web import team_forms
from policyhub.web.pages import OrgPage, Refusal, refusal
from providers.base import Issue

# The sections one form edits, as they appear in URLs.
SECTIONS = ("requirements", "config", "profile", "mcp", "rules", "toml")


class Editor(Protocol):
    def is_valid(self) -> bool: ...

    def apply(self, table: Json) -> None: ...

    def places(self) -> dict[str, team_forms.Place]: ...


@dataclass
class NodeScope:
    """A node of the organisation ("" for its own) and what its page needs of the policy."""

    page: OrgPage
    path: str
    policy: OrgPolicy
    draft: ChangeSet | None
    # The node's tables as the editor sees them: in their draft, else live.
    shown: Json
    # The editor's draft has no such team (it deletes it): the forms show the live node.
    missing_in_draft: bool = False
    endpoints: list[str] = field(default_factory=list)
    # The endpoints an edit is checked against: the editor's draft's where they have one (an
    # endpoint they added there can be named at once), else the live ones.
    edit_endpoints: Mapping[str, Endpoint] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """Where the node's tables are in the policy document."""
        return f"teams.{self.path}." if self.path else ""

    @property
    def label(self) -> str:
        return self.path or self.policy.root_label

    def _urls(self, team_route: str, root_route: str) -> dict[str, str]:
        slug = self.page.org.slug
        return {
            section.replace("-", "_"): (
                reverse(team_route, args=[slug, self.path, section])
                if self.path
                else reverse(root_route, args=[slug, section])
            )
            for section in (*SECTIONS, "profile-delete")
        }

    @cached_property
    def edit_urls(self) -> dict[str, str]:
        """Where each form saves, by section (`profile_delete` for "profile-delete")."""
        return self._urls("team-edit", "web-root-edit")

    @cached_property
    def validate_urls(self) -> dict[str, str]:
        """Where each form is checked as it is typed."""
        return self._urls("team-validate", "web-root-validate")

    @property
    def live(self) -> Node:
        return self.policy.teams[self.path].node if self.path else self.policy.root


def node_scope(page: OrgPage, path: str) -> NodeScope:
    """The node at `path` (404 for no such team) with the editor's draft, if they have one."""
    policy = team_policy(page.org, path)
    if policy is None:
        raise Http404("no such team")
    draft = None
    if page.actor.user is not None and page.can.edit(path):
        draft = change_set_draft_of(page.org, page.actor.user.pk)
    scope = NodeScope(page, path, policy, draft, {}, edit_endpoints=policy.endpoints)
    scope.shown = team_forms.node_table(scope.live)
    if draft is not None:
        scope.edit_endpoints = change_set_endpoints(draft)
        # The draft is a whole document; the node is one of its tables, read alone.
        table = change_set_node_table(draft, path)
        if table is None:
            scope.missing_in_draft = True
        else:
            scope.shown = {s: deepcopy(table[s]) for s in NODE_SECTIONS if table.get(s)}
    scope.endpoints = sorted(scope.edit_endpoints)
    return scope


def with_node(policy: OrgPolicy, path: str, node: Node) -> OrgPolicy:
    """`policy` with the node at `path` replaced (the chain's other nodes as they are)."""
    if not path:
        return replace(policy, root=node)
    team = policy.teams[path]
    return replace(policy, teams={**policy.teams, path: replace(team, node=node)})


# --- editors ------------------------------------------------------------------------------------


@dataclass
class Editors:
    """Every form of the node's editor, unbound but for the one that was posted."""

    requirements: team_forms.RequirementsForm
    config: team_forms.ConfigForm
    profiles: list[team_forms.ProfileForm]
    new_profile: team_forms.ProfileForm
    mcp: team_forms.McpEditor
    rules: team_forms.RulesEditor
    toml: team_forms.TomlForm


def _profile_form(
    scope: NodeScope, original: str, data: QueryDict | None = None
) -> team_forms.ProfileForm:
    profiles = scope.shown.get("profiles", {})
    return team_forms.ProfileForm(
        data,
        original=original,
        existing=profiles,
        current=profiles.get(original, {}),
        endpoints=scope.endpoints,
        prefix=f"profile-{original}" if original else "profile-new",
    )


def bound_editor(
    scope: NodeScope, section: str, data: QueryDict, *, add_row: bool = False
) -> Editor:
    """The posted form of `section` over the node as the editor sees it."""
    shown = scope.shown
    if section == "requirements":
        return FormEditor(
            team_forms.RequirementsForm(
                data,
                current=shown.get("requirements", {}),
                endpoints=scope.endpoints,
                prefix="requirements",
            )
        )
    if section == "config":
        return FormEditor(
            team_forms.ConfigForm(
                data, current=shown.get("config", {}), endpoints=scope.endpoints, prefix="config"
            )
        )
    if section == "profile":
        original = data.get("profile", "")
        if original and original not in shown.get("profiles", {}):
            raise Http404("no such profile")
        return FormEditor(_profile_form(scope, original, data))
    if section == "mcp":
        return team_forms.McpEditor(data, current=shown.get("mcp_servers", {}), add_row=add_row)
    if section == "rules":
        return team_forms.RulesEditor(data, current=shown.get("requirements", {}), add_row=add_row)
    if section == "toml":
        return FormEditor(team_forms.TomlForm(data, current=shown))
    raise Http404("no such section")


@dataclass
class FormEditor:
    """One Django form as an editor."""

    form: forms.Form

    def is_valid(self) -> bool:
        return self.form.is_valid()

    def apply(self, table: Json) -> None:
        self.form.apply(table)  # type: ignore[attr-defined]

    def places(self) -> dict[str, team_forms.Place]:
        return self.form.places()  # type: ignore[attr-defined, no-any-return]


def editors(scope: NodeScope, posted: tuple[str, Editor] | None = None) -> Editors:
    """The node's forms; the posted one (section and editor) in place of its unbound form."""
    shown = scope.shown
    found = Editors(
        requirements=team_forms.RequirementsForm(
            current=shown.get("requirements", {}), endpoints=scope.endpoints, prefix="requirements"
        ),
        config=team_forms.ConfigForm(
            current=shown.get("config", {}), endpoints=scope.endpoints, prefix="config"
        ),
        profiles=[_profile_form(scope, name) for name in sorted(shown.get("profiles", {}))],
        new_profile=_profile_form(scope, ""),
        mcp=team_forms.McpEditor(None, current=shown.get("mcp_servers", {})),
        rules=team_forms.RulesEditor(None, current=shown.get("requirements", {})),
        toml=team_forms.TomlForm(current=shown),
    )
    if posted is None:
        return found
    editor = posted[1]
    if isinstance(editor, FormEditor):
        form = editor.form
        if isinstance(form, team_forms.ProfileForm) and form.original:
            found.profiles = [form if p.original == form.original else p for p in found.profiles]
        elif isinstance(form, team_forms.ProfileForm):
            found.new_profile = form
        elif isinstance(form, team_forms.RequirementsForm):
            found.requirements = form
        elif isinstance(form, team_forms.ConfigForm):
            found.config = form
        elif isinstance(form, team_forms.TomlForm):
            found.toml = form
    elif isinstance(editor, team_forms.McpEditor):
        found.mcp = editor
    elif isinstance(editor, team_forms.RulesEditor):
        found.rules = editor
    return found


# --- findings beside their fields ----------------------------------------------------------


def _relative(scope: NodeScope, path: str) -> str | None:
    """A document path relative to the node, or None when it is elsewhere."""
    if scope.path:
        return path[len(scope.prefix) :] if path.startswith(scope.prefix) else None
    head = path.split(".", 1)[0].split("[", 1)[0]
    return path if head in NODE_SECTIONS else None


def _field_path(places: Mapping[str, Any], relative: str) -> str | None:
    """The longest field path that `relative` is, or lies inside."""
    best = None
    for candidate in places:
        inside = relative == candidate or relative.startswith((f"{candidate}.", f"{candidate}["))
        if inside and (best is None or len(candidate) > len(best)):
            best = candidate
    return best


def place(scope: NodeScope, editor: Editor, refused: ApplicationError) -> Refusal:
    """Put each error of a refusal (document paths) beside the editor's field it names; the
    rest, with its path, goes above the form."""
    places = editor.places()
    qualifies = isinstance(editor, FormEditor) and getattr(editor.form, "qualifies", False)
    issues = []
    for issue in refused.issues:
        relative = _relative(scope, issue.path)
        found = _field_path(places, relative) if relative is not None else None
        if found is None or issue.severity != "error":
            issues.append(issue)
            continue
        message = f"{relative}: {issue.message}" if qualifies else issue.message
        issues.append(Issue(issue.severity, scope.prefix + found, message, issue.node))
    shown = refusal(ApplicationError(refused.message, issues), [scope.prefix + p for p in places])
    for path, messages in shown.fields.items():
        form, name = places[path[len(scope.prefix) :]]
        for message in messages:
            form.add_error(name, message)
    return shown


def in_document(issues: list[Issue]) -> list[Issue]:
    """Validation's findings (relative to their node) at their paths in the document."""
    return [document_path(issue) for issue in issues]
