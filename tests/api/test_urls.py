"""Every URL pattern, visited by every kind of caller: the access matrix of the whole site.

Each named route has an entry saying what it is (an organisation API, a page, a device
endpoint, public) and which permission each of its methods needs. A route without an entry, an
entry without a route, or a handler method the entry does not name fails the suite, so a new
URL cannot ship unexamined. Then every route and method is requested as: nobody (401 for the
API, a redirect to sign-in for pages), a member of another organisation (404), each role (its
permission allows it, or 403), and an admin's token whose ceiling is only a viewer's.

"Allowed" means the request got past access control: any answer but 401, 403, 404 and 405. The
bodies are empty, so an allowed write usually ends in a 400 naming its fields, which is what a
caller with the right but a bad request should see. Each request runs in a savepoint that is
rolled back, so every route meets the same world.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from policyhub.accounts.models import Role
from policyhub.accounts.permissions import ROLE_PERMISSIONS, Permission
from policyhub.accounts.services import (
    api_token_create,
)
from tests.api.conftest import World
from tests.conftest import acting

VIEW, EDIT, REVIEW = Permission.ORG_VIEW, Permission.POLICY_EDIT, Permission.CHANGE_SET_REVIEW
PUBLISH, RELEASES, FLEET = Permission.PUBLISH, Permission.RELEASE_MANAGE, Permission.FLEET_MANAGE
SETTINGS, MEMBERS, OWNERS = (
    Permission.ORG_SETTINGS,
    Permission.MEMBERS_MANAGE,
    Permission.OWNERS_MANAGE,
)
KEYS, TOKENS = Permission.SIGNING_KEY_ROTATE, Permission.API_TOKENS
REVOKE = Permission.SIGNING_KEY_REVOKE
AUDIT = Permission.AUDIT_VIEW

API, PAGE, DEVICE, PUBLIC, ACCOUNT = "api", "page", "device", "public", "account"


@dataclass(frozen=True)
class Route:
    kind: str
    methods: Mapping[str, Permission | None]
    kwargs: Callable[[World], dict[str, Any]] = lambda world: {}
    query: Mapping[str, str] = field(default_factory=dict)


def org(**more: str) -> Callable[[World], dict[str, Any]]:
    """URL kwargs: the organisation's slug, and ids of the world's objects by name."""
    return lambda world: {"slug": "acme", **{k: world.ids[v] for k, v in more.items()}}


ROUTES: dict[str, Route] = {
    # Public: the API's description, and the invitation page (it tells a stranger to sign in).
    "api-schema": Route(PUBLIC, {"GET": None}),
    "api-docs": Route(PUBLIC, {"GET": None}),
    "invitation": Route(ACCOUNT, {"GET": None, "POST": None}, lambda w: {"secret": "x" * 43}),
    # Pages.
    "home": Route(PAGE, {"GET": None}),
    "organization": Route(PAGE, {"GET": VIEW}, org()),
    "team": Route(PAGE, {"GET": VIEW}, org(path="team_path")),
    "team-mobileconfig": Route(PAGE, {"GET": VIEW}, org(path="team_path")),
    "team-zip": Route(PAGE, {"GET": VIEW}, org(path="team_path")),
    "team-history": Route(PAGE, {"GET": VIEW}, org(path="team_path")),
    "web-teams": Route(PAGE, {"GET": VIEW}, org()),
    "web-team-new": Route(PAGE, {"GET": EDIT, "POST": EDIT}, org()),
    "web-team-rename": Route(PAGE, {"GET": EDIT, "POST": EDIT}, org(path="team_path")),
    "web-team-move": Route(PAGE, {"GET": EDIT, "POST": EDIT}, org(path="team_path")),
    "web-team-delete": Route(PAGE, {"GET": EDIT, "POST": EDIT}, org(path="team_path")),
    "team-edit": Route(PAGE, {"POST": EDIT}, org(path="team_path", section="section")),
    "team-validate": Route(PAGE, {"POST": EDIT}, org(path="team_path", section="section")),
    "web-root": Route(PAGE, {"GET": VIEW}, org()),
    "web-root-edit": Route(PAGE, {"POST": EDIT}, org(section="section")),
    "web-root-validate": Route(PAGE, {"POST": EDIT}, org(section="section")),
    "web-endpoints": Route(PAGE, {"GET": VIEW}, org()),
    "web-endpoint-new": Route(PAGE, {"GET": EDIT, "POST": EDIT}, org()),
    "web-endpoint": Route(PAGE, {"GET": VIEW}, org(name="endpoint")),
    "web-endpoint-edit": Route(PAGE, {"GET": EDIT, "POST": EDIT}, org(name="endpoint")),
    "web-endpoint-delete": Route(PAGE, {"POST": EDIT}, org(name="endpoint")),
    "web-change-sets": Route(PAGE, {"GET": VIEW}, org()),
    "web-change-set": Route(PAGE, {"GET": VIEW}, org(pk="change_set")),
    "web-change-set-preview": Route(PAGE, {"GET": VIEW}, org(pk="change_set")),
    "web-change-set-describe": Route(PAGE, {"POST": EDIT}, org(pk="change_set")),
    "web-change-set-submit": Route(PAGE, {"POST": EDIT}, org(pk="change_set")),
    "web-change-set-discard": Route(PAGE, {"POST": EDIT}, org(pk="change_set")),
    "web-change-set-approve": Route(PAGE, {"POST": REVIEW}, org(pk="change_set")),
    "web-change-set-reject": Route(PAGE, {"POST": REVIEW}, org(pk="change_set")),
    "web-change-set-schedule": Route(PAGE, {"POST": PUBLISH}, org(pk="change_set")),
    "web-change-set-publish": Route(PAGE, {"POST": PUBLISH}, org(pk="change_set")),
    "web-publishes": Route(PAGE, {"GET": VIEW, "POST": PUBLISH}, org()),
    "web-publish-run": Route(PAGE, {"GET": VIEW}, org(pk="publish_run")),
    "web-publish-run-progress": Route(PAGE, {"GET": VIEW}, org(pk="publish_run")),
    "web-releases": Route(PAGE, {"GET": VIEW}, org()),
    "web-team-releases": Route(PAGE, {"GET": VIEW}, org(path="team_path")),
    "web-release-rollback": Route(
        PAGE, {"GET": RELEASES, "POST": RELEASES}, org(path="team_path"), {"to": "1"}
    ),
    # The world's release of platform/ci is its first revision.
    "web-release-receipts": Route(
        PAGE, {"GET": VIEW}, lambda w: {**org(path="team_path")(w), "revision": 1}
    ),
    "web-rollout-start": Route(PAGE, {"POST": RELEASES}, org(path="team_path")),
    "web-rollout-promote": Route(PAGE, {"POST": RELEASES}, org(path="team_path")),
    "web-rollout-abort": Route(PAGE, {"POST": RELEASES}, org(path="team_path")),
    "web-devices": Route(PAGE, {"GET": VIEW}, org()),
    "web-device": Route(PAGE, {"GET": VIEW}, org(pk="device")),
    "web-device-move": Route(PAGE, {"POST": FLEET}, org(pk="device")),
    "web-device-revoke": Route(PAGE, {"POST": FLEET}, org(pk="device")),
    "web-enrollment-tokens": Route(PAGE, {"GET": VIEW, "POST": FLEET}, org()),
    "web-enrollment-token-revoke": Route(PAGE, {"POST": FLEET}, org(token_id="enrollment_token")),
    "web-settings": Route(PAGE, {"GET": VIEW, "POST": SETTINGS}, org()),
    "web-settings-name": Route(PAGE, {"POST": EDIT}, org()),
    "web-settings-codex": Route(PAGE, {"GET": VIEW, "POST": EDIT}, org()),
    "web-settings-signing-keys": Route(PAGE, {"GET": VIEW, "POST": KEYS}, org()),
    "web-signing-key-revoke": Route(PAGE, {"POST": REVOKE}, org()),
    "web-settings-members": Route(PAGE, {"GET": VIEW}, org()),
    "web-member-role": Route(PAGE, {"POST": MEMBERS}, org(pk="membership")),
    "web-member-remove": Route(PAGE, {"POST": MEMBERS}, org(pk="membership")),
    "web-ownership-transfer": Route(PAGE, {"POST": OWNERS}, org()),
    "web-settings-invitations": Route(PAGE, {"GET": MEMBERS, "POST": MEMBERS}, org()),
    "web-invitation-revoke": Route(PAGE, {"POST": MEMBERS}, org(pk="invitation")),
    "web-settings-api-tokens": Route(PAGE, {"GET": TOKENS, "POST": TOKENS}, org()),
    # The world's token is the owner's: revoking another person's token takes members.manage.
    "web-api-token-revoke": Route(PAGE, {"POST": MEMBERS}, org(pk="api_token")),
    "web-audit": Route(PAGE, {"GET": Permission.AUDIT_VIEW}, org()),
    # What devices call, with their own credentials.
    "config-server-bundle": Route(DEVICE, {"GET": None}, lambda w: {"credential": "phd_x"}),
    "device-bundle": Route(DEVICE, {"GET": None}),
    "device-enroll": Route(DEVICE, {"POST": None}),
    "device-status": Route(DEVICE, {"POST": None}),
    "signing-keys": Route(DEVICE, {"GET": None}),
    "device-assignment": Route(DEVICE, {"GET": None}),
    "device-credential": Route(DEVICE, {"POST": None}),
    # The organisation API.
    "org-list": Route(API, {"GET": None}),
    "org-detail": Route(API, {"GET": VIEW, "PATCH": SETTINGS}, org()),
    "member-list": Route(API, {"GET": VIEW}, org()),
    "member-detail": Route(
        API, {"GET": VIEW, "PATCH": MEMBERS, "DELETE": MEMBERS}, org(pk="membership")
    ),
    "member-transfer-ownership": Route(API, {"POST": OWNERS}, org()),
    "invitation-list": Route(API, {"GET": MEMBERS, "POST": MEMBERS}, org()),
    "invitation-revoke": Route(API, {"POST": MEMBERS}, org(pk="invitation")),
    "api-token-list": Route(API, {"GET": TOKENS, "POST": TOKENS}, org()),
    # The world's token is the owner's: revoking another person's token takes members.manage.
    "api-token-revoke": Route(API, {"POST": MEMBERS}, org(pk="api_token")),
    "endpoints": Route(API, {"GET": VIEW, "POST": EDIT}, org()),
    "endpoint": Route(API, {"GET": VIEW, "PUT": EDIT, "DELETE": EDIT}, org(name="endpoint")),
    "teams": Route(API, {"GET": VIEW, "POST": EDIT}, org()),
    "team-api": Route(API, {"GET": VIEW, "PATCH": EDIT, "DELETE": EDIT}, org(pk="team")),
    "team-node": Route(API, {"GET": VIEW, "PUT": EDIT, "PATCH": EDIT}, org(pk="team")),
    "root-node": Route(API, {"GET": VIEW, "PUT": EDIT, "PATCH": EDIT}, org()),
    "codex-window": Route(API, {"GET": VIEW, "PUT": EDIT}, org()),
    # A moment in the future is refused (400): the matrix only asks who gets that far.
    "team-as-of": Route(API, {"GET": VIEW}, org(path="team_path"), {"at": "2999-01-01T00:00:00Z"}),
    "team-timeline": Route(API, {"GET": Permission.AUDIT_VIEW}, org(path="team_path")),
    "policy-document": Route(API, {"GET": VIEW}, org()),
    "policy-plan": Route(API, {"POST": VIEW}, org()),
    "policy-apply": Route(API, {"POST": EDIT}, org()),
    "change-sets": Route(API, {"GET": VIEW, "POST": EDIT}, org()),
    "change-set": Route(API, {"GET": VIEW}, org(pk="change_set")),
    "change-set-plan": Route(API, {"GET": VIEW}, org(pk="change_set")),
    "change-set-diff": Route(API, {"GET": VIEW}, org(pk="change_set")),
    "change-set-submit": Route(API, {"POST": EDIT}, org(pk="change_set")),
    "change-set-approve": Route(API, {"POST": REVIEW}, org(pk="change_set")),
    "change-set-reject": Route(API, {"POST": REVIEW}, org(pk="change_set")),
    "change-set-schedule": Route(API, {"POST": PUBLISH}, org(pk="change_set")),
    "publish-runs": Route(API, {"GET": VIEW, "POST": PUBLISH}, org()),
    "publish-run": Route(API, {"GET": VIEW}, org(pk="publish_run")),
    "releases": Route(API, {"GET": VIEW}, org()),
    "release": Route(API, {"GET": VIEW}, org(pk="release")),
    "release-files": Route(API, {"GET": VIEW}, org(pk="release")),
    # Receipts: whoever sees the fleet, auditors included (they hold org.view with audit.view).
    "release-receipts": Route(API, {"GET": VIEW}, org(pk="release")),
    "release-diff": Route(
        API, {"GET": VIEW}, org(), {"team": "platform/ci", "from": "1", "to": "1"}
    ),
    "release-rollback": Route(API, {"POST": RELEASES}, org()),
    "rollout-start": Route(API, {"POST": RELEASES}, org()),
    "rollout-promote": Route(API, {"POST": RELEASES}, org()),
    "rollout-abort": Route(API, {"POST": RELEASES}, org()),
    "org-signing-keys": Route(API, {"GET": VIEW}, org()),
    "signing-key-rotate": Route(API, {"POST": KEYS}, org()),
    "signing-key-revoke": Route(API, {"POST": REVOKE}, org(key_id="signing_key")),
    "fleet-teams": Route(API, {"GET": VIEW}, org()),
    "fleet-devices": Route(API, {"GET": VIEW}, org()),
    "fleet-codex-versions": Route(API, {"GET": VIEW}, org()),
    "device": Route(API, {"GET": VIEW}, org(device_id="device")),
    "device-revoke": Route(API, {"POST": FLEET}, org(device_id="device")),
    "device-move": Route(API, {"POST": FLEET}, org(device_id="device")),
    "enrollment-tokens": Route(API, {"GET": VIEW, "POST": FLEET}, org()),
    "enrollment-token-revoke": Route(API, {"POST": FLEET}, org(token_id="enrollment_token")),
    "audit-events": Route(API, {"GET": AUDIT}, org()),
    "receipts-export": Route(
        API,
        {"GET": AUDIT},
        lambda w: {"slug": "acme", "pk": w.ids["release"], "file_format": "csv"},
    ),
    "receipts-export-manifest": Route(
        API,
        {"GET": AUDIT},
        lambda w: {"slug": "acme", "pk": w.ids["release"], "file_format": "csv"},
        {"as_of": "2026-01-01T00:00:00Z"},
    ),
    "audit-export": Route(API, {"GET": AUDIT}, lambda w: {"slug": "acme", "file_format": "csv"}),
    "audit-export-manifest": Route(
        API, {"GET": AUDIT}, lambda w: {"slug": "acme", "file_format": "csv"}, {"through": "1"}
    ),
}
# Whole trees of other projects' routes, with their own access rules and their own tests: the
# admin site (staff only, behind the same sign-in) and django-allauth's sign-in flows (public).
MOUNTED = {"admin/": "the Django admin", "accounts/": "django-allauth's sign-in"}


def url_patterns() -> dict[str, URLPattern | str]:
    """Every route of the site by name (a mounted tree by its prefix)."""
    found: dict[str, URLPattern | str] = {}

    def walk(patterns: list[Any], prefix: str) -> None:
        for item in patterns:
            route = prefix + str(item.pattern)
            if isinstance(item, URLResolver):
                if route not in MOUNTED:
                    walk(item.url_patterns, route)
                else:
                    found[route] = route
            elif isinstance(item, URLPattern):
                assert item.name, f"route {route} has no name"
                found[item.name] = item

    walk(get_resolver().url_patterns, "")
    return found


def test_every_route_has_an_entry_and_every_entry_a_route() -> None:
    routes = url_patterns()
    assert sorted(set(routes) - set(ROUTES) - set(MOUNTED)) == []
    assert sorted(set(ROUTES) - set(routes)) == []


@pytest.mark.parametrize("name", sorted(n for n, r in ROUTES.items() if r.kind == API))
def test_entries_name_every_method_of_their_api_view(name: str) -> None:
    pattern = url_patterns()[name]
    assert isinstance(pattern, URLPattern)
    view = pattern.callback.view_class  # type: ignore[attr-defined]
    methods = {m.upper() for m in view.http_method_names if m not in ("options", "head")}
    assert {m for m in methods if hasattr(view, m.lower())} == set(ROUTES[name].methods)


# --- the callers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who calls: a role in acme (through an API token capped at `ceiling`, or signed in)."""

    name: str
    role: str | None  # None: nobody, or a member of another organisation
    ceiling: str | None = None
    outsider: bool = False

    def permissions(self) -> frozenset[Permission]:
        if self.role is None:
            return frozenset()
        held = ROLE_PERMISSIONS[self.role]
        return held & ROLE_PERMISSIONS[self.ceiling] if self.ceiling else held


CALLERS = [
    Caller("anonymous", None),
    Caller("outsider", None, outsider=True),
    *(Caller(role, role) for role in Role),
    Caller("admin-with-viewer-token", Role.ADMIN, ceiling=Role.VIEWER),
]
DENIED = {401, 403, 404, 405}


def clients(caller: Caller, world: World, cast: dict[str, Any]) -> tuple[APIClient, Client]:
    """The caller's API client (token) and browser (session)."""
    api, browser = APIClient(), Client()
    role: str
    if caller.outsider:
        user, organization, role = cast["outsider"], cast["other"], Role.OWNER
    elif caller.role is not None:
        user, organization = world.ids["people"][caller.role], cast["acme"]
        role = caller.ceiling or caller.role
    else:
        return api, browser
    _, secret = api_token_create(
        actor=acting(user), organization=organization, name="matrix", role=role
    )
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    if caller.ceiling is None:
        browser.force_login(user)
    return api, browser


def expected(route: Route, permission: Permission | None, caller: Caller) -> str:
    """What the caller must get: "allowed", or the status code of the refusal."""
    signed_in = caller.role is not None or caller.outsider
    if route.kind in (PUBLIC, ACCOUNT, DEVICE):
        return route.kind
    if route.kind == PAGE:
        if not signed_in or caller.ceiling is not None:
            return "sign-in"
        if permission is None:
            return "allowed"
        if caller.outsider:
            return "404"
        return "allowed" if permission in caller.permissions() else "403"
    if not signed_in:
        return "401"
    if permission is None:
        return "allowed"
    if caller.outsider:
        return "404"
    return "allowed" if permission in caller.permissions() else "403"


def outcome(route: Route, status: int, location: str) -> str:
    if route.kind == PAGE and status == 302 and location.startswith("/accounts/login/"):
        return "sign-in"
    if route.kind == DEVICE:
        # Only a device's credential (or, to enrol, an enrolment token) opens these.
        return DEVICE if status in (400, 401) else f"device endpoint answered {status}"
    if route.kind == ACCOUNT:
        return ACCOUNT if status in (200, 302, 404) else f"answered {status}"
    if route.kind == PUBLIC:
        return PUBLIC if status == 200 else f"answered {status}"
    return str(status) if status in DENIED else "allowed"


@pytest.mark.parametrize("caller", CALLERS, ids=[c.name for c in CALLERS])
def test_every_route_answers_each_caller_as_the_matrix_says(
    caller: Caller, world: World, cast: dict[str, Any]
) -> None:
    api, browser = clients(caller, world, cast)
    wrong = []
    for name, route in sorted(ROUTES.items()):
        url = reverse(name, kwargs=route.kwargs(world))
        for method, permission in route.methods.items():
            client = browser if route.kind in (PAGE, ACCOUNT) else api
            with transaction.atomic():
                answer = client.generic(
                    method,
                    url,
                    b"{}" if method != "GET" else b"",
                    content_type="application/json",
                    QUERY_STRING="&".join(f"{k}={v}" for k, v in route.query.items()),
                    HTTP_IF_MATCH="*",
                )
                transaction.set_rollback(True)
            want = expected(route, permission, caller)
            got = outcome(route, answer.status_code, answer.get("Location", ""))
            if (want, got) == ("allowed", "403") and (
                scoped_write(caller, permission) or someone_elses_draft(name, caller)
            ):
                continue
            if got != want:
                wrong.append(f"{method} {url}: expected {want}, got {got} ({answer.status_code})")
    assert wrong == []


# Steps only the author of a draft may take (the world's change set is the admin's draft).
AUTHOR_ONLY = {"web-change-set-describe", "web-change-set-discard"}


def someone_elses_draft(name: str, caller: Caller) -> bool:
    """Another editor's request to describe or discard the admin's draft is refused by the
    service (tests/web/test_changes.py covers the author rule)."""
    return name in AUTHOR_ONLY and caller.role != Role.ADMIN


def scoped_write(caller: Caller, permission: Permission | None) -> bool:
    """A team editor holds policy.edit only inside a subtree: such a write of an object outside
    it is refused by the service (tests/policies and tests/changes cover the subtree rule)."""
    return caller.role == Role.TEAM_EDITOR and permission == EDIT


def test_a_page_that_only_changes_things_refuses_a_get(world: World, cast: dict[str, Any]) -> None:
    """A GET is not protected from other sites (no CSRF check; the session cookie goes along on
    a cross-site link): a route that writes takes POST only, and a GET gets 405."""
    browser = Client()
    browser.force_login(cast["owner"])
    answered = {}
    for name, route in sorted(ROUTES.items()):
        if route.kind != PAGE or "GET" in route.methods:
            continue
        with transaction.atomic():
            answer = browser.get(reverse(name, kwargs=route.kwargs(world)), route.query)
            transaction.set_rollback(True)
        answered[name] = answer.status_code
    assert answered and {name: code for name, code in answered.items() if code != 405} == {}
