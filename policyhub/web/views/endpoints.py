"""Provider endpoints: an admin lists the organisation's endpoints with where each is used,
adds one of a kind (the kind's own fields, its help and capability matrix), edits its settings
and capability overrides, deletes it, and sees the nodes and profiles that name it.

Every write is a policy edit: it goes into the editor's own unpublished change set
(`change_set_draft_edit`), which is then submitted, reviewed and published on the change set's
page. Until then the endpoint's page shows the editor the unpublished version beside the live
one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from policyhub.accounts.permissions import ORGANIZATION_NODE, Permission
from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import change_set_draft_of, change_set_endpoints
from policyhub.changes.services import change_set_draft_edit
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.policies.domain import Endpoint, Json
from policyhub.policies.models import ProviderEndpoint
from policyhub.policies.selectors import (
    endpoint_list_with_usage,
    endpoint_references,
    profiles_naming,
)
from policyhub.web.endpoint_forms import (
    CAPABILITY_PREFIX,
    NAME,
    REASON,
    EndpointForm,
    capability_rows,
    endpoint_initial,
)
from policyhub.web.pages import OrgPage, Refusal, keyset_page, org_page, refusal
from providers import KINDS, ProviderKind
from providers.base import Issue

# What follows an endpoint's field in a refusal's path: a list item or a map key.
_FIELD_END = re.compile(r"[.\[]")


@dataclass(frozen=True)
class Shown:
    """An endpoint as the person looking sees it: live, and in their unpublished change set
    when it changes it (`unpublished` None there: it deletes it)."""

    name: str
    live: Endpoint | None
    unpublished: Endpoint | None
    draft: ChangeSet | None
    in_draft: bool

    @property
    def current(self) -> Endpoint:
        """What an edit starts from: the unpublished version where there is one."""
        found = self.unpublished if self.in_draft else self.live
        return found or self.live  # type: ignore[return-value]

    @property
    def deleted_in_draft(self) -> bool:
        return self.in_draft and self.unpublished is None


def _draft(page: OrgPage) -> ChangeSet | None:
    """The person's own unpublished change set, where their edits go."""
    user = page.actor.user
    return change_set_draft_of(page.org, user.pk) if user is not None else None


def _plan_lines(draft: ChangeSet | None, name: str | None = None) -> list[str]:
    """The lines of the draft's plan about endpoints (about `name` only, when given)."""
    if draft is None:
        return []
    lines = []
    for line in draft.plan:
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[1] == "provider" and name in (None, parts[2]):
            lines.append(line)
    return lines


def _shown(page: OrgPage, name: str) -> Shown:
    row = ProviderEndpoint.objects.filter(organization=page.org, name=name).first()
    live = (
        Endpoint(row.name, row.kind, row.provider_id, row.settings, row.capabilities)
        if row is not None
        else None
    )
    draft = _draft(page)
    in_draft = bool(_plan_lines(draft, name))
    # Only a draft that changes this endpoint is read (its document's head, not its teams).
    unpublished = change_set_endpoints(draft).get(name) if draft is not None and in_draft else None
    if live is None and unpublished is None:
        raise Http404("no such endpoint")
    return Shown(name, live, unpublished, draft, in_draft)


def _require_org_editor(page: OrgPage) -> None:
    """Endpoints belong to the organisation's own node: a team editor may not change them."""
    if not page.can.edit(ORGANIZATION_NODE):
        raise PermissionDenied(f"{page.actor.label} may not change provider endpoints")


def _refused(refused: ApplicationError, name: str, form: EndpointForm) -> Refusal:
    """A refusal of an endpoint edit, its findings beside the form's fields: the document's
    `providers.<name>.<field>` paths (and their list items or map keys) name them."""
    found = Refusal(refused.message)
    prefix = f"providers.{name}"
    for issue in refused.issues:
        target, message = None, issue.message
        if issue.path == prefix and form.creating:
            target = NAME
        elif issue.path.startswith(prefix + "."):
            rest = issue.path[len(prefix) + 1 :]
            head = _FIELD_END.split(rest, maxsplit=1)[0]
            detail = rest[len(head) :].lstrip(".")
            if head == "capabilities" and detail:
                head, detail = CAPABILITY_PREFIX + detail, ""
            if head in form.fields:
                target = head
                message = f"{detail}: {message}" if detail else message
        elif issue.path in (NAME, REASON) and issue.path in form.fields:
            target = issue.path
        if target is not None:
            found.fields.setdefault(target, []).append(message)
        else:
            found.other.append(f"{issue.path}: {issue.message}" if issue.path else issue.message)
    return found


def _edit(page: OrgPage, edit: Callable[[Json], None], reason: str) -> ChangeSet:
    return change_set_draft_edit(actor=page.actor, organization=page.org, edit=edit, reason=reason)


def _saved(request: HttpRequest, page: OrgPage, change_set: ChangeSet, what: str) -> None:
    messages.success(
        request,
        f"{what} in your unpublished change set {change_set.pk}: submit it for review on its "
        "page to publish it.",
    )


def _render_form(
    request: HttpRequest,
    page: OrgPage,
    *,
    kind: ProviderKind | None,
    form: EndpointForm | None,
    shown: Shown | None,
    refused: Refusal | None,
    status: int = 200,
) -> HttpResponse:
    context: dict[str, Any] = {
        "page": page,
        "nav": "endpoints",
        "kinds": KINDS.values(),
        "kind": kind,
        "form": form,
        "fields": form.shown(refused.fields if refused else None) if form else None,
        "refused": refused,
        "shown": shown,
        "matrix": capability_rows(kind, {}) if kind else [],
        "draft": shown.draft if shown else _draft(page),
    }
    return render(request, "web/endpoints/form.html", context, status=status)


@org_page()
def endpoints_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The organisation's endpoints, a page at a time by name, with how many nodes and
    profiles name each; the person's unpublished endpoint changes above them."""
    listed = keyset_page(request, endpoint_list_with_usage(page.org), key="name")
    can_edit = page.can.edit(ORGANIZATION_NODE)
    draft = _draft(page) if can_edit else None
    rows = [(endpoint, KINDS.get(endpoint.kind)) for endpoint in listed.items]
    context = {
        "page": page,
        "nav": "endpoints",
        "listed": listed,
        "rows": rows,
        "draft": draft,
        "unpublished": _plan_lines(draft),
        "can_edit": can_edit,
    }
    return render(request, "web/endpoints/list.html", context)


@org_page(post=Permission.POLICY_EDIT)
def endpoint_new(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """Add an endpoint: choose its kind (`?kind=`; htmx swaps the fields in), fill in the
    kind's fields, and it goes into the unpublished change set."""
    _require_org_editor(page)
    source = request.POST if request.method == "POST" else request.GET
    kind = KINDS.get(source.get("kind", ""))
    form = None if kind is None else EndpointForm(kind, request.POST or None, creating=True)
    if request.method != "POST" or form is None or kind is None:
        refused = Refusal("choose the kind of endpoint") if request.method == "POST" else None
        return _render_form(
            request,
            page,
            kind=kind,
            form=form,
            shown=None,
            refused=refused,
            status=400 if refused else 200,
        )
    if not form.is_valid():
        return _render_form(
            request, page, kind=kind, form=form, shown=None, refused=None, status=400
        )
    name, entry = form.cleaned_data[NAME], form.entry()

    def add(raw: Json) -> None:
        providers = raw.setdefault("providers", {})
        if name in providers:
            raise ApplicationError(
                f"endpoint {name!r} exists", [Issue("error", NAME, "is taken by another endpoint")]
            )
        providers[name] = entry

    try:
        change_set = _edit(page, add, form.cleaned_data[REASON])
    except NotPermitted:
        raise
    except ApplicationError as exc:
        refused = _refused(exc, name, form)
        return _render_form(
            request, page, kind=kind, form=form, shown=None, refused=refused, status=400
        )
    _saved(request, page, change_set, f"Endpoint {name} added")
    return redirect("web-endpoint", page.org.slug, name)


@org_page()
def endpoint_page(request: HttpRequest, page: OrgPage, name: str) -> HttpResponse:
    """One endpoint: its settings (the unpublished version first where the person's change set
    changes it), its kind's capability matrix with the endpoint's overrides, and the nodes and
    profiles that name it, a page at a time."""
    return _detail(request, page, _shown(page, name))


def _detail(
    request: HttpRequest,
    page: OrgPage,
    shown: Shown,
    *,
    refused: Refusal | None = None,
    reason: str = "",
) -> HttpResponse:
    current = shown.current
    kind = KINDS.get(current.kind)
    references = keyset_page(request, endpoint_references(page.org, shown.name), key="id")
    profiles = profiles_naming(list(references.items), shown.name)
    settings = []
    if kind is not None:
        for spec in kind.fields:
            if spec.name in current.settings:
                settings.append((spec, current.settings[spec.name]))
    context = {
        "page": page,
        "nav": "endpoints",
        "shown": shown,
        "endpoint": current,
        "kind": kind,
        "settings": settings,
        "provider_id": kind.codex_provider_id(current.provider_id) if kind else current.provider_id,
        "matrix": capability_rows(kind, current.capabilities) if kind else [],
        "references": references,
        "uses": [(node, profiles.get(node.pk, [])) for node in references.items],
        "plan": _plan_lines(shown.draft, shown.name),
        "refused": refused,
        "reason": reason,
        "can_edit": page.can.edit(ORGANIZATION_NODE),
    }
    return render(request, "web/endpoints/detail.html", context, status=400 if refused else 200)


@org_page(post=Permission.POLICY_EDIT)
def endpoint_edit(request: HttpRequest, page: OrgPage, name: str) -> HttpResponse:
    """Change an endpoint's settings, kind or capability overrides; the form starts from the
    unpublished version where the person's change set already changes it."""
    _require_org_editor(page)
    shown = _shown(page, name)
    if shown.deleted_in_draft:
        messages.error(request, f"Your unpublished change set deletes endpoint {name}.")
        return redirect("web-endpoint", page.org.slug, name)
    current = shown.current
    source = request.POST if request.method == "POST" else request.GET
    kind = KINDS.get(source.get("kind", "")) or KINDS[current.kind]
    initial = endpoint_initial(current) if kind.kind == current.kind else {}
    if request.method != "POST":
        form = EndpointForm(kind, initial=initial, creating=False)
        return _render_form(request, page, kind=kind, form=form, shown=shown, refused=None)
    form = EndpointForm(kind, request.POST, initial=initial, creating=False)
    if not form.is_valid():
        return _render_form(
            request, page, kind=kind, form=form, shown=shown, refused=None, status=400
        )
    entry = form.entry()

    def replace(raw: Json) -> None:
        providers = raw.setdefault("providers", {})
        if name not in providers:
            raise ApplicationError(f"no endpoint {name!r} in the policy")
        providers[name] = entry

    try:
        change_set = _edit(page, replace, form.cleaned_data[REASON])
    except NotPermitted:
        raise
    except ApplicationError as exc:
        refused = _refused(exc, name, form)
        return _render_form(
            request, page, kind=kind, form=form, shown=shown, refused=refused, status=400
        )
    _saved(request, page, change_set, f"Endpoint {name} changed")
    return redirect("web-endpoint", page.org.slug, name)


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def endpoint_delete(request: HttpRequest, page: OrgPage, name: str) -> HttpResponse:
    """Delete an endpoint (in the unpublished change set); refused while a node or profile
    still names it."""
    _require_org_editor(page)
    shown = _shown(page, name)
    reason = request.POST.get(REASON, "")[:2000]

    def delete(raw: Json) -> None:
        if raw.get("providers", {}).pop(name, None) is None:
            raise ApplicationError(f"no endpoint {name!r} in the policy")

    try:
        change_set = _edit(page, delete, reason)
    except NotPermitted:
        raise
    except ApplicationError as exc:
        refused = refusal(exc, [REASON])
        return _detail(request, page, shown, refused=refused, reason=reason)
    _saved(request, page, change_set, f"Endpoint {name} deleted")
    return redirect("web-endpoints", page.org.slug)


urlpatterns = [
    path("orgs/<slug:slug>/endpoints/", endpoints_page, name="web-endpoints"),
    path("orgs/<slug:slug>/endpoints/-/new/", endpoint_new, name="web-endpoint-new"),
    path("orgs/<slug:slug>/endpoints/<str:name>/", endpoint_page, name="web-endpoint"),
    path("orgs/<slug:slug>/endpoints/<str:name>/-/edit/", endpoint_edit, name="web-endpoint-edit"),
    path(
        "orgs/<slug:slug>/endpoints/<str:name>/-/delete/",
        endpoint_delete,
        name="web-endpoint-delete",
    ),
]
