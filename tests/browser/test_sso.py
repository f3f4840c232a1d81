"""Single sign-on in a real Chromium against a real OpenID Connect provider (django-oauth-toolkit,
in a process of its own on loopback): an organisation that requires SSO opens only through it."""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from policyhub.accounts.models import Organization, Role
from policyhub.accounts.services import membership_grant, organization_settings_update
from tests.browser.test_pages import browser_page
from tests.codex.harness import REPO_ROOT
from tests.conftest import OPERATOR, person

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLIENT_ID, CLIENT_SECRET = "policyhub-test", "a-client-secret-for-tests"
EMAIL, PASSWORD = "ada@acme.example", "corporate-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def provider(live_server: Any) -> Iterator[str]:
    """The provider's issuer URL; it knows one client (PolicyHub's callback) and one person."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.browser.oidc_provider.serve",
            "--port",
            str(port),
            "--redirect-uri",
            f"{live_server.url}/accounts/oidc/sso/login/callback/",
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--user",
            EMAIL,
            "--password",
            PASSWORD,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    issuer = f"http://127.0.0.1:{port}/o"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.stdout.read().decode() if process.stdout else ""
                raise RuntimeError(f"the OIDC provider did not start:\n{output}") from None
            time.sleep(0.2)
    try:
        yield issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield from browser_page(live_server, monkeypatch)


def configure_sso(settings: Any, issuer: str) -> None:
    """What OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET set up in production."""
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                {
                    "provider_id": "sso",
                    "name": "Corporate SSO",
                    "client_id": CLIENT_ID,
                    "secret": CLIENT_SECRET,
                    "settings": {"server_url": issuer},
                }
            ],
        }
    }
    policy = copy.deepcopy(settings.CONTENT_SECURITY_POLICY)
    origin = issuer.removesuffix("/o")
    policy["DIRECTIVES"]["form-action"] = ["'self'", origin]
    settings.CONTENT_SECURITY_POLICY = policy


def test_a_member_signs_in_through_sso_and_reaches_an_organisation_that_requires_it(
    page: Any, provider: str, settings: Any, live_server: Any
) -> None:
    configure_sso(settings, provider)
    acme = Organization.objects.get(slug="acme")
    ada = person("ada", EMAIL)
    membership_grant(actor=OPERATOR, organization=acme, user=ada, role=Role.VIEWER)
    organization_settings_update(actor=OPERATOR, organization=acme, sso_required=True)

    # Her PolicyHub password signs her in, but the organisation stays closed to that session.
    page.goto("/accounts/login/")
    page.fill("input[name=login]", EMAIL)
    page.fill("input[name=password]", "pw-" + "ada" * 3)
    page.click("main form button[type=submit]")
    response = page.goto("/orgs/acme/")
    assert response.status == 403
    page.goto("/")
    page.click("#sign-out")

    # Through the provider: its own sign-in page, then back, signed in to PolicyHub.
    page.goto("/accounts/login/")
    page.click("text=Corporate SSO")
    page.click("main form button[type=submit]")  # allauth asks before leaving for the provider
    assert page.url.startswith(provider.removesuffix("/o") + "/accounts/login/")  # its own page
    page.fill("input[name=username]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("#idp-sign-in")
    page.wait_for_url(lambda url: url.startswith(live_server.url))
    response = page.goto("/orgs/acme/")
    assert response.status == 200 and "Acme Corp" in page.content()
