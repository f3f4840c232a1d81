"""Publishes and releases: ask for a publish and follow it, see what each run made, and manage
one team's releases (its history, what changed between two revisions, rollback to an earlier
revision, and staged rollouts: start, promote, abort, with how far the devices got); one
release's receipts (which devices fetched it, which applied it, and when).

A publish runs in a worker: the run page follows it by polling a small fragment with htmx
until the run has finished. Releases never change after they are stored; rollback and rollouts
act through the release services, which refuse what no longer applies and say why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import F, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from policyhub.accounts.permissions import Permission
from policyhub.changes.models import ChangeSet
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.exports.files import RECEIPTS_SETTLE
from policyhub.exports.formats import FORMATS
from policyhub.fleet import selectors as fleet
from policyhub.releases import selectors
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.rollout import (
    release_rollout_abort,
    release_rollout_promote,
    release_rollout_start,
)
from policyhub.releases.services.runs import publish_run_request
from policyhub.teams.models import Team
from policyhub.web.pages import OrgPage, Refusal, keyset_page, org_page, refusal
from policyhub.web.release_reads import (
    SetShown,
    diff_sets,
    duration,
    rollout_progress,
    serving,
    team_history,
)

# The publishes page shows the newest releases; the releases page has them all, a page at a time.
RECENT_RELEASES = 20
# A run's page names this many of the releases it made; the releases page lists them all.
RUN_RELEASES_SHOWN = 50
# The revisions the diff's selects offer: the team's newest.
DIFF_CHOICES = 200
FINISHED = (PublishRun.Status.SUCCEEDED, PublishRun.Status.FAILED)


# --- publishes ------------------------------------------------------------------------------


def _org_releases(page: OrgPage) -> QuerySet[Release]:
    """The organisation's releases, metadata only (never their files)."""
    return selectors.release_list(page.org)


@org_page(post=Permission.PUBLISH)
def publishes_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The publish runs, newest first, and the newest releases; "Publish now" asks a worker to
    publish every team whose files changed."""
    if request.method == "POST":
        try:
            run = publish_run_request(actor=page.actor, organization=page.org)
        except NotPermitted:
            raise
        except ApplicationError as refused:
            messages.error(request, refused.message)
            return redirect("web-publishes", page.org.slug)
        messages.success(request, f"Publish run {run.pk} is queued for a worker.")
        return redirect("web-publish-run", page.org.slug, run.pk)
    found = selectors.publish_runs(page.org).annotate(unchanged=F("teams") - F("releases_created"))
    runs = keyset_page(request, found, key="id", descending=True, cast=int)
    recent = list(_org_releases(page).order_by("-id")[:RECENT_RELEASES])
    return render(
        request,
        "web/releases/publishes.html",
        {"page": page, "nav": "releases", "runs": runs, "recent": recent},
    )


class ReleaseListFilter(forms.Form):
    run = forms.IntegerField(label="Made by publish run", min_value=1, required=False)


@org_page()
def releases_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """Every release of the organisation, newest first, or those one publish run made."""
    given = ReleaseListFilter(request.GET)
    found = _org_releases(page)
    if given.is_valid() and given.cleaned_data["run"]:
        found = found.filter(publish_run_id=given.cleaned_data["run"])
    releases = keyset_page(request, found, key="id", descending=True, cast=int)
    return render(
        request,
        "web/releases/releases.html",
        {"page": page, "nav": "releases", "releases": releases, "filter": given},
    )


@dataclass(frozen=True)
class RunProgress:
    """What a run's page and its live fragment show."""

    run: PublishRun
    finished: bool
    elapsed: str
    unchanged: int | None
    refusals: list[str]
    releases: list[Release]
    change_sets: list[ChangeSet]


def _run(page: OrgPage, pk: int) -> PublishRun:
    run = selectors.publish_runs(page.org).filter(pk=pk).first()
    if run is None:
        raise Http404("no such publish run")
    return run


def _progress(run: PublishRun) -> RunProgress:
    finished = run.status in FINISHED
    now = timezone.now()
    if run.started_at is None:
        elapsed = (run.finished_at or now) - run.created_at
    else:
        elapsed = (run.finished_at or now) - run.started_at
    succeeded = run.status == PublishRun.Status.SUCCEEDED
    # A run stores its releases and marks its change sets in one transaction at the end:
    # until it has finished there is nothing to read.
    releases: list[Release] = []
    change_sets: list[ChangeSet] = []
    if succeeded:
        # Not through the run's related managers (nor publish_run_releases, which uses one):
        # they set each row's link back to the run, and so read its deferred foreign key
        # with one more query per row.
        releases = list(
            Release.objects.filter(publish_run=run)
            .only("id", "team_path", "revision")
            .order_by("team_path")[:RUN_RELEASES_SHOWN]
        )
        change_sets = list(
            ChangeSet.objects.filter(published_run=run)
            .only("id", "title", "author_label")
            .order_by("id")
        )
    return RunProgress(
        run=run,
        finished=finished,
        elapsed=duration(elapsed),
        unchanged=run.teams - run.releases_created if succeeded else None,
        # A succeeded run records there the due change sets it could not apply.
        refusals=run.error.splitlines() if succeeded else [],
        releases=releases,
        change_sets=change_sets,
    )


@org_page()
def publish_run_page(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """One publish run: who asked, its status and timings, the releases it made, the change
    sets it published and its error; it follows the run live until it has finished."""
    progress = _progress(_run(page, pk))
    return render(
        request,
        "web/releases/run.html",
        {"page": page, "nav": "releases", "progress": progress, "shown": RUN_RELEASES_SHOWN},
    )


@org_page()
def publish_run_progress(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """The live part of a run's page, polled while the run is pending or running; the answer
    for a finished run polls no more."""
    progress = _progress(_run(page, pk))
    return render(
        request,
        "web/releases/_run_progress.html",
        {"page": page, "progress": progress, "shown": RUN_RELEASES_SHOWN},
    )


# --- one team's releases --------------------------------------------------------------------


class RolloutForm(forms.Form):
    percent = forms.IntegerField(
        label="Share of the team's devices (%)", min_value=1, max_value=100
    )


class RollbackForm(forms.Form):
    to_revision = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    reason = forms.CharField(
        label="Reason (for the audit trail)", max_length=2000, required=False, widget=forms.Textarea
    )


class DiffForm(forms.Form):
    old = forms.TypedChoiceField(label="From", coerce=int)
    new = forms.TypedChoiceField(label="To", coerce=int)

    def __init__(self, *args: Any, revisions: Sequence[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("old", "new"):
            field = self.fields[name]
            assert isinstance(field, forms.TypedChoiceField)
            field.choices = [(r, f"revision {r}") for r in revisions]


def _team_or_404(page: OrgPage, team_path: str) -> Team | None:
    """The team (None when it was deleted but its releases remain); 404 when neither exists."""
    team = Team.objects.filter(organization=page.org, path=team_path).only("name", "path").first()
    if (
        team is None
        and not Release.objects.filter(organization=page.org, team_path=team_path).exists()
    ):
        raise Http404("no such team")
    return team


def _older_asked(page: OrgPage, team_path: str, given: Any, offered: Sequence[int]) -> list[int]:
    """The revisions a request asks to compare that the selects do not offer, if they exist."""
    asked = {value for value in (given.get("old"), given.get("new")) if value and value.isdigit()}
    wanted = sorted({int(value) for value in asked} - set(offered), reverse=True)
    if not wanted or wanted[0] >= 2**31:
        return []
    stored = Release.objects.filter(organization=page.org, team_path=team_path)
    return list(
        stored.filter(revision__in=wanted).order_by("-revision").values_list("revision", flat=True)
    )


def _diff(
    page: OrgPage,
    team_path: str,
    revisions: Sequence[int],
    current: Release | None,
    request: HttpRequest,
) -> tuple[DiffForm | None, Release | None, Release | None, list[SetShown]]:
    """The two revisions chosen (default: the one the current release replaced, and the
    current one) and what changed between them, per Codex file set."""
    if len(revisions) < 2:
        return None, None, None, []
    newest = current.revision if current else revisions[0]
    older = [r for r in revisions if r < newest]
    default_old = (
        current.previous.revision
        if current and current.previous
        else (older[0] if older else revisions[1])
    )
    given = request.GET if "old" in request.GET or "new" in request.GET else None
    # Any two revisions compare, not only the newest offered: links ask for older ones too.
    asked = [] if given is None else _older_asked(page, team_path, given, revisions)
    form = DiffForm(
        given,
        initial={"old": default_old, "new": newest},
        revisions=[*revisions[:DIFF_CHOICES], *asked],
    )
    if given is None:
        old, new = default_old, newest
    elif form.is_valid():
        old, new = form.cleaned_data["old"], form.cleaned_data["new"]
    else:
        return form, None, None, []
    before, after = (
        selectors.release_of_team_with_files(page.org, team_path, revision)
        for revision in (old, new)
    )
    if before is None or after is None:
        return form, None, None, []
    sets = diff_sets(before, after)
    return form, before, after, sets


def _team_releases(
    request: HttpRequest,
    page: OrgPage,
    team_path: str,
    *,
    start: RolloutForm | None = None,
    promote: RolloutForm | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    team = _team_or_404(page, team_path)
    history = keyset_page(
        request, team_history(page.org, team_path), key="revision", descending=True, cast=int
    )
    current = selectors.release_list(page.org, team_path=team_path).filter(current=True).first()
    revisions = list(
        Release.objects.filter(organization=page.org, team_path=team_path)
        .order_by("-revision")
        .values_list("revision", flat=True)[:DIFF_CHOICES]
    )
    rollout = (
        rollout_progress(page.org, current) if current and current.rollout_percent < 100 else None
    )
    diff_form, diff_old, diff_new, diff_sets = _diff(page, team_path, revisions, current, request)
    return render(
        request,
        "web/releases/team.html",
        {
            "page": page,
            "nav": "releases",
            "team": team,
            "team_path": team_path,
            "history": history,
            "current": current,
            "serving": serving(current) if current else None,
            "rollout": rollout,
            "can_start": current is not None
            and current.rollout_percent == 100
            and len(revisions) > 1,
            "start": start or RolloutForm(initial={"percent": 30}),
            "promote": promote or RolloutForm(initial={"percent": 100}),
            "refused": refused,
            "diff_form": diff_form,
            "diff_old": diff_old,
            "diff_new": diff_new,
            "diff_sets": diff_sets,
        },
        status=status,
    )


@org_page()
def team_releases_page(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """A team's releases, newest revision first; the difference between any two revisions;
    for release managers, rollback and staged rollouts."""
    return _team_releases(request, page, path)


class ReceiptFilter(forms.Form):
    state = forms.ChoiceField(
        label="Devices",
        required=False,
        choices=[
            ("", "every device with a receipt"),
            ("fetched", "fetched, not reported applied"),
            ("applied", "applied"),
            ("errors", "reported errors"),
        ],
    )


@org_page()
def release_receipts_page(
    request: HttpRequest, page: OrgPage, path: str, revision: int
) -> HttpResponse:
    """One release: its metadata, how many devices fetched and applied it and how many of its
    team's have not fetched it, and the devices' receipts, newest first, filtered by state."""
    release = fleet.receipts_release_of_team(page.org, path, revision)
    if release is None:
        raise Http404("no such release")
    given = ReceiptFilter(request.GET)
    found = fleet.release_receipts(page.org, release.pk)
    if not given.is_valid():
        found = found.none()
    elif given.cleaned_data["state"]:
        found = fleet.receipts_in_state(found, given.cleaned_data["state"])
    receipts = keyset_page(request, found, key="id", descending=True, cast=int)
    return render(
        request,
        "web/releases/receipts.html",
        {
            "page": page,
            "nav": "releases",
            "release": release,
            "counts": fleet.release_receipt_counts(page.org, release),
            "filter": given,
            "receipts": receipts,
            "exports": _receipt_exports(page, release) if page.can.audit__view else [],
        },
    )


def _receipt_exports(page: OrgPage, release: Release) -> list[tuple[str, str, str]]:
    """(label, file, manifest) per format: the receipts as of a minute ago (the latest whose
    values no longer change), pinned, so the manifest fetched later describes the same rows."""
    query = QueryDict(mutable=True)
    settled = timezone.now() - RECEIPTS_SETTLE
    query["as_of"] = settled.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    links = []
    for file_format in FORMATS:
        kwargs = {"slug": page.org.slug, "pk": release.pk, "file_format": file_format}
        links.append(
            (
                file_format.upper(),
                f"{reverse('receipts-export', kwargs=kwargs)}?{query.urlencode()}",
                f"{reverse('receipts-export-manifest', kwargs=kwargs)}?{query.urlencode()}",
            )
        )
    return links


@require_POST
@org_page(post=Permission.RELEASE_MANAGE)
def rollout_start(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """Serve the team's current revision to a share of its devices, the previous to the rest."""
    return _rollout_to(request, page, path, release_rollout_start, starting=True)


@require_POST
@org_page(post=Permission.RELEASE_MANAGE)
def rollout_promote(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """Widen the staged rollout; at 100 % every device gets the new revision."""
    return _rollout_to(request, page, path, release_rollout_promote, starting=False)


def _rollout_to(
    request: HttpRequest,
    page: OrgPage,
    path: str,
    service: Callable[..., Release],
    *,
    starting: bool,
) -> HttpResponse:
    """Start or widen a rollout to the posted percentage; a refusal stays beside its form."""
    form = RolloutForm(request.POST)

    def again(refused: Refusal | None = None) -> HttpResponse:
        start, promote = (form, None) if starting else (None, form)
        return _team_releases(
            request, page, path, start=start, promote=promote, refused=refused, status=400
        )

    if not form.is_valid():
        return again()
    try:
        release = service(
            organization=page.org,
            team_path=path,
            percent=form.cleaned_data["percent"],
            actor=page.actor,
        )
    except NotPermitted:
        raise
    except ApplicationError as exc:
        found = refusal(exc, ["percent"]).onto(form)
        return again(found)
    if release.rollout_percent == 100:
        done = f"Revision {release.revision} now reaches every device of {path}."
    else:
        done = f"Revision {release.revision} now reaches {release.rollout_percent} % of the devices of {path}."
    messages.success(request, done)
    return redirect("web-team-releases", page.org.slug, path)


@require_POST
@org_page(post=Permission.RELEASE_MANAGE)
def rollout_abort(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """Stop the staged rollout: every device gets the previous revision again."""
    try:
        restored = release_rollout_abort(organization=page.org, team_path=path, actor=page.actor)
    except NotPermitted:
        raise
    except ApplicationError as exc:
        return _team_releases(request, page, path, refused=refusal(exc), status=400)
    messages.success(
        request,
        f"Rollout aborted: revision {restored.revision} is current again for every device of {path}.",
    )
    return redirect("web-team-releases", page.org.slug, path)


@org_page(post=Permission.RELEASE_MANAGE)
def rollback_page(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    """Confirm a rollback to an earlier revision (`?to=N`): a new revision with its files."""
    page.require(Permission.RELEASE_MANAGE)
    # The revision comes with the confirmation page's address; the form repeats it.
    raw = request.POST.get("to_revision") or request.GET.get("to")
    try:
        to_revision = int(raw or "")
    except ValueError:
        raise Http404("no such revision") from None
    team = _team_or_404(page, path)
    target = (
        selectors.release_list(page.org, team_path=path).filter(revision=to_revision).first()
        if 0 < to_revision < 2**31
        else None
    )
    if target is None:
        raise Http404("no such revision")
    current = selectors.release_list(page.org, team_path=path).filter(current=True).first()
    newest = (
        Release.objects.filter(organization=page.org, team_path=path).order_by("-revision").first()
    )
    next_revision = (newest.revision if newest else 0) + 1
    form = RollbackForm(request.POST or None, initial={"to_revision": to_revision})
    found = None
    if request.method == "POST" and form.is_valid():
        try:
            release = release_rollback(
                organization=page.org,
                team_path=path,
                to_revision=to_revision,
                actor=page.actor,
                reason=form.cleaned_data["reason"],
            )
        except NotPermitted:
            raise
        except ApplicationError as exc:
            found = refusal(exc, ["reason"]).onto(form)
        else:
            messages.success(
                request,
                f"Rolled back: revision {release.revision} of {path} now carries the files of "
                f"revision {to_revision}.",
            )
            return redirect("web-team-releases", page.org.slug, path)
    return render(
        request,
        "web/releases/rollback.html",
        {
            "page": page,
            "nav": "releases",
            "team": team,
            "team_path": path,
            "target": target,
            "current": current,
            "next_revision": next_revision,
            "same_content": current is not None and current.content_digest == target.content_digest,
            "form": form,
            "refused": found,
        },
        status=400 if request.method == "POST" else 200,
    )


urlpatterns = [
    path("orgs/<slug:slug>/publishes/", publishes_page, name="web-publishes"),
    path("orgs/<slug:slug>/publishes/<int:pk>/", publish_run_page, name="web-publish-run"),
    path(
        "orgs/<slug:slug>/publishes/<int:pk>/-/progress/",
        publish_run_progress,
        name="web-publish-run-progress",
    ),
    path("orgs/<slug:slug>/releases/", releases_page, name="web-releases"),
    # A team's own actions before the team's page, whose path would take them in.
    path(
        "orgs/<slug:slug>/releases/<path:path>/-/rollback/",
        rollback_page,
        name="web-release-rollback",
    ),
    path(
        "orgs/<slug:slug>/releases/<path:path>/-/rollout/start/",
        rollout_start,
        name="web-rollout-start",
    ),
    path(
        "orgs/<slug:slug>/releases/<path:path>/-/rollout/promote/",
        rollout_promote,
        name="web-rollout-promote",
    ),
    path(
        "orgs/<slug:slug>/releases/<path:path>/-/rollout/abort/",
        rollout_abort,
        name="web-rollout-abort",
    ),
    path(
        "orgs/<slug:slug>/releases/<path:path>/-/revision/<int:revision>/",
        release_receipts_page,
        name="web-release-receipts",
    ),
    path("orgs/<slug:slug>/releases/<path:path>/", team_releases_page, name="web-team-releases"),
]
