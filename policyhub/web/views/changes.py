"""Change sets: people list the organisation's change sets by status; on one change set they
read its plan, history and the preview (each affected team's files as diffs from what it
receives now, for one Codex version of the window, a page of teams at a time), and take the
steps its status and their role allow: name and explain their own unpublished change set,
submit it, discard it, approve or reject someone else's, schedule its publish, or publish now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission
from policyhub.audit.models import AuditEvent
from policyhub.audit.selectors import audit_events
from policyhub.changes.apis import ChangeSetFilter
from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import (
    WAITING,
    change_set_diff,
    change_set_get,
    change_set_list,
    change_set_version,
)
from policyhub.changes.services import (
    change_set_approve,
    change_set_describe,
    change_set_discard,
    change_set_reject,
    change_set_schedule,
    change_set_submit,
)
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.policies import document
from policyhub.policies.document import codex_window
from policyhub.releases.services.runs import publish_run_request
from policyhub.web.labels import diff_lines
from policyhub.web.pages import OrgPage, Refusal, is_htmx, keyset_page, org_page, refusal
from providers.base import Issue
from providers.codex_versions import Version, parse_version, segments, version_text

# Teams looked at per page of the preview: each is rendered twice (live and proposed).
PREVIEW_TEAMS = 20
# Plan lines shown on the page; the rest are counted (the preview shows what they do).
PLAN_SHOWN = 500
# History: the steps of a change set as the audit trail has them (edits of a draft left out).
HISTORY_ACTIONS = [
    f"change_set.{verb}"
    for verb in ("create", "describe", "submit", "approve", "reject", "return", "schedule")
] + ["change_set.publish", "change_set.refuse"]
HISTORY_SHOWN = 50
STATUS_LABELS = dict(ChangeSet.Status.choices)


def _change_set(page: OrgPage, pk: int) -> ChangeSet:
    found = change_set_get(pk, organization=page.org)
    if found is None:
        raise Http404("no such change set")
    return found


def _is_author(page: OrgPage, change_set: ChangeSet) -> bool:
    user = page.actor.user
    if user is not None and change_set.author_id is not None:
        return bool(user.pk == change_set.author_id)
    return page.actor.label == change_set.author_label


@dataclass(frozen=True)
class Offered:
    """The steps the page offers: what the change set's status and the person's role allow
    (the services still decide; a forged request is refused there)."""

    describe: bool
    submit: bool
    discard: bool
    review: bool
    schedule: bool
    publish: bool
    # Approved but scheduled for later: a publish now leaves it waiting.
    scheduled_later: bool


def _offered(page: OrgPage, change_set: ChangeSet) -> Offered:
    status, author = change_set.status, _is_author(page, change_set)
    draft = status == ChangeSet.Status.DRAFT
    later = change_set.publish_at is not None and change_set.publish_at > timezone.now()
    return Offered(
        describe=draft and author,
        submit=draft and page.can.policy__edit,
        discard=draft and author,
        review=status == ChangeSet.Status.SUBMITTED and page.can.change_set__review and not author,
        schedule=status in WAITING and page.can.publish,
        publish=status == ChangeSet.Status.APPROVED and page.can.publish and not later,
        scheduled_later=later,
    )


def _history(organization: Organization, change_set: ChangeSet) -> QuerySet[AuditEvent]:
    return (
        audit_events(organization.pk)
        .filter(object_type="change_set", object_key=str(change_set.pk), action__in=HISTORY_ACTIONS)
        .order_by("id")[:HISTORY_SHOWN]
    )


def _render_detail(
    request: HttpRequest,
    page: OrgPage,
    change_set: ChangeSet,
    *,
    action: str = "",
    refused: Refusal | None = None,
    typed: dict[str, str] | None = None,
) -> HttpResponse:
    """The change set's page; after a refused step, with the refusal beside that step's form
    and what was typed in it."""
    plan = list(change_set.plan)
    offered = _offered(page, change_set)
    # A refused step whose form the page does not offer (a forged one) is shown at the top.
    at_form = {
        "describe": offered.describe,
        "submit": offered.submit or offered.discard,
        "discard": offered.submit or offered.discard,
        "approve": offered.review,
        "reject": offered.review,
        "schedule": offered.schedule,
        "publish": offered.publish,
    }.get(action, False)
    context: dict[str, Any] = {
        "page": page,
        "nav": "changes",
        "change_set": change_set,
        "status_label": STATUS_LABELS.get(change_set.status, change_set.status),
        "waiting": change_set.status in WAITING,
        "is_author": _is_author(page, change_set),
        "offered": offered,
        "refused_above": refused if refused and not at_form else None,
        "plan": plan[:PLAN_SHOWN],
        "plan_more": max(0, len(plan) - PLAN_SHOWN),
        "history": [
            (event, event.action.removeprefix("change_set."))
            for event in _history(page.org, change_set)
        ],
        "action": action,
        "refused": refused,
        "typed": typed or {},
        "publish_at_value": _local(change_set.publish_at),
        "version": change_set_version(change_set),
    }
    return render(request, "web/changes/detail.html", context, status=400 if refused else 200)


def _local(moment: datetime | None) -> str:
    """A time as a datetime-local input shows it, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if moment else ""


@org_page()
def change_sets_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The organisation's change sets, newest first, filtered by status."""
    filtered = ChangeSetFilter(request.GET, queryset=change_set_list(page.org))
    rows = filtered.qs if filtered.is_valid() else change_set_list(page.org).none()
    rows = rows.only(
        "id", "title", "author_label", "status", "created_at", "publish_at", "organization_id"
    )
    listed = keyset_page(request, rows, key="id", descending=True, cast=int)
    context = {
        "page": page,
        "nav": "changes",
        "listed": listed,
        "filter": filtered,
        "statuses": ChangeSet.Status.choices,
        "status": request.GET.get("status", ""),
        "status_labels": STATUS_LABELS,
    }
    return render(request, "web/changes/list.html", context)


@org_page()
def change_set_page(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """One change set: what it changes, who did what with it, its preview, and its steps."""
    return _render_detail(request, page, _change_set(page, pk))


# --- the preview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionChoice:
    """A Codex file set of the window: the first version it serves, and its label."""

    value: str
    label: str


def _before(until: Version) -> str:
    major, minor, patch = until
    if patch == 0 and minor > 0:
        return f"{major}.{minor - 1}.x"
    return f"before {version_text(until)}"


def version_choices(organization: Organization) -> list[VersionChoice]:
    """The window's Codex file sets, each labelled with the versions it serves."""
    window = codex_window(organization.codex_window)
    try:
        low, high = parse_version(window.min_version), parse_version(window.max_version)
    except ValueError:
        return []
    choices = []
    for start, until in segments(low, high):
        last = version_text(high) if until is None or until > high else _before(until)
        first = version_text(start)
        label = f"Codex {first}" if first == last else f"Codex {first} \u2013 {last}"
        choices.append(VersionChoice(first, label))
    return choices


@org_page()
def change_set_preview(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """What publishing the change set would do: each affected team's files as diffs from what
    it receives now, for one Codex file set of the window, a page of teams at a time (htmx
    swaps it into the change set's page; without script it is a page of its own)."""
    change_set = _change_set(page, pk)
    choices = version_choices(page.org)
    chosen = request.GET.get("codex_version", "")
    if chosen not in {choice.value for choice in choices}:
        chosen = ""
    after = request.GET.get("after") or None
    context: dict[str, Any] = {
        "page": page,
        "nav": "changes",
        "change_set": change_set,
        "choices": choices,
        "chosen": chosen,
        "after": after,
        "waiting": change_set.status in WAITING,
        "teams_per_page": PREVIEW_TEAMS,
    }
    if change_set.status in WAITING:
        try:
            diff = change_set_diff(
                change_set,
                codex_version=parse_version(chosen) if chosen else None,
                after=after,
                limit=PREVIEW_TEAMS,
            )
        except ApplicationError as exc:
            context["refused"] = refusal(exc)
        else:
            context["stale"] = diff.stale
            context["teams"] = [
                {
                    "path": team.path,
                    "files": [(file.name, diff_lines(file.diff)) for file in team.files],
                    "errors": [document.document_path(issue) for issue in team.errors],
                }
                for team in diff.teams
            ]
            kept = {"codex_version": chosen} if chosen else {}
            context["next_query"] = (
                "?" + urlencode({**kept, "after": diff.last}) if diff.last else ""
            )
            context["first_query"] = ("?" + urlencode(kept)) if after else ""
    template = "web/changes/_preview.html" if is_htmx(request) else "web/changes/preview.html"
    return render(request, template, context)


# --- steps --------------------------------------------------------------------------------------


def _step(
    request: HttpRequest,
    page: OrgPage,
    change_set: ChangeSet,
    action: str,
    call: Any,
    *,
    done: str,
    fields: tuple[str, ...] = (),
    typed: dict[str, str] | None = None,
) -> HttpResponse:
    """Call one service; on success say so and show the change set again (Post/Redirect/Get),
    on a refusal show it beside the step's form with what was typed."""
    try:
        with document.in_document_paths():
            call()
    except NotPermitted:
        raise
    except ApplicationError as exc:
        return _render_detail(
            request, page, change_set, action=action, refused=refusal(exc, fields), typed=typed
        )
    messages.success(request, done)
    return redirect("web-change-set", page.org.slug, change_set.pk)


def _text(request: HttpRequest, name: str) -> str:
    return request.POST.get(name, "")[:2000]


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def change_set_describe_step(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """The author names their unpublished change set and says why it is wanted."""
    change_set = _change_set(page, pk)
    title, reason = request.POST.get("title", "")[:200], _text(request, "reason")
    return _step(
        request,
        page,
        change_set,
        "describe",
        lambda: change_set_describe(
            actor=page.actor, change_set=change_set, title=title, reason=reason
        ),
        done="Title and reason saved.",
        fields=("title", "reason"),
        typed={"title": title, "reason": reason},
    )


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def change_set_submit_step(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """Put the unpublished change set up for review (validated whole; stale ones refused)."""
    change_set = _change_set(page, pk)
    return _step(
        request,
        page,
        change_set,
        "submit",
        lambda: change_set_submit(actor=page.actor, change_set=change_set),
        done=f"Change set {change_set.pk} submitted.",
    )


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def change_set_discard_step(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """The author throws their unpublished change set away."""
    change_set = _change_set(page, pk)
    try:
        change_set_discard(actor=page.actor, change_set=change_set)
    except NotPermitted:
        raise
    except ApplicationError as exc:
        return _render_detail(request, page, change_set, action="discard", refused=refusal(exc))
    messages.success(request, f"Change set {pk} discarded.")
    return redirect("web-change-sets", page.org.slug)


@require_POST
@org_page(post=Permission.CHANGE_SET_REVIEW)
def change_set_approve_step(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """A reviewer other than the author approves a submitted change set."""
    change_set = _change_set(page, pk)
    reason = _text(request, "reason")
    return _step(
        request,
        page,
        change_set,
        "approve",
        lambda: change_set_approve(
            actor=page.actor,
            change_set=change_set,
            reason=reason,
            read=request.POST.get("version", ""),
        ),
        done=f"Change set {change_set.pk} approved.",
        fields=("reason",),
        typed={"reason": reason},
    )


@require_POST
@org_page(post=Permission.CHANGE_SET_REVIEW)
def change_set_reject_step(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """A reviewer sends a submitted change set back, saying why."""
    change_set = _change_set(page, pk)
    reason = _text(request, "reason")
    return _step(
        request,
        page,
        change_set,
        "reject",
        lambda: change_set_reject(actor=page.actor, change_set=change_set, reason=reason),
        done=f"Change set {change_set.pk} rejected.",
        fields=("reason",),
        typed={"reason": reason},
    )


def _publish_at(text: str) -> datetime:
    """A datetime-local input's value, read as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApplicationError(
            "that is not a time", [Issue("error", "publish_at", "must be a date and time (UTC)")]
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@require_POST
@org_page(post=Permission.PUBLISH)
def change_set_schedule_step(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """Set, move or clear when a waiting change set is published."""
    change_set = _change_set(page, pk)
    text = request.POST.get("publish_at", "").strip()[:40]
    clear = request.POST.get("clear") == "1"

    def schedule() -> None:
        publish_at = None if clear or not text else _publish_at(text)
        change_set_schedule(actor=page.actor, change_set=change_set, publish_at=publish_at)

    return _step(
        request,
        page,
        change_set,
        "schedule",
        schedule,
        done="Publish time cleared: it goes out with the next publish."
        if clear or not text
        else f"Change set {change_set.pk} scheduled for {text.replace('T', ' ')} UTC.",
        fields=("publish_at",),
        typed={"publish_at": text},
    )


@require_POST
@org_page(post=Permission.PUBLISH)
def change_set_publish_step(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """Publish now: a publish run applies every due approved change set and renders the
    releases; its page follows its progress."""
    change_set = _change_set(page, pk)
    try:
        run = publish_run_request(actor=page.actor, organization=page.org)
    except NotPermitted:
        raise
    except ApplicationError as exc:
        return _render_detail(request, page, change_set, action="publish", refused=refusal(exc))
    messages.success(request, f"Publish run {run.pk} is queued for a worker.")
    return redirect("web-publish-run", page.org.slug, run.pk)


CHANGE_SET = "orgs/<slug:slug>/changes/<int:pk>"

urlpatterns = [
    path("orgs/<slug:slug>/changes/", change_sets_page, name="web-change-sets"),
    path(f"{CHANGE_SET}/", change_set_page, name="web-change-set"),
    path(f"{CHANGE_SET}/preview/", change_set_preview, name="web-change-set-preview"),
    path(f"{CHANGE_SET}/-/describe/", change_set_describe_step, name="web-change-set-describe"),
    path(f"{CHANGE_SET}/-/submit/", change_set_submit_step, name="web-change-set-submit"),
    path(f"{CHANGE_SET}/-/discard/", change_set_discard_step, name="web-change-set-discard"),
    path(f"{CHANGE_SET}/-/approve/", change_set_approve_step, name="web-change-set-approve"),
    path(f"{CHANGE_SET}/-/reject/", change_set_reject_step, name="web-change-set-reject"),
    path(f"{CHANGE_SET}/-/schedule/", change_set_schedule_step, name="web-change-set-schedule"),
    path(f"{CHANGE_SET}/-/publish/", change_set_publish_step, name="web-change-set-publish"),
]
