"""A real Chromium, driven by Playwright, through the pages an admin uses after `make run`."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield from browser_page(live_server, monkeypatch)


def browser_page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Chromium page on the live server, with the demo organisation seeded."""
    if not shutil.which("chromium") and not os.environ.get("POLICYHUB_REQUIRE_BROWSER"):
        pytest.skip("Chromium is not installed; run `make browser`")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the live server
    # makes happen in its own thread, but Django still checks this one.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    call_command("seed_demo", stdout=io.StringIO())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(base_url=live_server.url)
        page.set_default_timeout(15_000)
        yield page
        browser.close()
        # ORM calls made while Playwright runs (the test's own checks) can be in a context of
        # their own, with a connection of their own: close it, or it outlives the test database.
        connections.close_all()


def log_in(page: Any) -> None:
    page.goto("/")
    page.fill("input[name=login]", "admin@acme.example")
    page.fill("input[name=password]", "policyhub-demo")
    page.click("main form button[type=submit]")


def test_an_admin_logs_in_walks_to_a_team_and_sees_why_it_gets_each_value(
    page: Any, tmp_path: Path
) -> None:
    log_in(page)
    page.click("text=Acme Corp")
    page.click("header nav a:text-is('Teams')")
    page.wait_for_url("**/orgs/acme/teams/")
    assert page.locator("tr", has_text="platform/ci/release").locator(".ok").inner_text() == "valid"
    page.click("a:text-is('CI')")
    page.wait_for_url("**/orgs/acme/teams/platform/ci/")
    sandbox = page.locator("tr", has_text="allowed_sandbox_modes")
    assert "platform/ci (narrowed)" in sandbox.inner_text()
    approval = page.locator("tr", has=page.locator("code", has_text="approval_policy")).first
    assert "never" in approval.inner_text()
    # Each Codex version set names its files once; the newest set has the profile's own file.
    newest = page.locator("details.fileset", has_text="Unpublished files for").last
    assert newest.locator("h3", has_text="profiles/azure-ci.config.toml").count() == 1
    assert "team acme/platform/ci" in page.locator("pre").first.inner_text()
    page.screenshot(path=str(tmp_path / "team.png"), full_page=True)
    if os.environ.get("POLICYHUB_SCREENSHOTS"):
        shutil.copy(tmp_path / "team.png", os.environ["POLICYHUB_SCREENSHOTS"])
    assert (tmp_path / "team.png").stat().st_size > 10_000


def test_a_wrong_password_keeps_the_visitor_out(page: Any) -> None:
    page.goto("/")
    page.fill("input[name=login]", "admin@acme.example")
    page.fill("input[name=password]", "wrong")
    page.click("main form button[type=submit]")
    assert "are not correct" in page.content()
    page.goto("/orgs/acme/")
    assert "/accounts/login/" in page.url
