"""Organisation settings: its name and rules (approval, single sign-on), the Codex support window
and the signing keys (rotation and revocation); members, invitations and API tokens are in
`settings_people`.

Everyone may read what is not secret; each form is offered only to a role that may use it. The
name and the Codex window belong to the policy, so editing them goes into the editor's own
unpublished change set; the rules and the keys change at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from policyhub.accounts.permissions import ORGANIZATION_NODE, Permission
from policyhub.accounts.services import organization_settings_update
from policyhub.changes.selectors import change_set_draft_of
from policyhub.changes.services import change_set_draft_edit
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.policies.document import codex_window
from policyhub.policies.domain import Json
from policyhub.policies.window import window_unmeasured
from policyhub.releases.models import SigningKey
from policyhub.releases.selectors import releases_to_resign, signing_keys
from policyhub.releases.services.keys import signing_key_rotate
from policyhub.releases.services.revocation import signing_key_revoke
from policyhub.validators import plain_text
from policyhub.web.pages import OrgPage, Refusal, keyset_page, org_page
from policyhub.web.views.settings_people import form_refusal
from policyhub.web.views.settings_people import urlpatterns as people_urlpatterns

# Views catch a service's ApplicationError to show it beside the form, but let NotPermitted
# through: `org_page` answers it with a 403 that says why.


# --- forms --------------------------------------------------------------------------------------


class RulesForm(forms.Form):
    requires_approval = forms.BooleanField(
        required=False,
        label="Change sets need approval by a second person",
        help_text="An owner, admin or approver other than the author approves each change set.",
    )
    sso_required = forms.BooleanField(
        required=False,
        label="Members must sign in through single sign-on",
        help_text="Sessions signed in another way no longer open this organisation.",
    )


class NameForm(forms.Form):
    name = forms.CharField(max_length=200, validators=[plain_text], label="Name")
    reason = forms.CharField(max_length=500, required=False, label="Reason (optional)")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class CodexWindowForm(forms.Form):
    min_version = forms.CharField(max_length=32, validators=[plain_text], label="Oldest version")
    max_version = forms.CharField(max_length=32, validators=[plain_text], label="Newest version")
    accept_unenforced = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Accepted as not enforced by older versions",
        help_text="One requirement key a line (e.g. requirements.allowed_web_search_modes).",
    )
    managed_pins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Backed by managed_config.toml",
        help_text="One key a line, pinned for every version.",
    )
    reason = forms.CharField(max_length=500, required=False, label="Reason (optional)")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in ("accept_unenforced", "managed_pins"):
            items = _lines(cleaned.get(name, ""))
            if len(items) > 1000 or any(len(item) > 200 for item in items):
                self.add_error(name, "at most 1,000 keys of at most 200 characters")
            for item in items:
                try:
                    plain_text(item)
                except forms.ValidationError as exc:
                    self.add_error(name, exc)
                    break
        return cleaned


# --- the organisation ---------------------------------------------------------------------------


def _overview(
    request: HttpRequest,
    page: OrgPage,
    *,
    rules: RulesForm | None = None,
    name: NameForm | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    org = page.org
    rules = rules or RulesForm(
        initial={"requires_approval": org.requires_approval, "sso_required": org.sso_required}
    )
    return render(
        request,
        "web/settings/organization.html",
        {
            "page": page,
            "nav": "settings",
            "tab": "organization",
            "rules": rules,
            "name_form": name or NameForm(initial={"name": org.name}),
            "may_edit_policy": page.can.edit(ORGANIZATION_NODE),
            "refused": refused,
        },
        status=status,
    )


@org_page(post=Permission.ORG_SETTINGS)
def settings_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The organisation's name and rules; whoever holds `org.settings` changes the rules."""
    if request.method != "POST":
        return _overview(request, page)
    form = RulesForm(request.POST)
    if not form.is_valid():
        return _overview(request, page, rules=form, status=400)
    try:
        organization_settings_update(actor=page.actor, organization=page.org, **form.cleaned_data)
    except NotPermitted:
        raise
    except ApplicationError as exc:
        paths = {"requires_approval": "requires_approval", "sso_required": "sso_required"}
        found = form_refusal(form, exc, paths)
        return _overview(request, page, rules=form, refused=found, status=400)
    messages.success(request, "The organisation's rules are saved.")
    return redirect("web-settings", page.org.slug)


@require_POST
@org_page(post=Permission.POLICY_EDIT)
def name_edit(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """Rename the organisation: part of the policy, so it goes into the editor's unpublished
    change set and takes effect when that is published."""
    form = NameForm(request.POST)
    if not form.is_valid():
        return _overview(request, page, name=form, status=400)
    wanted = form.cleaned_data["name"]

    def rename(raw: Json) -> None:
        raw["organization"]["name"] = wanted

    return _draft_edit(
        request,
        page,
        form,
        rename,
        {"organization.name": "name"},
        done=("web-settings", "The new name is in your unpublished change set."),
        again=lambda found: _overview(request, page, name=form, refused=found, status=400),
    )


def _draft_edit(
    request: HttpRequest,
    page: OrgPage,
    form: forms.Form,
    edit: Callable[[Json], None],
    paths: Mapping[str, str],
    *,
    done: tuple[str, str],
    again: Callable[[Refusal], HttpResponse],
) -> HttpResponse:
    try:
        change_set_draft_edit(
            actor=page.actor,
            organization=page.org,
            edit=edit,
            reason=form.cleaned_data.get("reason", ""),
        )
    except NotPermitted:
        raise
    except ApplicationError as exc:
        return again(form_refusal(form, exc, paths))
    view, message = done
    messages.success(request, message)
    return redirect(view, page.org.slug)


# --- the Codex support window -------------------------------------------------------------------


CODEX_PATHS = {
    f"codex.{name}": name
    for name in ("min_version", "max_version", "accept_unenforced", "managed_pins")
}


def _codex(
    request: HttpRequest,
    page: OrgPage,
    *,
    form: CodexWindowForm | None = None,
    refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    window = codex_window(page.org.codex_window)
    if form is None:
        form = CodexWindowForm(
            initial={
                "min_version": window.min_version,
                "max_version": window.max_version,
                "accept_unenforced": "\n".join(window.accept_unenforced),
                "managed_pins": "\n".join(window.managed_pins),
            }
        )
    draft = None
    if page.actor.user is not None:
        draft = change_set_draft_of(page.org, page.actor.user.pk)
    # The draft's own lines about the window (its plan, not its whole document: cheap to read).
    pending = [line for line in draft.plan if line.split(" ")[1:2] == ["codex"]] if draft else []
    return render(
        request,
        "web/settings/codex.html",
        {
            "page": page,
            "nav": "settings",
            "tab": "codex",
            "window": window,
            "unmeasured": window_unmeasured(window),
            "form": form,
            "refused": refused,
            "draft": draft,
            "pending": pending,
            "may_edit_policy": page.can.edit(ORGANIZATION_NODE),
        },
        status=status,
    )


@org_page(post=Permission.POLICY_EDIT)
def codex_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The Codex versions the organisation's machines run; an editor of the whole policy changes
    them into their unpublished change set, where every team's files are checked for each."""
    if request.method != "POST":
        return _codex(request, page)
    form = CodexWindowForm(request.POST)
    if not form.is_valid():
        return _codex(request, page, form=form, status=400)
    data = form.cleaned_data
    wanted = {
        "min_version": data["min_version"].strip(),
        "max_version": data["max_version"].strip(),
        "accept_unenforced": _lines(data["accept_unenforced"]),
        "managed_pins": _lines(data["managed_pins"]),
    }

    def replace(raw: Json) -> None:
        raw["codex"] = {key: value for key, value in wanted.items() if value}

    return _draft_edit(
        request,
        page,
        form,
        replace,
        CODEX_PATHS,
        done=("web-settings-codex", "The Codex window is in your unpublished change set."),
        again=lambda found: _codex(request, page, form=form, refused=found, status=400),
    )


# --- signing keys -------------------------------------------------------------------------------


class RevokeKeyForm(forms.Form):
    key_id = forms.CharField(max_length=32, label="Key")
    reason = forms.CharField(max_length=2000, validators=[plain_text], label="Reason")


@org_page(post=Permission.SIGNING_KEY_ROTATE)
def signing_keys_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """The keys releases are signed with: the active one and those it replaced, which still
    verify what they signed, and the revoked ones, which verify nothing; rotating makes a new
    active key, endorsed by the old one; revoking is signing_key_revoke_view."""
    if request.method == "POST":
        key = signing_key_rotate(actor=page.actor, organization=page.org)
        messages.success(request, f"Key {key.key_id} now signs new releases.")
        return redirect("web-settings-signing-keys", page.org.slug)
    return _signing_keys(request, page)


def _signing_keys(
    request: HttpRequest,
    page: OrgPage,
    *,
    revoke: RevokeKeyForm | None = None,
    revoke_refused: Refusal | None = None,
    status: int = 200,
) -> HttpResponse:
    keys = (
        signing_keys(page.org)
        .select_related("endorsed_by")
        .only(
            "id",
            "key_id",
            "status",
            "created_at",
            "retired_at",
            "revoked_at",
            "revocation_reason",
            "endorsed_by__key_id",
        )
    )
    listed = keyset_page(request, keys, key="id", descending=True, cast=int)
    revoked = SigningKey.Status.REVOKED
    revocable = (
        list(signing_keys(page.org).exclude(status=revoked).only("key_id", "status"))
        if page.can.signing_key__revoke
        else []
    )
    # Only once a key was revoked can a team still be served what one signed.
    awaiting = (
        releases_to_resign().filter(organization=page.org).count()
        if any(key.status == revoked for key in listed.items)
        else 0
    )
    return render(
        request,
        "web/settings/signing_keys.html",
        {
            "page": page,
            "nav": "settings",
            "tab": "signing-keys",
            "listed": listed,
            "active": SigningKey.Status.ACTIVE,
            "revoked": revoked,
            "revocable": revocable,
            "awaiting_resign": awaiting,
            "revoke": revoke or RevokeKeyForm(),
            "revoke_refused": revoke_refused,
        },
        status=status,
    )


@require_POST
@org_page(post=Permission.SIGNING_KEY_REVOKE)
def signing_key_revoke_view(request: HttpRequest, page: OrgPage) -> HttpResponse:
    """Revoke a compromised key (signing_key_revoke); the page says what it did."""
    form = RevokeKeyForm(request.POST)
    if not form.is_valid():
        return _signing_keys(request, page, revoke=form, status=400)
    try:
        done = signing_key_revoke(
            actor=page.actor,
            organization=page.org,
            key_id=form.cleaned_data["key_id"].strip(),
            reason=form.cleaned_data["reason"],
        )
    except NotPermitted:
        raise
    except ApplicationError as exc:
        refused = form_refusal(form, exc, {"key_id": "key_id", "reason": "reason"})
        return _signing_keys(request, page, revoke=form, revoke_refused=refused, status=400)
    said = f"Key {done.revoked.key_id} is revoked: machines stop trusting it."
    if done.reenrolment_needed:
        said += (
            f" The new active key {done.active.key_id} is endorsed by no key, so every machine "
            "must be enrolled again before it applies another release."
        )
    elif done.rotated and done.active.endorsed_by is not None:
        said += (
            f" The new active key {done.active.key_id} is endorsed by retired key "
            f"{done.active.endorsed_by.key_id}."
        )
    if done.teams_to_resign:
        said += (
            f" {done.teams_to_resign} team(s) get their release signed again by "
            f"{done.active.key_id}."
        )
    messages.success(request, said)
    return redirect("web-settings-signing-keys", page.org.slug)


urlpatterns = [
    path("orgs/<slug:slug>/settings/", settings_page, name="web-settings"),
    path("orgs/<slug:slug>/settings/name/", name_edit, name="web-settings-name"),
    path("orgs/<slug:slug>/settings/codex/", codex_page, name="web-settings-codex"),
    path(
        "orgs/<slug:slug>/settings/signing-keys/",
        signing_keys_page,
        name="web-settings-signing-keys",
    ),
    path(
        "orgs/<slug:slug>/settings/signing-keys/revoke/",
        signing_key_revoke_view,
        name="web-signing-key-revoke",
    ),
    *people_urlpatterns,
]
