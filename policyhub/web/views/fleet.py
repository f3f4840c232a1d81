"""Devices and enrolment tokens: an admin sees which machines have the release they should, finds
the ones that are behind, failing, silent or outside the Codex window, moves a machine to another
team or revokes it, and hands out tokens that enrol new machines into a team.

Lists are filtered and paged in SQL on the states `fleet.selectors.device_states` computes, so a
page costs the same at ten devices or 100,000."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_POST

from policyhub.accounts.permissions import Permission
from policyhub.apis import MAX_INT
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.fleet import selectors, services
from policyhub.fleet.models import Device
from policyhub.teams.models import Team
from policyhub.validators import duration_parse, plain_text
from policyhub.web.pages import PAGE_SIZE, OrgPage, Page, Refusal, keyset_page, org_page, refusal
from providers.codex_versions import NEWEST_MEASURED, version_text

# Team paths offered in a form's suggestions: the first ones in path order; any other path can
# still be typed (an organisation may have 10,000 teams).
TEAM_CHOICES = 200
# The web's name for "inside the window" (the filter reads `codex_window=in`).
WINDOW_CHOICES = [
    ("below", "below the window"),
    ("in", "in the window"),
    ("above", "above the window"),
    ("unknown", "unknown"),
    (selectors.UNMEASURED, "newer than the newest measured release"),
]
STATE_CHOICES = [(state, state) for state in selectors.DEVICE_STATES]


def _team_paths(page: OrgPage) -> list[str]:
    return list(
        Team.objects.filter(organization=page.org)
        .order_by("path")
        .values_list("path", flat=True)[:TEAM_CHOICES]
    )


def _window(page: OrgPage) -> tuple[str, str]:
    low, high = selectors.window_of(page.org)
    return version_text(low), version_text(high)


# --- devices ------------------------------------------------------------------------------------


class DeviceListFilter(django_filters.FilterSet):
    """The devices page's filters: a team and the teams below it, a state, where Codex lies
    against the window, part of the host name; revoked devices only when asked for."""

    team = django_filters.CharFilter(method="in_subtree", max_length=1024, validators=[plain_text])
    state = django_filters.ChoiceFilter(field_name="state", choices=STATE_CHOICES)
    codex_window = django_filters.ChoiceFilter(method="in_window", choices=WINDOW_CHOICES)
    q = django_filters.CharFilter(
        field_name="hostname", lookup_expr="icontains", max_length=255, validators=[plain_text]
    )
    include_revoked = django_filters.BooleanFilter(method="revoked_too", widget=forms.CheckboxInput)

    class Meta:
        model = Device
        fields: list[str] = []

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        given = self.form.cleaned_data
        # A revoked device is in no fleet state: listed only when asked for, and then as such.
        if not given.get("include_revoked") and given.get("state") != selectors.REVOKED:
            queryset = queryset.filter(revoked_at__isnull=True)
        return super().filter_queryset(queryset)

    def in_subtree(self, found: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        value = value.strip("/")
        return found.filter(Q(team__path=value) | Q(team__path__startswith=f"{value}/"))

    def in_window(self, found: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return selectors.in_codex_window(found, "inside" if value == "in" else value)

    def revoked_too(self, found: QuerySet[Any], name: str, value: bool) -> QuerySet[Any]:
        return found  # applied in filter_queryset, before the state filter


def _device_page(request: HttpRequest, found: QuerySet[Any]) -> Page[Any]:
    """A page of devices, the newest enrolments first, following the index of enrolled
    devices."""
    return _newest_first_page(request, found, at="enrolled_at", cast=uuid.UUID)


def _newest_first_page(
    request: HttpRequest,
    found: QuerySet[Any],
    *,
    at: str,
    cast: Callable[[str], Any],
    param: str = "after",
) -> Page[Any]:
    """A page of rows newest first by their time `at`: keyset on (`at`, id), which is unique
    (no row shows twice or goes missing between pages). `param` (`after`) is `<id>:<time>` of
    the previous page's last row."""
    ordered = found.order_by(f"-{at}", "-id")
    after = request.GET.get(param, "")
    key, _, when = after.partition(":")
    try:
        last = (cast(key), datetime.fromisoformat(when)) if after else None
    except ValueError:
        last = None
    if last is not None:
        pk, moment = last
        # The first condition alone can use the index; the second breaks ties on the id.
        ordered = ordered.filter(**{f"{at}__lte": moment}).filter(
            Q(**{f"{at}__lt": moment}) | Q(**{at: moment, "id__lt": pk})
        )
    items = list(ordered[: PAGE_SIZE + 1])
    kept = [(k, v) for k in request.GET if k != param for v in request.GET.getlist(k)]
    next_url = None
    if len(items) > PAGE_SIZE:
        items = items[:PAGE_SIZE]
        end = items[-1]
        next_url = "?" + urlencode([*kept, (param, f"{end.pk}:{getattr(end, at).isoformat()}")])
    first_url = ("?" + urlencode(kept)) if after else None
    return Page(items, next_url, first_url)


def _state_hint(state: str, now: datetime) -> Q:
    """Conditions every device in `state` meets that PostgreSQL can test without computing the
    state (whose last step reads each device's release): it tests them first, so a rare state
    is found among 100,000 devices without that work for each. Each is implied by the rule in
    `fleet.selectors._state` at the same `now`; the state filter itself still applies."""
    stale_before = now - timedelta(hours=settings.FLEET_STALE_AFTER_HOURS)
    hints = {
        selectors.REVOKED: Q(revoked_at__isnull=False),
        "pending": Q(last_seen_at__isnull=True, reported_at__isnull=True),
        "stale": (Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=stale_before))
        & (Q(reported_at__isnull=True) | Q(reported_at__lt=stale_before)),
        "failing": Q(reported_at__isnull=False) & ~Q(errors=[]),
    }
    return hints.get(state, Q())


@org_page()
def devices_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The organisation's devices, 50 at a time, filtered by team, state, Codex window and host
    name; each says what it should have, what it has and when it was last heard from."""
    now = timezone.now()
    filters = DeviceListFilter(
        request.GET,
        queryset=selectors.device_states(page.org, include_revoked=True, now=now),
    )
    if filters.is_valid():
        found = filters.qs.filter(_state_hint(filters.form.cleaned_data.get("state") or "", now))
    else:
        found = Device.objects.none()
    devices = _device_page(request, found)
    low, high = _window(page)
    return render(
        request,
        "web/fleet/devices.html",
        {
            "page": page,
            "nav": "devices",
            "filters": filters,
            "given": request.GET,
            "filtered": any(request.GET.get(name) for name in filters.filters),
            "devices": devices,
            "state_choices": STATE_CHOICES,
            "window_choices": WINDOW_CHOICES,
            "team_paths": _team_paths(page),
            "window_low": low,
            "window_high": high,
            "newest_measured": version_text(NEWEST_MEASURED),
            "here": request.get_full_path(),
        },
    )


class MoveForm(forms.Form):
    team = forms.CharField(max_length=1024, validators=[plain_text])
    reason = forms.CharField(max_length=2000, required=False, validators=[plain_text])


class RevokeForm(forms.Form):
    reason = forms.CharField(max_length=2000, required=False, validators=[plain_text])
    next = forms.CharField(max_length=2000, required=False)


def _device(page: OrgPage, pk: uuid.UUID) -> Any:
    found = (
        selectors.device_states(page.org, include_revoked=True)
        .select_related("enrolled_with")
        .filter(pk=pk)
        .first()
    )
    if found is None:
        raise Http404("no such device")
    return found


def _device_render(
    request: HttpRequest,
    page: OrgPage,
    device: Any,
    *,
    move: MoveForm | None = None,
    move_refused: Refusal | None = None,
    revoke: RevokeForm | None = None,
    revoke_refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    low, high = _window(page)
    receipts = keyset_page(
        request,
        selectors.device_receipts(page.org, device.pk),
        key="id",
        descending=True,
        cast=int,
        param="receipts_after",
    )
    reports = _newest_first_page(
        request,
        selectors.device_reports(page.org, device.pk),
        at="reported_at",
        cast=int,
        param="reports_after",
    )
    return render(
        request,
        "web/fleet/device.html",
        {
            "page": page,
            "nav": "devices",
            "device": device,
            "receipts": receipts,
            "reports": reports,
            "window_low": low,
            "window_high": high,
            "team_paths": _team_paths(page) if page.can.fleet__manage else [],
            "move": move or MoveForm(),
            "move_refused": move_refused,
            "revoke": revoke or RevokeForm(),
            "revoke_refused": revoke_refused,
        },
        status=status,
    )


@org_page()
def device_page(request: HttpRequest, page: OrgPage, pk: uuid.UUID) -> HttpResponse:
    """One device: its team, what it was served, applied and should have, what its agent last
    reported, its Codex against the window; its receipt of each release it fetched or applied
    and the history of its reports, newest first; move or revoke it."""
    return _device_render(request, page, _device(page, pk))


@require_POST
@org_page(post=Permission.FLEET_MANAGE)
def device_move(request: HttpRequest, page: OrgPage, pk: uuid.UUID) -> HttpResponse:
    """Serve the device another team's release from its next fetch on."""
    device = _device(page, pk)
    form = MoveForm(request.POST)
    if not form.is_valid():
        return _device_render(request, page, device, move=form, status=400)
    try:
        moved = services.device_move(
            device=device,
            team_path=form.cleaned_data["team"].strip().strip("/"),
            actor=page.actor,
            reason=form.cleaned_data["reason"],
        )
    except NotPermitted:
        raise
    except ApplicationError as exc:
        refused = refusal(exc, MoveForm.base_fields)
        return _device_render(request, page, device, move=form, move_refused=refused, status=400)
    messages.success(request, f"{moved.hostname or moved.pk} moved to {moved.team.path}.")
    return redirect("web-device", page.org.slug, moved.pk)


@require_POST
@org_page(post=Permission.FLEET_MANAGE)
def device_revoke(request: HttpRequest, page: OrgPage, pk: uuid.UUID) -> HttpResponse:
    """Both channels refuse the device's credential from now on; it is listed as revoked."""
    device = _device(page, pk)
    form = RevokeForm(request.POST)
    if not form.is_valid():
        return _device_render(request, page, device, revoke=form, status=400)
    try:
        services.device_revoke(device=device, actor=page.actor, reason=form.cleaned_data["reason"])
    except NotPermitted:
        raise
    except ApplicationError as exc:
        refused = refusal(exc, RevokeForm.base_fields)
        return _device_render(
            request, page, device, revoke=form, revoke_refused=refused, status=400
        )
    messages.success(request, f"{device.hostname or device.pk} revoked: it can fetch nothing more.")
    back = form.cleaned_data["next"]
    # Back to the list it was revoked from (with its filters), never to another site.
    if back.startswith("/") and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(back)
    return redirect("web-device", page.org.slug, device.pk)


# --- enrolment tokens ---------------------------------------------------------------------------


class TokenForm(forms.Form):
    team = forms.CharField(max_length=1024, validators=[plain_text])
    expires = forms.CharField(max_length=16, initial="7d")
    uses = forms.IntegerField(min_value=1, max_value=MAX_INT, required=False)
    note = forms.CharField(max_length=200, required=False, validators=[plain_text])


def _tokens_render(
    request: HttpRequest,
    page: OrgPage,
    *,
    form: TokenForm | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    tokens = keyset_page(
        request,
        selectors.enrollment_tokens(page.org).select_related("created_by"),
        key="id",
        descending=True,
        cast=int,
    )
    now = timezone.now()
    rows = [(token, selectors.token_refusal(token, now)) for token in tokens.items]
    return render(
        request,
        "web/fleet/tokens.html",
        {
            "page": page,
            "nav": "devices",
            "tokens": tokens,
            "rows": rows,
            "form": form or TokenForm(initial={"expires": "7d"}),
            "refused": refused,
            "team_paths": _team_paths(page) if page.can.fleet__manage else [],
        },
        status=status,
    )


@org_page(post=Permission.FLEET_MANAGE)
def enrollment_tokens_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The organisation's enrolment tokens, newest first (never their secrets); a new token's
    secret is shown once, in the answer to the form that made it."""
    if request.method != "POST":
        return _tokens_render(request, page)
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _tokens_render(request, page, form=form, status=400)
    given = form.cleaned_data
    try:
        token, secret = services.enrollment_token_create(
            organization=page.org,
            team_path=given["team"].strip().strip("/"),
            lifetime=duration_parse(given["expires"]),
            max_uses=given["uses"],
            note=given["note"],
            actor=page.actor,
        )
    except NotPermitted:
        raise
    except ApplicationError as exc:
        refused = refusal(exc, TokenForm.base_fields)
        return _tokens_render(request, page, form=form, refused=refused, status=400)
    # Not a redirect: the secret exists only in this answer (not in the session, not in a URL).
    server = settings.BASE_URL.rstrip("/")
    response = render(
        request,
        "web/fleet/token_created.html",
        {
            "page": page,
            "nav": "devices",
            "token": token,
            "secret": secret,
            "command": f"policyhub-agent enroll --server {server} --token {secret}",
            "server": server,
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@org_page(post=Permission.FLEET_MANAGE)
def enrollment_token_revoke(request: HttpRequest, page: OrgPage, token_id: int) -> HttpResponse:
    """No machine enrols with the token from now on; those it enrolled stay."""
    token = selectors.enrollment_token_get(page.org, token_id)
    if token is None:
        raise Http404("no such enrolment token")
    try:
        services.enrollment_token_revoke(token=token, actor=page.actor)
    except NotPermitted:
        raise
    except ApplicationError as exc:
        return _tokens_render(request, page, refused=refusal(exc), status=400)
    messages.success(request, f"Enrolment token {token.prefix}… revoked.")
    return redirect(reverse("web-enrollment-tokens", args=[page.org.slug]))


urlpatterns = [
    path("orgs/<slug:slug>/devices/", devices_page, name="web-devices"),
    path("orgs/<slug:slug>/devices/<uuid:pk>/", device_page, name="web-device"),
    path("orgs/<slug:slug>/devices/<uuid:pk>/-/move/", device_move, name="web-device-move"),
    path("orgs/<slug:slug>/devices/<uuid:pk>/-/revoke/", device_revoke, name="web-device-revoke"),
    path(
        "orgs/<slug:slug>/enrolment-tokens/",
        enrollment_tokens_page,
        name="web-enrollment-tokens",
    ),
    path(
        "orgs/<slug:slug>/enrolment-tokens/<int:token_id>/-/revoke/",
        enrollment_token_revoke,
        name="web-enrollment-token-revoke",
    ),
]
