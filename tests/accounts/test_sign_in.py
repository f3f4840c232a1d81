"""Signing in: allauth's forms, its rate limit on wrong passwords, sign-up by invitation only,
the admin behind the same sign-in, single sign-on when an organisation requires it, and the
security headers."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from policyhub.accounts.models import Role
from policyhub.accounts.services import invitation_create, organization_settings_update
from tests.conftest import OPERATOR, acting, person

pytestmark = [pytest.mark.django_db]


def sign_in(client: Client, email: str, password: str) -> Any:
    return client.post("/accounts/login/", {"login": email, "password": password})


def test_wrong_passwords_are_throttled_even_before_the_right_one(cast: dict[str, Any]) -> None:
    """allauth's limit: 5 failures per account within 5 minutes; then even the right password
    is refused, from another address too."""
    user = person("throttled", f"throttled-{uuid.uuid4().hex[:8]}@example.com")
    client = Client(REMOTE_ADDR=f"10.9.{uuid.uuid4().int % 250}.1")
    for _ in range(5):
        refused = sign_in(client, user.email, "wrong-password")
        assert refused.status_code == 200 and "not correct" in refused.content.decode()
    blocked = sign_in(client, user.email, "pw-" + "throttled" * 3)
    assert "Too many failed login attempts" in blocked.content.decode()
    assert "_auth_user_id" not in client.session
    elsewhere = Client(REMOTE_ADDR="10.8.0.2")
    assert "_auth_user_id" not in elsewhere.session
    assert "Too many" in sign_in(elsewhere, user.email, "pw-" + "throttled" * 3).content.decode()


def test_the_right_password_signs_in_by_email(cast: dict[str, Any]) -> None:
    client = Client(REMOTE_ADDR="10.7.0.1")
    response = sign_in(client, "owner@example.com", "pw-" + "owner" * 3)
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(cast["owner"].pk)


def test_a_forgotten_password_is_reset_through_the_mailed_link(cast: dict[str, Any]) -> None:
    client = Client()
    client.post("/accounts/password/reset/", {"email": "auditor@example.com"})
    link = re.search(
        r"https?://[^/\s]+(/accounts/password/reset/key/\S+)", str(mail.outbox[-1].body)
    )
    assert link and mail.outbox[-1].to == ["auditor@example.com"]
    form = client.get(link.group(1), follow=True)
    new = "a new and much longer passphrase"
    client.post(form.request["PATH_INFO"], {"password1": new, "password2": new})
    assert sign_in(Client(), "auditor@example.com", "pw-" + "auditor" * 3).status_code == 200
    assert sign_in(Client(), "auditor@example.com", new).status_code == 302
    # The link works once, and an address without an account is mailed nothing.
    assert "Bad Token" in client.get(link.group(1), follow=True).content.decode()
    sent = len(mail.outbox)
    client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert len(mail.outbox) == sent


def test_sign_up_is_open_only_to_a_browser_holding_an_invitation(cast: dict[str, Any]) -> None:
    client = Client()
    assert "Sign Up Closed" in client.get("/accounts/signup/").content.decode()
    _, secret = invitation_create(
        actor=OPERATOR, organization=cast["acme"], email="new@example.com", role=Role.VIEWER
    )
    page = client.get(f"/invitations/{secret}/")
    assert page.status_code == 200 and "Join Acme" in page.content.decode()
    assert 'name="email"' in client.get("/accounts/signup/").content.decode()
    assert client.get("/invitations/phi_unknown/").status_code == 404


def test_an_invitation_opens_sign_up_for_the_invited_address_only(cast: dict[str, Any]) -> None:
    _, secret = invitation_create(
        actor=OPERATOR, organization=cast["acme"], email="new@example.com", role=Role.VIEWER
    )
    client = Client()
    client.get(f"/invitations/{secret}/")
    password = "a long and unguessable passphrase"
    form = {"password1": password, "password2": password}
    refused = client.post("/accounts/signup/", {**form, "email": "other@example.com"})
    assert "This invitation is for new@example.com" in refused.content.decode()
    assert not User.objects.filter(email="other@example.com").exists()
    assert client.post("/accounts/signup/", {**form, "email": "New@Example.com"}).status_code == 302
    assert User.objects.filter(email__iexact="new@example.com").exists()


def test_the_admin_sits_behind_the_same_sign_in(cast: dict[str, Any]) -> None:
    response = Client().get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/accounts/login/")
    member = Client()
    member.force_login(cast["owner"])
    # An owner is no staff of the deployment: the admin refuses them.
    assert member.get("/admin/login/").status_code == 403


def test_an_organisation_requiring_sso_opens_only_to_sso_sessions(cast: dict[str, Any]) -> None:
    organization_settings_update(
        actor=acting(cast["owner"]), organization=cast["acme"], sso_required=True
    )
    client = Client()
    client.force_login(cast["admin"])
    assert client.get("/orgs/acme/").status_code == 403
    assert client.get("/api/v1/orgs/acme/fleet/teams").status_code == 403
    # What allauth records in the session after a sign-in through the SSO provider.
    session = client.session
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [
        {"method": "socialaccount", "provider": "sso", "uid": "admin", "at": 0.0}
    ]
    session["account_authentication_methods_user"] = str(cast["admin"].pk)
    session.save()
    assert client.get("/orgs/acme/").status_code == 200
    assert client.get("/api/v1/orgs/acme/fleet/teams").status_code == 200


def test_pages_carry_a_content_security_policy(cast: dict[str, Any]) -> None:
    response = Client().get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
