"""The main edit journey through a real Chromium: an admin adds an Azure OpenAI endpoint and a
team profile that uses it (a wrong model first, refused beside the field), submits their change
set, a second admin approves and publishes it, the team page shows the new revision, and a
machine enrolled beforehand (with a token made on the enrolment tokens page) syncs the profile.
Then the core of the same edit, done with the keyboard alone."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

from policyhub.accounts.models import Organization, Role
from policyhub.accounts.services import membership_grant, organization_settings_update
from policyhub.changes.models import ChangeSet
from policyhub.fleet.models import Device
from policyhub.releases.models import PublishRun, Release
from tests.agent.support import HOME, MISSING_CODEX
from tests.browser.support import (
    PASSWORD,
    assert_accessible,
    chromium,
    require_browser,
    shot,
    signed_in,
)
from tests.conftest import OPERATOR, person
from tests.delivery.conftest import fresh_cache

__all__ = ["fresh_cache"]  # autouse: a publish runs in-process at commit, not on a worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEAM = "batch"
ENDPOINT = "azure-lab"
# Codex knows it by its provider id, which the rendered files name.
PROVIDER_ID = "acme-lab"
DEPLOYMENTS = ("lab-gpt-5", "lab-codex")
PROFILE = "nightly"
WRONG_MODEL = "gpt-4o"
MODEL = "lab-codex"
AUTHOR = "author@acme.example"
REVIEWER = "reviewer@acme.example"
# Where the agent puts Codex's files under its root (HOME is /home/dev there).
CODEX_HOME = "home/dev/.codex"


@dataclass
class Acme:
    """The demo organisation, with two admins and approval required."""

    org: Organization
    author: Any
    reviewer: Any


@pytest.fixture
def acme(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Acme]:
    require_browser()
    # Playwright's sync API keeps an event loop in this thread; Django checks it on ORM calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    call_command("seed_demo", stdout=io.StringIO())
    org = Organization.objects.get(slug="acme")
    people = []
    for name, email in (("author", AUTHOR), ("reviewer", REVIEWER)):
        user = person(name, email)
        user.set_password(PASSWORD)
        user.save()
        membership_grant(actor=OPERATOR, organization=org, user=user, role=Role.ADMIN)
        people.append(user)
    org = organization_settings_update(actor=OPERATOR, organization=org, requires_approval=True)
    yield Acme(org, *people)


@contextmanager
def browsers() -> Iterator[Any]:
    """One Chromium; the test's ORM calls while it runs may open a connection of their own,
    closed before it goes (or it would outlive the test database)."""
    with chromium() as browser:
        try:
            yield browser
        finally:
            connections.close_all()


@dataclass
class Machine:
    """A developer machine: an empty root, and the real agent CLI run there."""

    root: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "CODEX_HOME"}
        return subprocess.run(
            [sys.executable, "-m", "policyhub_agent", "--root", str(self.root), *args],
            env={**env, "HOME": HOME},
            capture_output=True,
            text=True,
            timeout=120,
        )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def visit(page: Any, journey: str, name: str) -> None:
    """Every page a journey sees: a screenshot, and axe-core finds nothing serious on it."""
    shot(page, journey, name)
    assert_accessible(page)


def draft_of(user: Any) -> ChangeSet:
    return ChangeSet.objects.get(author=user, status=ChangeSet.Status.DRAFT)


def profile_in(change_set: ChangeSet, name: str) -> Any:
    """A profile of the team as the change set's policy document has it (None: it has none)."""
    team = tomllib.loads(change_set.document)["teams"][TEAM]
    return team.get("profiles", {}).get(name)


# --- (a) the whole journey ----------------------------------------------------------------------


def test_an_endpoint_and_a_profile_go_from_draft_to_a_synced_machine(
    acme: Acme, live_server: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    journey = "edit"
    machine = Machine(tmp_path / "root")
    machine.root.mkdir()
    before = Release.objects.get(organization=acme.org, team_path=TEAM, current=True)

    with browsers() as browser:
        page = signed_in(browser, live_server.url, AUTHOR)

        # An enrolment token for the team, made on its page; its secret is shown once.
        page.goto("/orgs/acme/enrolment-tokens/")
        visit(page, journey, "01-enrolment-tokens")
        page.get_by_label("Team").fill(TEAM)
        page.get_by_label("Expires after").fill("1h")
        page.get_by_label("Machines it may enrol").fill("1")
        page.get_by_label("Note").fill("journey laptop")
        page.get_by_role("button", name="Create the token").click()
        expect(page.get_by_role("heading", name=f"Enrolment token for {TEAM}")).to_be_visible()
        secret = page.locator("#token-secret").inner_text().strip()
        assert secret and secret in page.locator("#enrol-command").inner_text()
        visit(page, journey, "02-token-created")

        # The machine enrols with it and gets the team's current revision.
        enrolled = machine(
            "enroll", "--server", live_server.url, "--token", secret, "--codex-bin", MISSING_CODEX
        )
        assert enrolled.returncode == 0, enrolled.stderr
        assert last_line(enrolled.stdout) == f"revision {before.revision} applied"
        assert Device.objects.get().team.path == TEAM
        assert not (machine.root / CODEX_HOME / f"{PROFILE}.config.toml").exists()

        # A new Azure OpenAI endpoint: the kind's own fields appear once it is chosen.
        page.goto("/orgs/acme/endpoints/")
        visit(page, journey, "03-endpoints")
        page.get_by_role("link", name="Add an endpoint").click()
        page.wait_for_url("**/orgs/acme/endpoints/-/new/")  # loaded, htmx with it
        page.get_by_role("combobox", name=re.compile("^Kind")).select_option(label="Azure OpenAI")
        expect(page.get_by_label("Resource URL (required)")).to_be_visible()
        visit(page, journey, "04-endpoint-form")
        page.get_by_label("Name (required)").fill(ENDPOINT)
        page.get_by_label("Codex provider id").fill(PROVIDER_ID)
        page.get_by_label("Resource URL (required)").fill(
            "https://acme-lab.openai.azure.com/openai/v1"
        )
        page.get_by_label("API key environment variable").fill("AZURE_LAB_API_KEY")
        page.get_by_label("Deployments (required)").fill("\n".join(DEPLOYMENTS))
        page.get_by_label("Reason").fill("a lab resource for batch work")
        page.get_by_role("button", name="Add endpoint").click()
        page.wait_for_url(f"**/orgs/acme/endpoints/{ENDPOINT}/")
        expect(page.get_by_role("status").first).to_contain_text(f"Endpoint {ENDPOINT} added")
        visit(page, journey, "05-endpoint-added")
        draft = draft_of(acme.author)
        assert any(f"provider {ENDPOINT}" in line for line in draft.plan), draft.plan
        added = tomllib.loads(draft.document)["providers"][ENDPOINT]
        assert (added["kind"], added["deployments"]) == ("azure", list(DEPLOYMENTS))
        assert not Release.objects.filter(organization=acme.org, revision__gt=before.revision)

        # On the team's page, a profile on that endpoint; a model that is no deployment first.
        page.goto(f"/orgs/acme/teams/{TEAM}/")
        visit(page, journey, "06-team")
        page.get_by_role("heading", name="Profiles", exact=True).click()
        page.get_by_text("Add a profile").click()
        form = page.locator("#form-profile-new")
        form.get_by_label("Profile name").fill(PROFILE)
        form.get_by_label("model_provider").select_option(ENDPOINT)
        form.get_by_label("model", exact=True).fill(WRONG_MODEL)
        model_errors = form.locator("#id_profile-new-model-errors")
        expect(model_errors).to_contain_text("is not one")
        expect(model_errors).to_contain_text(", ".join(DEPLOYMENTS))
        visit(page, journey, "07-wrong-model-live")
        form.get_by_role("button", name="Add this profile to my draft").click()
        form = page.locator("#form-profile-new")
        expect(form.get_by_role("alert")).to_contain_text("Not saved")
        expect(form.locator("#id_profile-new-model-errors")).to_contain_text("is not one")
        visit(page, journey, "08-wrong-model-refused")
        assert profile_in(draft_of(acme.author), PROFILE) is None

        form.get_by_label("model", exact=True).fill(MODEL)
        expect(form.locator("#live-profile-new")).to_contain_text("No findings")
        expect(form.locator("#id_profile-new-model-errors")).to_be_empty()
        form.get_by_label("Reason (kept with the change set)").fill("batch tries the lab")
        form.get_by_role("button", name="Add this profile to my draft").click()
        expect(page.get_by_role("status").first).to_contain_text("Saved into your draft")
        # The page's draft banner lists the change (the section itself is closed again).
        expect(page.locator(".draft-banner")).to_contain_text(PROFILE)
        visit(page, journey, "09-profile-saved")
        draft = draft_of(acme.author)
        assert any(PROFILE in line for line in draft.plan), draft.plan
        assert profile_in(draft, PROFILE) == {"model": MODEL, "model_provider": ENDPOINT}

        # The change set: its plan, the preview of the team's new profile file, and submit.
        page.get_by_role("link", name=f"draft change set {draft.pk}").click()
        page.wait_for_url(f"**/orgs/acme/changes/{draft.pk}/")
        plan = page.locator("ul.plan")
        expect(plan).to_contain_text(ENDPOINT)
        expect(plan).to_contain_text(PROFILE)
        preview = page.locator("#preview")
        team_diff = preview.locator("article", has_text=f"Team {TEAM}")
        expect(team_diff.first).to_be_visible()
        profile_file = f"profiles/{PROFILE}.config.toml"
        expect(team_diff.first).to_contain_text(profile_file)
        expect(team_diff.first.locator("pre.diff .add", has_text=MODEL).first).to_be_visible()
        visit(page, journey, "10-change-set")
        page.get_by_role("button", name=f"Submit change set {draft.pk}").click()
        expect(page.get_by_role("status").first).to_contain_text(f"Change set {draft.pk} submitted")
        visit(page, journey, "11-submitted")
        draft.refresh_from_db()
        assert draft.status == ChangeSet.Status.SUBMITTED
        # The author may not approve their own.
        assert page.get_by_role("button", name=re.compile("^Approve")).count() == 0

        # A second admin approves it, with a reason, and publishes it now.
        review = signed_in(browser, live_server.url, REVIEWER)
        review.goto(f"/orgs/acme/changes/{draft.pk}/")
        expect(review.locator("ul.plan")).to_contain_text(PROFILE)
        visit(review, journey, "12-review")
        review.get_by_label("Reason", exact=True).first.fill("lab deployments checked")
        review.get_by_role("button", name=f"Approve change set {draft.pk}").click()
        expect(review.get_by_role("status").first).to_contain_text("approved")
        visit(review, journey, "13-approved")
        draft.refresh_from_db()
        assert draft.status == ChangeSet.Status.APPROVED
        assert draft.decision_reason == "lab deployments checked"
        review.get_by_role("button", name="Publish now").click()
        review.wait_for_url(re.compile(r".*/orgs/acme/publishes/\d+/$"))
        expect(review.locator("#run-progress .badge")).to_have_text("Succeeded", timeout=30_000)
        run = PublishRun.objects.get(pk=int(review.url.rstrip("/").rsplit("/", 1)[-1]))
        assert run.status == "succeeded", run.error
        expect(review.locator("#run-progress")).to_contain_text(f"Change set {draft.pk}")
        after = Release.objects.get(organization=acme.org, team_path=TEAM, current=True)
        assert after.revision > before.revision
        expect(review.locator("#run-progress tr", has_text=TEAM).first).to_contain_text(
            f"revision {after.revision}"
        )
        visit(review, journey, "14-published")
        draft.refresh_from_db()
        assert draft.status == ChangeSet.Status.PUBLISHED
        assert f'model = "{MODEL}"' in after.files[profile_file]
        assert f'model_provider = "{PROVIDER_ID}"' in after.files[profile_file]

        # The team page shows the new revision.
        review.goto(f"/orgs/acme/teams/{TEAM}/")
        expect(review.locator("section[aria-labelledby=published-heading]")).to_contain_text(
            f"Revision {after.revision}, published"
        )
        visit(review, journey, "15-team-published")

    # The machine enrolled beforehand syncs and gets the new profile.
    synced = machine("sync")
    assert synced.returncode == 0, synced.stderr
    assert last_line(synced.stdout) == f"revision {after.revision} applied"
    on_disk = (machine.root / CODEX_HOME / f"{PROFILE}.config.toml").read_text()
    assert on_disk == after.files[profile_file]
    assert f'model = "{MODEL}"' in on_disk
    device = Device.objects.get()
    assert device.applied_revision == after.revision


# --- (a') the same edit with the keyboard alone ------------------------------------------------

KEYBOARD_PROFILE = "keyed"
KEYBOARD_MODEL = "gpt-5.5-mini"
FOCUSED = """() => {
  const e = document.activeElement;
  const label = e.labels && e.labels.length ? e.labels[0].innerText : "";
  return {
    tag: e.tagName.toLowerCase(),
    id: e.id || "",
    text: (e.tagName === "SELECT" ? "" : (e.innerText || "")).trim().slice(0, 200),
    label: label.trim(),
    value: "value" in e ? String(e.value) : "",
    href: e.getAttribute("href") || "",
    visible: e.checkVisibility ? e.checkVisibility() : true,
  };
}"""
# Enough for the longest way between two controls of these pages, and a bound on a key loop.
MOST_TABS = 400


def focused(page: Any) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(FOCUSED)
    return found


def tab_to(page: Any, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Press Tab until the focused element is the one wanted; every stop must be visible."""
    for _ in range(MOST_TABS):
        page.keyboard.press("Tab")
        now = focused(page)
        assert now["visible"], f"Tab stopped on something hidden: {now}"
        if wanted(now):
            return now
    raise AssertionError(f"{what} cannot be reached with Tab on {page.url}")


def link(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["tag"] == "a" and e["text"] == text


def control(element_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["id"] == element_id


def button(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["tag"] == "button" and e["text"] == text


def summary(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["tag"] == "summary" and e["text"] == text


def test_the_same_edit_with_the_keyboard_alone(acme: Acme, live_server: Any) -> None:
    from playwright.sync_api import expect

    journey = "edit-keyboard"
    with browsers() as browser:
        page = signed_in(browser, live_server.url, AUTHOR)
        page.goto("/orgs/acme/")
        visit(page, journey, "01-dashboard")

        # To the team's page through the navigation and the team tree.
        tab_to(page, link("Teams"), "the Teams link")
        page.keyboard.press("Enter")
        page.wait_for_url("**/orgs/acme/teams/")
        visit(page, journey, "02-teams")
        tab_to(page, lambda e: e["tag"] == "a" and e["href"].endswith(f"/teams/{TEAM}/"), TEAM)
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/orgs/acme/teams/{TEAM}/")
        visit(page, journey, "03-team")

        # Open the profiles editor and its "Add a profile" form.
        tab_to(page, summary("Profiles"), "the Profiles editor")
        page.keyboard.press("Enter")
        tab_to(page, summary("Add a profile"), "Add a profile")
        page.keyboard.press("Space")
        tab_to(page, control("id_profile-new-name"), "the profile name")
        page.keyboard.type(KEYBOARD_PROFILE)
        tab_to(page, control("id_profile-new-model"), "the model")
        page.keyboard.type(KEYBOARD_MODEL)
        tab_to(page, control("id_profile-new-model_provider"), "the model provider")
        for _ in range(MOST_TABS):
            if focused(page)["value"] == "azure-eng":
                break
            page.keyboard.press("ArrowDown")
        assert focused(page)["value"] == "azure-eng"
        tab_to(page, control("id_profile-new-model_reasoning_effort"), "the reasoning effort")
        for _ in range(MOST_TABS):
            if focused(page)["value"] == "high":
                break
            page.keyboard.press("ArrowDown")
        assert focused(page)["value"] == "high"
        tab_to(page, control("profile-new-reason"), "the reason")
        page.keyboard.type("a profile typed, not clicked")
        expect(page.locator("#live-profile-new")).to_contain_text("No findings")
        visit(page, journey, "04-profile-typed")
        tab_to(page, button("Add this profile to my draft"), "the save button")
        page.keyboard.press("Enter")
        expect(page.get_by_role("status").first).to_contain_text("Saved into your draft")
        visit(page, journey, "05-profile-saved")
        draft = draft_of(acme.author)
        assert any(KEYBOARD_PROFILE in line for line in draft.plan), draft.plan

        # The draft change set from the page's banner, and submit it.
        tab_to(page, link(f"draft change set {draft.pk}"), "the draft change set link")
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/orgs/acme/changes/{draft.pk}/")
        expect(page.locator("ul.plan")).to_contain_text(KEYBOARD_PROFILE)
        expect(page.locator("#preview")).to_contain_text(f"profiles/{KEYBOARD_PROFILE}.config.toml")
        visit(page, journey, "06-change-set")
        tab_to(page, button(f"Submit change set {draft.pk}"), "the submit button")
        page.keyboard.press("Enter")
        expect(page.get_by_role("status").first).to_contain_text(f"Change set {draft.pk} submitted")
        visit(page, journey, "07-submitted")

    draft.refresh_from_db()
    assert draft.status == ChangeSet.Status.SUBMITTED
    profile = profile_in(draft, KEYBOARD_PROFILE)
    assert profile == {
        "model": KEYBOARD_MODEL,
        "model_provider": "azure-eng",
        "model_reasoning_effort": "high",
    }
