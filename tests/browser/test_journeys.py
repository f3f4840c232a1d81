"""Journeys through the web UI in a real Chromium: a release manager rolls a team back and stages
a rollout, an auditor reads every page and can change nothing, a team editor edits inside their
subtree only, and every page and form passes axe-core for an admin too.

The pages are listed once, in PAGES (what anyone who may see the organisation reads) and
ADMIN_FORMS (what only those who may change things open); a test keeps the lists in step with
the access matrix of tests/api/test_urls.py, so a new page cannot be left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from django.db import connections
from django.urls import Resolver404, resolve, reverse

from policyhub.accounts.models import ApiToken, Invitation, Membership, Role
from policyhub.accounts.permissions import ROLE_PERMISSIONS, Permission
from policyhub.celery import app as celery_app
from policyhub.changes.models import ChangeSet
from policyhub.fleet.models import Device, EnrollmentToken
from policyhub.policies import document
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.runs import publish_run_request
from policyhub.web.release_reads import rollout_progress
from tests.api.conftest import World, world
from tests.api.test_urls import PAGE, ROUTES
from tests.browser.support import (
    PASSWORD,
    assert_accessible,
    chromium,
    require_browser,
    shot,
    signed_in,
)
from tests.conftest import OPERATOR, THREE_TEAMS, make_policy

__all__ = ["world"]  # the fixture, named by the tests below

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEAM = "platform/ci"
# platform/ci's second and third content: another model, then a reasoning effort as well.
CHANGED = THREE_TEAMS.replace('model = "codex-ci"', 'model = "gpt-5.5"')
THIRD = CHANGED.replace(
    'model_provider = "azure-eng"', 'model_provider = "azure-eng"\nmodel_reasoning_effort = "high"'
)

# --- the pages --------------------------------------------------------------------------------

# Every page of an organisation that anyone who may see it (org.view) or its audit trail
# (audit.view) reads, by route name; their addresses come from the access matrix's entries.
PAGES = (
    "organization",
    "web-teams",
    "team",
    "web-root",
    "web-endpoints",
    "web-endpoint",
    "web-change-sets",
    "web-change-set",
    "web-change-set-preview",
    "web-publishes",
    "web-publish-run",
    "web-releases",
    "web-team-releases",
    "web-release-receipts",
    "team-history",
    "web-devices",
    "web-device",
    "web-enrollment-tokens",
    "web-settings",
    "web-settings-members",
    "web-settings-codex",
    "web-settings-signing-keys",
    "web-audit",
)
# Routes read with org.view that are no page of their own.
NOT_PAGES = {
    "team-mobileconfig": "a download (an Apple configuration profile)",
    "team-zip": "a download (the team's files)",
    "web-publish-run-progress": "the live fragment of a publish run's page",
}
# The pages only those who may change something open, each with the query it needs.
ADMIN_FORMS = {
    "web-team-new": "",
    "web-team-rename": "",
    "web-team-move": "",
    "web-team-delete": "",
    "web-endpoint-new": "",  # then a kind is chosen: see test (e)
    "web-endpoint-edit": "",
    "web-release-rollback": "to=1",
    "web-settings-invitations": "",
    "web-settings-api-tokens": "",
}
# Django's page for a request refused for its CSRF token (a 403 too).
CSRF_FAILED = "CSRF verification failed"
READING = (Permission.ORG_VIEW, Permission.AUDIT_VIEW)
AUDITOR = ROLE_PERMISSIONS[Role.AUDITOR]


def address(name: str, world: World, query: str = "") -> str:
    return reverse(name, kwargs=ROUTES[name].kwargs(world)) + (f"?{query}" if query else "")


def test_the_page_lists_name_every_page_of_the_access_matrix() -> None:
    read = {n for n, r in ROUTES.items() if r.kind == PAGE and r.methods.get("GET") in READING}
    assert sorted(read - set(NOT_PAGES)) == sorted(PAGES)
    others = {
        n
        for n, r in ROUTES.items()
        if r.kind == PAGE and "GET" in r.methods and r.methods["GET"] not in (None, *READING)
    }
    assert sorted(others) == sorted(ADMIN_FORMS)


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def publish_in_process() -> Iterator[None]:
    """No worker runs in tests: a publish runs in-process when its request commits, whether a
    test or a page asks for it."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


@pytest.fixture
def browser(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    require_browser()
    # Playwright's sync API keeps an event loop in this thread, where the tests' own checks run.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as running:
        yield running
        # ORM calls made while Playwright runs (the tests' checks) can have a connection of
        # their own in its context: close it, or it outlives the test database.
        connections.close_all()


def sign_in(browser: Any, live_server: Any, user: Any) -> Any:
    user.set_password(PASSWORD)
    user.save()
    return signed_in(browser, live_server.url, user.email)


def publish(acme: Any, text: str) -> PublishRun:
    policy_apply(organization=acme, wanted=make_policy(text), actor=OPERATOR)
    run = publish_run_request(organization=acme, actor=OPERATOR)
    run.refresh_from_db()
    assert run.status == PublishRun.Status.SUCCEEDED, run.error
    return run


def releases_of(acme: Any) -> list[tuple[int, bool, int]]:
    return list(
        Release.objects.filter(organization=acme, team_path=TEAM)
        .order_by("revision")
        .values_list("revision", "current", "rollout_percent")
    )


def show_everything(page: Any) -> None:
    """Open every collapsed section, so axe checks the forms inside them too."""
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")


def checked(page: Any, journey: str, name: str) -> None:
    show_everything(page)
    assert_accessible(page)
    shot(page, journey, name)


def visit(page: Any, journey: str, name: str, where: str) -> None:
    response = page.goto(where)
    assert response is not None and response.status == 200, (
        f"{where}: {response and response.status}"
    )
    checked(page, journey, name)


def message(page: Any) -> str:
    return str(page.locator("ul.messages").inner_text())


def route_of(page: Any, href: str) -> str | None:
    """The name of the route a link of the page leads to (None: elsewhere, or not a route)."""
    target = urlsplit(urljoin(page.url, href))
    if target.netloc != urlsplit(page.url).netloc:
        return None
    try:
        return resolve(target.path).url_name
    except Resolver404:
        return None


def edit_controls(page: Any) -> list[str]:
    """What on the page would change something: forms that post (but signing out), htmx
    requests that write, links to pages the auditor may not open (edit pages)."""
    found = []
    forms = page.eval_on_selector_all(
        "form", "els => els.map(f => [f.getAttribute('method') || 'get', f.getAttribute('action')])"
    )
    for method, action in forms:
        if method.lower() != "get" and route_of(page, action or page.url) != "account_logout":
            found.append(f"a form that posts to {action}")
    writes = page.eval_on_selector_all(
        "[hx-post], [hx-put], [hx-patch], [hx-delete]", "els => els.map(e => e.outerHTML)"
    )
    found += [f"an htmx write: {html[:120]}" for html in writes]
    for href in page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))"):
        name = route_of(page, href)
        route = ROUTES.get(name or "")
        if route is None or route.kind != PAGE:
            continue
        needs = route.methods.get("GET", Permission.POLICY_EDIT)
        if needs is not None and needs not in AUDITOR:
            found.append(f"a link to {href} ({name})")
    return found


def forged_post(page: Any, where: str, data: dict[str, str]) -> tuple[int, str]:
    """A POST from the page's own script context, with the CSRF token the page carries for htmx:
    what a person could forge in their browser's console."""
    status, body = page.evaluate(
        """async ([where, data]) => {
            const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
            const response = await fetch(where, {
                method: "POST", headers: {"X-CSRFToken": token},
                body: new URLSearchParams(data), redirect: "manual"});
            return [response.status, await response.text()];
        }""",
        [where, data],
    )
    return int(status), str(body)


# --- (b) rollback and staged rollout ----------------------------------------------------------


def test_an_admin_compares_rolls_back_then_stages_a_rollout_and_promotes_it(
    browser: Any, live_server: Any, world: World
) -> None:
    people = world.ids["people"]
    acme = people["acme"]
    publish(acme, CHANGED)
    assert releases_of(acme) == [(1, False, 100), (2, True, 100)]
    page = sign_in(browser, live_server, people["admin"])
    journey = "rollback-and-rollout"

    visit(page, journey, "releases", address("web-team-releases", world))
    assert "Revision 2, made" in page.locator("main").inner_text()

    # What changed from revision 1 to revision 2: the model of platform/ci.
    page.get_by_label("From").select_option(label="revision 1")
    page.get_by_label("To").select_option(label="revision 2")
    page.get_by_role("button", name="Compare the revisions").click()
    page.wait_for_url(re.compile(r"old=1&new=2"))
    assert "From revision 1 to revision 2." in page.locator("main").inner_text()
    removed = " ".join(page.locator("pre.diff .del").all_inner_texts())
    added = " ".join(page.locator("pre.diff .add").all_inner_texts())
    assert "codex-ci" in removed and "gpt-5.5" in added
    checked(page, journey, "diff")

    # Back to revision 1, after a confirmation page that says what will happen.
    page.get_by_role("link", name="Roll back to revision 1").click()
    page.wait_for_url(re.compile(r"/-/rollback/\?to=1$"))
    assert page.get_by_role("heading", name="Roll platform/ci back to revision 1").is_visible()
    assert "new revision, revision 3" in page.locator("main").inner_text()
    checked(page, journey, "rollback-confirmation")
    assert releases_of(acme) == [(1, False, 100), (2, True, 100)]  # nothing yet
    page.get_by_label("Reason (for the audit trail)").fill("the new model misbehaves")
    page.get_by_role("button", name="Make revision 3 with the files of revision 1").click()
    page.wait_for_url(re.compile(r"/releases/platform/ci/$"))
    assert "Rolled back: revision 3 of platform/ci now carries the files of revision 1." in (
        message(page)
    )
    checked(page, journey, "rolled-back")
    assert releases_of(acme) == [(1, False, 100), (2, False, 100), (3, True, 100)]
    first, third = (
        Release.objects.get(organization=acme, team_path=TEAM, revision=r) for r in (1, 3)
    )
    assert third.content_digest == first.content_digest
    assert third.publish_run_id is None and third.previous is not None
    assert third.previous.revision == 2

    # A new publish, asked for on the publishes page: revision 4.
    policy_apply(organization=acme, wanted=make_policy(THIRD), actor=OPERATOR)
    page.get_by_role("link", name="Publishes and releases").click()
    page.wait_for_url(re.compile(r"/publishes/$"))
    checked(page, journey, "publishes")
    runs = PublishRun.objects.filter(organization=acme).count()
    page.get_by_role("button", name="Publish now").click()
    page.wait_for_url(re.compile(r"/publishes/\d+/$"))
    run = PublishRun.objects.filter(organization=acme).latest("id")
    assert PublishRun.objects.filter(organization=acme).count() == runs + 1
    assert run.status == PublishRun.Status.SUCCEEDED, run.error
    assert f"Publish run {run.pk}" in page.locator("h1").inner_text()
    page.get_by_role("link", name=f"{TEAM}").first.wait_for()
    checked(page, journey, "publish-run")
    assert releases_of(acme)[-1] == (4, True, 100)

    # A staged rollout of revision 4 to 30 % of the team's devices.
    visit(page, journey, "before-rollout", address("web-team-releases", world))
    page.get_by_label("Share of the team's devices (%)").fill("30")
    page.get_by_role("button", name="Start a staged rollout").click()
    page.wait_for_url(re.compile(r"/releases/platform/ci/$"))
    assert "Revision 4 now reaches 30 % of the devices of platform/ci." in message(page)
    main = page.locator("main").inner_text()
    assert "Staged rollout of revision 4" in main
    assert "rolling out to 30\N{NO-BREAK SPACE}% of the team's devices" in main
    fourth = Release.objects.get(organization=acme, team_path=TEAM, revision=4)
    # The world's one device of the team is inside the 30 % or not, chosen stably by its id.
    inside = rollout_progress(acme, fourth).targeted
    verb = "is" if inside == 1 else "are"
    assert f"{inside} of the team's 1 device {verb} inside the rollout's 30" in main
    rows = page.locator("table.rollout tbody tr")
    assert rows.nth(0).inner_text().startswith("revision 4 (new)")
    assert rows.nth(1).inner_text().startswith("revision 3 (previous)")
    checked(page, journey, "rollout-30")
    assert releases_of(acme) == [
        (1, False, 100),
        (2, False, 100),
        (3, False, 100),
        (4, True, 30),
    ]
    fourth.refresh_from_db()
    assert fourth.previous is not None and fourth.previous.revision == 3

    # Promoted to every device: the rollout ends.
    page.get_by_label("Share of the team's devices (%)").fill("100")
    page.get_by_role("button", name="Promote the rollout").click()
    page.wait_for_url(re.compile(r"/releases/platform/ci/$"))
    assert "Revision 4 now reaches every device of platform/ci." in message(page)
    assert "to every device of the team" in page.locator("main").inner_text()
    assert page.get_by_role("heading", name="Staged rollout of revision 4").count() == 0
    checked(page, journey, "promoted")
    assert releases_of(acme)[-1] == (4, True, 100)
    assert Release.objects.filter(organization=acme, team_path=TEAM, current=True).count() == 1


# --- (c) the auditor --------------------------------------------------------------------------


def test_an_auditor_reads_every_page_finds_no_edit_control_and_cannot_forge_one(
    browser: Any, live_server: Any, world: World
) -> None:
    people = world.ids["people"]
    acme = people["acme"]
    page = sign_in(browser, live_server, people["auditor"])
    for name in PAGES:
        visit(page, "auditor", name, address(name, world))
        assert page.locator("a[href]").count() > 5, f"{name}: the page shows almost nothing"
        assert edit_controls(page) == [], f"{name} offers the auditor changes"
    assert page.locator("header .who").inner_text() == "auditor@example.com · auditor"

    # Forged writes, with a valid CSRF token: each refused, nothing changed.
    page.goto(address("organization", world))
    device = Device.objects.get(pk=world.ids["device"])
    viewer = Membership.objects.get(pk=world.ids["membership"])
    releases = list(Release.objects.filter(organization=acme).values_list("id", "current"))
    runs = PublishRun.objects.filter(organization=acme).count()
    forged: dict[str, dict[str, str]] = {
        "web-publishes": {},
        "web-release-rollback": {"to_revision": "1", "reason": "forged"},
        "web-rollout-start": {"percent": "30"},
        "web-device-revoke": {},
        "web-member-role": {"role": Role.ADMIN},
    }
    for name, data in forged.items():
        status, body = forged_post(page, address(name, world), data)
        assert status == 403, f"{name}: {status}"
        assert CSRF_FAILED not in body, f"{name} was refused for its CSRF token, not the role"
    # The same request to what an auditor may do (an API token of their own) gets through:
    # the refusals above are the role's.
    status, _ = forged_post(page, address("web-settings-api-tokens", world), {})
    assert status == 400
    assert PublishRun.objects.filter(organization=acme).count() == runs
    assert list(Release.objects.filter(organization=acme).values_list("id", "current")) == releases
    device.refresh_from_db()
    assert device.revoked_at is None
    viewer.refresh_from_db()
    assert viewer.role == Role.VIEWER


# --- (d) the team editor ----------------------------------------------------------------------


def test_a_team_editor_edits_inside_their_subtree_and_is_refused_outside(
    browser: Any, live_server: Any, world: World
) -> None:
    editor = world.ids["people"][Role.TEAM_EDITOR]
    page = sign_in(browser, live_server, editor)
    journey = "team-editor"

    page.goto(f"/orgs/acme/teams/{TEAM}/")
    assert "team_editor of platform" in page.locator("header .who").inner_text()
    page.get_by_text("Config defaults (a team below may change them)").click()
    checked(page, journey, "platform-ci")
    form = page.locator("#form-config")
    form.get_by_label("model_reasoning_effort", exact=True).select_option("high")
    form.get_by_label("Reason (kept with the change set)").fill("deeper reasoning for CI")
    form.get_by_role("button", name="Save into my draft").click()
    page.wait_for_url(re.compile(r"/teams/platform/ci/#edit-config$"))
    assert "Saved into your draft change set" in message(page)
    checked(page, journey, "saved")
    draft = ChangeSet.objects.get(author=editor, status=ChangeSet.Status.DRAFT)
    ci = document.parse(draft.document).teams[TEAM].node
    assert ci.config["model_reasoning_effort"] == "high"
    assert ci.config["model"] == "codex-ci"  # what the form showed, kept
    # The form now shows the draft's value.
    assert form.get_by_label("model_reasoning_effort", exact=True).input_value() == "high"

    # Outside the subtree: the page is for reading only, and a forged edit is refused.
    visit(page, journey, "batch", "/orgs/acme/teams/batch/")
    assert "Effective policy" in page.locator("main").inner_text()
    assert page.get_by_role("heading", name="Edit this node").count() == 0
    assert [c for c in edit_controls(page) if "form" in c or "htmx" in c] == []
    before = (draft.document, draft.updated_at)
    status, body = forged_post(
        page,
        "/orgs/acme/teams/batch/-/edit/config/",
        {"config-model": "gpt-5.5", "config-web_search": "live", "reason": "forged"},
    )
    assert status == 403 and CSRF_FAILED not in body
    status, _ = forged_post(page, "/orgs/acme/teams/batch/-/validate/config/", {})
    assert status == 403
    draft.refresh_from_db()
    assert (draft.document, draft.updated_at) == before
    assert ChangeSet.objects.filter(author=editor).count() == 1
    assert "model_reasoning_effort" not in document.parse(draft.document).teams["batch"].node.config


# --- (e) axe for an admin ---------------------------------------------------------------------


def test_every_page_and_form_passes_axe_for_an_admin(
    browser: Any, live_server: Any, world: World
) -> None:
    people = world.ids["people"]
    acme, admin = people["acme"], people["admin"]
    publish(acme, CHANGED)  # two revisions: a rollback and a rollout to offer
    page = sign_in(browser, live_server, admin)
    journey = "admin-axe"
    offered = set()
    for name in PAGES:
        visit(page, journey, name, address(name, world))
        if edit_controls(page):
            offered.add(name)
    # What the auditor is not offered, an admin is (the check above finds it where it is).
    assert {
        "team",
        "web-root",
        "web-teams",
        "web-endpoint",
        "web-publishes",
        "web-team-releases",
        "web-device",
        "web-enrollment-tokens",
        "web-settings-members",
        "web-settings-signing-keys",
    } <= offered
    for name, query in ADMIN_FORMS.items():
        visit(page, journey, name, address(name, world, query))
    assert page.get_by_role("button", name="Create the token").count() == 1

    # A new endpoint once its kind is chosen (htmx brings the kind's fields in).
    page.goto(address("web-endpoint-new", world))
    page.get_by_role("combobox", name=re.compile(r"^Kind")).select_option(label="Azure OpenAI")
    page.get_by_role("button", name="Add endpoint").wait_for()
    checked(page, journey, "endpoint-new-azure")

    # What a form makes and shows once: an enrolment token, an invitation, an API token.
    page.goto(address("web-enrollment-tokens", world))
    page.get_by_label("Team", exact=True).fill(TEAM)
    page.get_by_label("Expires after").fill("7d")
    page.get_by_role("button", name="Create the token").click()
    page.get_by_role("heading", name=f"Enrolment token for {TEAM}").wait_for()
    checked(page, journey, "enrollment-token-created")
    made = EnrollmentToken.objects.filter(organization=acme).latest("id")
    assert made.team.path == TEAM and made.created_by == admin
    assert page.locator("#token-secret").inner_text().startswith(made.prefix)

    page.goto(address("web-settings-invitations", world))
    page.get_by_label("Email address").fill("newcomer@example.com")
    page.get_by_role("button", name="Send the invitation").click()
    page.get_by_role("heading", name="The invitation link for newcomer@example.com").wait_for()
    checked(page, journey, "invitation-created")
    invited = Invitation.objects.get(organization=acme, email="newcomer@example.com")
    assert invited.invited_by_user == admin and invited.revoked_at is None

    page.goto(address("web-settings-api-tokens", world))
    page.get_by_label(re.compile(r"^Name:?$")).fill("deploy")
    page.get_by_role("button", name="Create the token").click()
    page.get_by_role("heading", name="The secret of deploy").wait_for()
    checked(page, journey, "api-token-created")
    token = ApiToken.objects.get(organization=acme, user=admin, name="deploy")
    assert page.locator("#api-token-secret").inner_text().startswith(token.prefix)
