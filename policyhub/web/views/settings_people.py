"""The people of an organisation, under its settings: members and their roles, invitations,
and API tokens. Everyone sees who the members are; whoever manages members changes roles,
removes people and invites (an owner's role only by an owner), and an owner hands on ownership.
Each person holds API tokens of their own; an invitation's link and a token's secret are shown
once, on the page the browser is sent to after creating them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from policyhub.accounts.models import Invitation, Membership, Role
from policyhub.accounts.permissions import Permission, ceiling_allowed
from policyhub.accounts.selectors import (
    api_tokens,
    invitation_link,
    invitations_pending,
    members,
    membership_of,
)
from policyhub.accounts.services import (
    api_token_create,
    api_token_revoke,
    invitation_create,
    invitation_revoke,
    membership_grant,
    membership_remove,
    ownership_transfer,
)
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.validators import plain_text
from policyhub.web.pages import OrgPage, Refusal, keyset_page, org_page, refusal

ROLE_NAMES = {
    Role.OWNER: "owner",
    Role.ADMIN: "admin",
    Role.TEAM_EDITOR: "team editor (of one team and below)",
    Role.APPROVER: "approver",
    Role.AUDITOR: "auditor",
    Role.VIEWER: "viewer",
}
INVITATION_LIFETIMES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
TOKEN_LIFETIMES = {
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "365d": timedelta(days=365),
}
# Views catch a service's ApplicationError to show it beside the form, but let NotPermitted
# through: `org_page` answers it with a 403 that says why.


# --- forms --------------------------------------------------------------------------------------


def _role_choices(page: OrgPage) -> list[tuple[str, str]]:
    """The roles this person may give: an owner only by an owner."""
    return [
        (role, ROLE_NAMES[Role(role)])
        for role in Role.values
        if role != Role.OWNER or page.can.owners__manage
    ]


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role")
    team = forms.CharField(
        max_length=1024,
        required=False,
        validators=[plain_text],
        label="Team path",
        help_text="For a team editor only: the team they may edit, with the teams below it.",
    )

    def __init__(self, *args: Any, roles: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = roles  # type: ignore[attr-defined]


class InvitationForm(RoleForm):
    email = forms.EmailField(max_length=254, label="Email address")
    expires = forms.ChoiceField(
        choices=[("1d", "in 1 day"), ("7d", "in 7 days"), ("30d", "in 30 days")],
        initial="7d",
        label="Link expires",
    )
    field_order = ["email", "role", "team", "expires"]


class TransferForm(forms.Form):
    user = forms.EmailField(
        max_length=254,
        label="New owner's email address",
        help_text="A member of this organisation; you stay on as an admin.",
    )


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[plain_text], label="Name")
    role = forms.ChoiceField(
        label="Role ceiling", help_text="The token never does more than this, nor than you."
    )
    expires = forms.ChoiceField(
        choices=[
            ("7d", "in 7 days"),
            ("30d", "in 30 days"),
            ("90d", "in 90 days"),
            ("365d", "in 1 year"),
        ],
        initial="90d",
        label="Expires",
    )

    def __init__(self, *args: Any, roles: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = roles  # type: ignore[attr-defined]


def form_refusal(form: forms.Form, refused: ApplicationError, paths: Mapping[str, str]) -> Refusal:
    """A refusal's findings onto the form's fields (`paths`: document or service path → field);
    the rest stay on the returned refusal, shown above the form."""
    return refusal(refused, renamed=paths).onto(form)


# --- members ------------------------------------------------------------------------------------


class MemberSearch(forms.Form):
    q = forms.CharField(max_length=254, required=False, label="Email contains")


def _members(
    request: HttpRequest,
    page: OrgPage,
    *,
    failed: int | None = None,
    form: RoleForm | None = None,
    transfer: TransferForm | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    search = MemberSearch(request.GET)
    rows = members(page.org).only("id", "role", "user__email", "user__username", "team__path")
    if search.is_valid() and search.cleaned_data["q"]:
        rows = rows.filter(user__email__icontains=search.cleaned_data["q"])
    listed = keyset_page(request, rows, key="id", cast=int)
    roles = _role_choices(page)
    shown = []
    for membership in listed.items:
        editable = page.can.members__manage and (
            membership.role != Role.OWNER or page.can.owners__manage
        )
        row_form = form if failed == membership.pk and form is not None else None
        if editable and row_form is None:
            row_form = RoleForm(
                prefix=f"m{membership.pk}",
                roles=roles,
                initial={
                    "role": membership.role,
                    "team": membership.team.path if membership.team else "",
                },
            )
        shown.append((membership, row_form if editable else None))
    return render(
        request,
        "web/settings/members.html",
        {
            "page": page,
            "nav": "settings",
            "tab": "members",
            "search": search,
            "rows": shown,
            "listed": listed,
            "failed": failed,
            "refused": refused,
            "transfer": transfer or TransferForm(),
            "role_names": ROLE_NAMES,
        },
        status=status,
    )


def _membership(page: OrgPage, pk: int) -> Membership:
    found = members(page.org).filter(pk=pk).first()
    if found is None:
        raise Http404("no such member")
    return found


@org_page()
def members_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The organisation's members and their roles, a page at a time; whoever manages members
    changes roles and removes people here, and an owner hands on ownership."""
    return _members(request, page)


@require_POST
@org_page(post=Permission.MEMBERS_MANAGE)
def member_role(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """Give a member another role (a team editor with their team)."""
    membership = _membership(page, pk)
    form = RoleForm(request.POST, prefix=f"m{pk}", roles=_role_choices(page))
    if form.is_valid():
        role, team = form.cleaned_data["role"], form.cleaned_data["team"].strip().strip("/")
        try:
            membership_grant(
                actor=page.actor,
                organization=page.org,
                user=membership.user,
                role=role,
                team_path=team or None,
            )
        except NotPermitted:
            raise
        except ApplicationError as exc:
            found = form_refusal(form, exc, {"role": "role", "team": "team"})
            return _members(request, page, failed=pk, form=form, refused=found, status=400)
        who = membership.user.email or membership.user.username
        messages.success(request, f"{who} is now {ROLE_NAMES[Role(role)]}.")
        return redirect("web-settings-members", page.org.slug)
    return _members(request, page, failed=pk, form=form, status=400)


@require_POST
@org_page(post=Permission.MEMBERS_MANAGE)
def member_remove(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """Take someone out of the organisation; their API tokens here are revoked with it."""
    membership = _membership(page, pk)
    try:
        membership_remove(actor=page.actor, membership=membership)
    except NotPermitted:
        raise
    except ApplicationError as exc:
        return _members(request, page, failed=pk, refused=refusal(exc), status=400)
    who = membership.user.email or membership.user.username
    messages.success(request, f"{who} is no longer a member; their API tokens are revoked.")
    return redirect("web-settings-members", page.org.slug)


@require_POST
@org_page(post=Permission.OWNERS_MANAGE)
def ownership_hand_on(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """Make another member an owner; the acting owner stays on as an admin."""
    form = TransferForm(request.POST)
    if not form.is_valid():
        return _members(request, page, transfer=form, status=400)
    target = membership_of(page.org, form.cleaned_data["user"])
    if target is None:
        form.add_error("user", f"is not a member of {page.org.slug}")
        return _members(request, page, transfer=form, status=400)
    try:
        ownership_transfer(actor=page.actor, organization=page.org, to=target.user)
    except NotPermitted:
        raise
    except ApplicationError as exc:
        found = form_refusal(form, exc, {"to": "user"})
        return _members(request, page, transfer=form, refused=found, status=400)
    messages.success(request, f"{form.cleaned_data['user']} is now an owner.")
    return redirect("web-settings-members", page.org.slug)


def _shown_once(answer: HttpResponse) -> HttpResponse:
    """A page carrying a secret (an invitation link, a token) is the POST's own answer: the
    secret is never stored, not even in the session, and no cache keeps the page."""
    answer["Cache-Control"] = "no-store"
    return answer


# --- invitations --------------------------------------------------------------------------------


def _invitations(
    request: HttpRequest,
    page: OrgPage,
    *,
    created: dict[str, str] | None = None,
    form: InvitationForm | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    page.require(Permission.MEMBERS_MANAGE)
    pending = invitations_pending(page.org).defer("secret_hash")
    listed = keyset_page(request, pending, key="id", descending=True, cast=int)
    answer = render(
        request,
        "web/settings/invitations.html",
        {
            "page": page,
            "nav": "settings",
            "tab": "invitations",
            "form": form or InvitationForm(roles=_role_choices(page)),
            "refused": refused,
            "listed": listed,
            "created": created,
            "role_names": ROLE_NAMES,
        },
        status=status,
    )
    return _shown_once(answer) if created else answer


@org_page(post=Permission.MEMBERS_MANAGE)
def invitations_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """Pending invitations, and inviting someone by email: the link is shown once, here."""
    if request.method != "POST":
        return _invitations(request, page)
    form = InvitationForm(request.POST, roles=_role_choices(page))
    if not form.is_valid():
        return _invitations(request, page, form=form, status=400)
    data = form.cleaned_data
    try:
        invitation, secret = invitation_create(
            actor=page.actor,
            organization=page.org,
            email=data["email"],
            role=data["role"],
            team_path=data["team"].strip().strip("/"),
            lifetime=INVITATION_LIFETIMES[data["expires"]],
        )
    except NotPermitted:
        raise
    except ApplicationError as exc:
        paths = {name: name for name in ("email", "role", "team", "expires")}
        found = form_refusal(form, exc, paths)
        return _invitations(request, page, form=form, refused=found, status=400)
    messages.success(request, f"{invitation.email} is invited; the link was mailed to them.")
    created = {"kind": "invitation", "email": invitation.email, "link": invitation_link(secret)}
    return _invitations(request, page, created=created)


@require_POST
@org_page(post=Permission.MEMBERS_MANAGE)
def invitation_withdraw(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """Withdraw a pending invitation: its link stops working."""
    found = Invitation.objects.filter(organization=page.org, pk=pk).first()
    if found is None:
        raise Http404("no such invitation")
    invitation_revoke(actor=page.actor, invitation=found)
    messages.success(request, f"The invitation of {found.email} is withdrawn.")
    return redirect("web-settings-invitations", page.org.slug)


# --- API tokens ---------------------------------------------------------------------------------


def _ceilings(page: OrgPage) -> list[tuple[str, str]]:
    """The token roles this person may give (never above their own role)."""
    own = Membership(role=page.access.role or "")
    return [(role, ROLE_NAMES[Role(role)]) for role in Role.values if ceiling_allowed(role, own)]


def _tokens(
    request: HttpRequest,
    page: OrgPage,
    *,
    created: dict[str, str] | None = None,
    form: TokenForm | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    everyone = request.GET.get("all") == "1"
    if everyone:
        page.require(Permission.MEMBERS_MANAGE)
    user = None if everyone else page.actor.user
    rows = api_tokens(page.org, user=user).defer("secret_hash")
    listed = keyset_page(request, rows, key="id", descending=True, cast=int)
    answer = render(
        request,
        "web/settings/api_tokens.html",
        {
            "page": page,
            "nav": "settings",
            "tab": "api-tokens",
            "everyone": everyone,
            "form": form or TokenForm(roles=_ceilings(page)),
            "refused": refused,
            "listed": listed,
            "now": timezone.now(),
            "created": created,
            "role_names": ROLE_NAMES,
        },
        status=status,
    )
    return _shown_once(answer) if created else answer


@org_page(post=Permission.API_TOKENS)
def api_tokens_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The person's own API tokens (everyone's, for whoever manages members), and a new one:
    its secret is shown once, here."""
    if request.method != "POST":
        return _tokens(request, page)
    form = TokenForm(request.POST, roles=_ceilings(page))
    if not form.is_valid():
        return _tokens(request, page, form=form, status=400)
    data = form.cleaned_data
    try:
        token, secret = api_token_create(
            actor=page.actor,
            organization=page.org,
            name=data["name"],
            role=data["role"],
            lifetime=TOKEN_LIFETIMES[data["expires"]],
        )
    except NotPermitted:
        raise
    except ApplicationError as exc:
        found = form_refusal(form, exc, {name: name for name in ("name", "role", "expires")})
        return _tokens(request, page, form=form, refused=found, status=400)
    messages.success(request, f"API token {token.name} is created.")
    created = {"kind": "api_token", "name": token.name, "secret": secret}
    return _tokens(request, page, created=created)


@require_POST
@org_page(post=Permission.API_TOKENS)
def api_token_withdraw(request: HttpRequest, page: OrgPage, pk: int) -> HttpResponse:
    """Revoke a token at once: one's own, or anyone's for whoever manages members."""
    found = api_tokens(page.org).filter(pk=pk).first()
    if found is None:
        raise Http404("no such API token")
    api_token_revoke(actor=page.actor, token=found)
    messages.success(request, f"API token {found.name} is revoked.")
    back = reverse("web-settings-api-tokens", args=[page.org.slug])
    return redirect(f"{back}?all=1" if request.POST.get("all") == "1" else back)


urlpatterns = [
    path("orgs/<slug:slug>/settings/members/", members_page, name="web-settings-members"),
    path("orgs/<slug:slug>/settings/members/<int:pk>/role/", member_role, name="web-member-role"),
    path(
        "orgs/<slug:slug>/settings/members/<int:pk>/remove/",
        member_remove,
        name="web-member-remove",
    ),
    path(
        "orgs/<slug:slug>/settings/members/transfer/",
        ownership_hand_on,
        name="web-ownership-transfer",
    ),
    path(
        "orgs/<slug:slug>/settings/invitations/",
        invitations_page,
        name="web-settings-invitations",
    ),
    path(
        "orgs/<slug:slug>/settings/invitations/<int:pk>/revoke/",
        invitation_withdraw,
        name="web-invitation-revoke",
    ),
    path("orgs/<slug:slug>/settings/api-tokens/", api_tokens_page, name="web-settings-api-tokens"),
    path(
        "orgs/<slug:slug>/settings/api-tokens/<int:pk>/revoke/",
        api_token_withdraw,
        name="web-api-token-revoke",
    ),
]
