"""A real Chromium through signing up by invitation, verifying the address, setting up an
authenticator (TOTP), signing out and in again with it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from django.core import mail

from policyhub.accounts.models import Membership, Role
from policyhub.accounts.services import invitation_create
from tests.browser.test_pages import browser_page
from tests.conftest import OPERATOR, person

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long and unguessable passphrase"


@pytest.fixture
def page(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    yield from browser_page(live_server, monkeypatch)


def mailed_link(to: str, pattern: str) -> str:
    """The link of the newest mail to `to` whose path matches `pattern` (mail.outbox: the live
    server runs in this process)."""
    for message in reversed(mail.outbox):
        if to in message.to:
            found = re.search(rf"https?://\S*{pattern}\S*", str(message.body))
            if found:
                return found.group(0)
    raise AssertionError(f"no mail to {to} with a link to {pattern}")


def confirm_access(page: Any, password: str) -> None:
    """Changing how someone signs in asks for their password again first (allauth)."""
    assert "/accounts/reauthenticate/" in page.url
    page.fill("input[name=password]", password)
    page.click("main form button[type=submit]")


def test_an_invited_person_signs_up_verifies_sets_up_totp_and_signs_in_with_it(
    page: Any, live_server: Any, settings: Any
) -> None:
    from policyhub.accounts.models import Organization

    settings.BASE_URL = live_server.url
    acme = Organization.objects.get(slug="acme")
    _, secret = invitation_create(
        actor=OPERATOR, organization=acme, email="grace@acme.example", role=Role.APPROVER
    )
    page.goto(f"/invitations/{secret}/")
    assert "Join Acme Corp" in page.content()
    page.click("#signup")
    page.fill("input[name=email]", "grace@acme.example")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main form button[type=submit]")
    assert "Verify Your Email Address" in page.content()

    # The link in the verification mail, confirmed in the same browser, signs her in.
    page.goto(mailed_link("grace@acme.example", "/accounts/confirm-email/"))
    page.click("main form button[type=submit]")
    page.goto(f"/invitations/{secret}/")
    page.click("#accept")
    page.wait_for_url("**/orgs/acme/")
    assert "You joined Acme Corp as approver." in page.content()
    assert Membership.objects.get(user__email="grace@acme.example").role == Role.APPROVER

    # An authenticator app: the secret shown on the page makes the codes a phone would.
    page.goto("/accounts/2fa/totp/activate/")
    confirm_access(page, PASSWORD)
    totp = pyotp.TOTP(page.input_value("#authenticator_secret"))
    page.fill("input[name=code]", totp.now())
    page.click("main form button[type=submit]")
    assert "Recovery Codes" in page.content() or "recovery" in page.url

    page.click("#sign-out")
    page.goto("/orgs/acme/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=login]", "grace@acme.example")
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    # The password alone does not sign her in: the second factor is asked for.
    assert "/accounts/2fa/authenticate/" in page.url
    page.fill("input[name=code]", "000000" if totp.now() != "000000" else "111111")
    page.click("main form button[type=submit]")
    assert "Incorrect code" in page.content()
    # The next step's code: the first one was used, and codes are accepted once.
    page.fill("input[name=code]", totp.at(time.time() + 30))
    page.click("main form button[type=submit]")
    page.wait_for_url("**/orgs/acme/")
    assert "Acme Corp" in page.content()


def sign_in(page: Any, email: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("main form button[type=submit]")


def test_a_security_key_is_added_and_asked_for_at_the_next_sign_in(
    page: Any, settings: Any
) -> None:
    """WebAuthn with Chromium's virtual authenticator (DevTools protocol): a platform key that
    verifies the user, as a laptop's fingerprint reader would."""
    settings.MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = True  # the live server speaks plain HTTP
    person("hedy", "hedy@acme.example")
    devtools = page.context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    authenticator = devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )["authenticatorId"]
    sign_in(page, "hedy@acme.example", "pw-" + "hedy" * 3)
    page.goto("/accounts/2fa/webauthn/add/")
    confirm_access(page, "pw-" + "hedy" * 3)
    page.fill("input[name=name]", "laptop")
    page.click("#mfa_webauthn_add")
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    stored = devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(stored["credentials"]) == 1

    page.click("#sign-out")
    sign_in(page, "hedy@acme.example", "pw-" + "hedy" * 3)
    assert "/accounts/2fa/authenticate/" in page.url
    page.click("#mfa_webauthn_authenticate")
    page.wait_for_url(lambda url: "/2fa/authenticate/" not in url)
    assert "hedy@acme.example" in page.inner_text("header")
