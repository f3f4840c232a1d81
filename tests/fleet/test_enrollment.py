"""Enrolment tokens: expiry, use limits, revocation, roles, and the command that makes them."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from policyhub import credentials
from policyhub.audit.models import AuditEvent
from policyhub.errors import ApplicationError
from policyhub.fleet.models import Device, EnrollmentToken
from policyhub.fleet.services import (
    EnrollmentRefused,
    device_enroll,
    device_move,
    enrollment_token_create,
    enrollment_token_revoke,
)
from policyhub.policies.services import policy_apply
from policyhub.validators import duration_parse
from tests.conftest import OPERATOR, acting, make_policy

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def teams(cast: dict[str, Any]) -> None:
    policy_apply(
        organization=cast["acme"],
        wanted=make_policy("[teams.web]\n[teams.ci]\n"),
        actor=acting(cast["admin"]),
    )


def token(cast: dict[str, Any], **kwargs: Any) -> tuple[EnrollmentToken, str]:
    return enrollment_token_create(
        organization=cast["acme"],
        team_path=kwargs.pop("team_path", "web"),
        actor=OPERATOR,
        **kwargs,
    )


@pytest.mark.usefixtures("teams")
def test_enrolment_returns_a_credential_whose_hash_alone_is_stored(cast: dict[str, Any]) -> None:
    _, secret = token(cast)
    device, credential = device_enroll(token_secret=secret, hostname="laptop")
    assert credentials.well_formed(credential, credentials.DEVICE_PREFIX)
    assert device.credential_hash == credentials.secret_hash(credential)
    assert credential not in str(list(Device.objects.values()))
    assert secret not in str(list(EnrollmentToken.objects.values()))
    assert device.team.path == "web"
    assert AuditEvent.objects.filter(action="device.enroll", object_key=str(device.pk)).exists()


@pytest.mark.usefixtures("teams")
def test_token_use_limit_is_enforced(cast: dict[str, Any]) -> None:
    _, secret = token(cast, max_uses=2)
    device_enroll(token_secret=secret, hostname="a")
    device_enroll(token_secret=secret, hostname="b")
    with pytest.raises(EnrollmentRefused, match="used up"):
        device_enroll(token_secret=secret, hostname="c")
    assert Device.objects.count() == 2


@pytest.mark.usefixtures("teams")
def test_expired_and_revoked_tokens_enrol_nothing(cast: dict[str, Any]) -> None:
    expired, expired_secret = token(cast)
    EnrollmentToken.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(EnrollmentRefused, match="expired"):
        device_enroll(token_secret=expired_secret, hostname="a")
    revoked, revoked_secret = token(cast)
    enrollment_token_revoke(token=revoked, actor=acting(cast["admin"]))
    with pytest.raises(EnrollmentRefused, match="revoked"):
        device_enroll(token_secret=revoked_secret, hostname="a")
    with pytest.raises(EnrollmentRefused, match="unknown"):
        device_enroll(token_secret="phe_" + "A" * 43, hostname="a")
    assert not Device.objects.exists()


@pytest.mark.parametrize("text", ["0d", "7", "7w", "-1d", "366d", "", "1.5h"])
def test_bad_token_lifetimes_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        duration_parse(text)
    assert refused.value.issues[0].path == "expires"


def test_token_lifetimes_parse() -> None:
    assert duration_parse("30m") == timedelta(minutes=30)
    assert duration_parse("12h") == timedelta(hours=12)
    assert duration_parse("365d") == timedelta(days=365)


@pytest.mark.usefixtures("teams")
def test_only_owners_and_admins_manage_tokens_and_devices(cast: dict[str, Any]) -> None:
    with pytest.raises(ApplicationError, match="may not create enrolment tokens"):
        enrollment_token_create(
            organization=cast["acme"], team_path="web", actor=acting(cast["auditor"])
        )
    with pytest.raises(ApplicationError, match="may not"):
        enrollment_token_create(
            organization=cast["acme"], team_path="web", actor=acting(cast["outsider"])
        )
    _, secret = token(cast)
    device, _ = device_enroll(token_secret=secret, hostname="a")
    with pytest.raises(ApplicationError, match="may not move devices"):
        device_move(device=device, team_path="ci", actor=acting(cast["auditor"]))
    assert device_move(device=device, team_path="ci", actor=acting(cast["admin"])).team.path == "ci"


@pytest.mark.usefixtures("teams")
def test_token_for_unknown_team_is_refused_naming_the_team(cast: dict[str, Any]) -> None:
    with pytest.raises(ApplicationError) as refused:
        token(cast, team_path="nope")
    assert refused.value.issues[0].path == "team"
    assert not EnrollmentToken.objects.exists()


@pytest.mark.usefixtures("teams")
def test_command_prints_a_token_that_enrols_exactly_its_uses(cast: dict[str, Any]) -> None:
    out = io.StringIO()
    call_command(
        "enrollment_token",
        "create",
        "--org=acme",
        "--team=ci",
        "--uses=1",
        "--expires=2h",
        stdout=out,
        stderr=io.StringIO(),
    )
    secret = out.getvalue().strip()
    created = EnrollmentToken.objects.get()
    assert (created.max_uses, created.team.path) == (1, "ci")
    assert timedelta(minutes=119) < created.expires_at - timezone.now() <= timedelta(hours=2)
    device, _ = device_enroll(token_secret=secret, hostname="a")
    assert device.team.path == "ci"
    with pytest.raises(EnrollmentRefused):
        device_enroll(token_secret=secret, hostname="b")
    listing = io.StringIO()
    call_command("enrollment_token", "list", "--org=acme", stdout=listing)
    assert "used up" in listing.getvalue() and secret not in listing.getvalue()


@pytest.mark.usefixtures("teams")
def test_command_refuses_bad_input_with_the_field(cast: dict[str, Any]) -> None:
    with pytest.raises(CommandError, match="expires"):
        call_command("enrollment_token", "create", "--org=acme", "--team=ci", "--expires=soon")
    with pytest.raises(CommandError, match="no team"):
        call_command("enrollment_token", "create", "--org=acme", "--team=nope")
    assert not EnrollmentToken.objects.exists()


@pytest.mark.usefixtures("teams")
def test_team_with_enrolled_devices_cannot_be_deleted(cast: dict[str, Any]) -> None:
    _, secret = token(cast)
    device_enroll(token_secret=secret, hostname="a")
    with pytest.raises(ApplicationError, match="devices are enrolled"):
        policy_apply(
            organization=cast["acme"],
            wanted=make_policy("[teams.ci]\n"),
            actor=acting(cast["admin"]),
        )
    assert Device.objects.get().team.path == "web"


@pytest.mark.usefixtures("teams")
def test_enrolment_api_answers_once_with_the_credential(
    cast: dict[str, Any], client: Client
) -> None:
    _, secret = token(cast)
    response = client.post(
        "/api/v1/device/enroll",
        data={"token": secret, "hostname": "laptop", "os": "Linux", "codex_version": "0.169.0"},
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["organization"] == "acme" and body["team"] == "web"
    assert credentials.well_formed(body["credential"], credentials.DEVICE_PREFIX)
    # Nothing is published yet, but the key that will sign it exists and is pinned now.
    (key,) = body["keys"]
    assert key["status"] == "active" and key["endorsed_by"] is None
    assert Device.objects.get().hostname == "laptop"
