"""What the browser journeys share: a Chromium per person, signing in through the real form,
screenshots kept as artefacts, and axe-core's accessibility check of the page on screen."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
AXE = ROOT / ".browser" / "node_modules" / "axe-core" / "axe.min.js"
# Where screenshots are kept (CI keeps the folder as the run's artefacts); git ignores it.
ARTEFACTS = Path(os.environ.get("POLICYHUB_ARTEFACTS", ROOT / "out" / "browser"))
PASSWORD = "journey-password-1"


def require_browser() -> None:
    if not shutil.which("chromium") and not os.environ.get("POLICYHUB_REQUIRE_BROWSER"):
        pytest.skip("Chromium is not installed; run `make browser`")
    if not AXE.is_file():
        if os.environ.get("POLICYHUB_REQUIRE_BROWSER"):
            pytest.fail(f"axe-core is missing at {AXE.relative_to(ROOT)}; run `make browser`")
        pytest.skip("axe-core is not installed; run `make browser`")


@contextmanager
def chromium() -> Iterator[Any]:
    """One headless Chromium; each person gets a context of their own (their own cookies)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser: Any, base_url: str, email: str, password: str = PASSWORD) -> Any:
    """A page of a new browser context, signed in as `email` through the sign-in form."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1366, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("main form button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    assert "/accounts/login/" not in page.url, f"{email} could not sign in"
    return page


def shot(page: Any, journey: str, name: str) -> Path:
    """Save a full-page screenshot as `<artefacts>/<journey>/<name>.png`."""
    target = ARTEFACTS / journey / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    return target


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now. axe is evaluated in
    the page through the browser's debugging protocol, which the page's Content-Security-Policy
    does not govern (the page itself still runs under it)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found = page.evaluate(
        """async () => (await window.axe.run(document, {resultTypes: ["violations"]}))
            .violations.filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => `${v.id} (${v.impact}): ${v.help}: ` +
                 v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "))"""
    )
    return [str(item) for item in found]


def assert_accessible(page: Any) -> None:
    problems = serious_violations(page)
    assert not problems, f"{page.url}:\n" + "\n".join(problems)
