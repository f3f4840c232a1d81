"""Garbage on every delivery endpoint gets a 4xx: never a 5xx, never a bundle, nothing stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyhub.fleet.models import Device

# Nothing here needs committed data: each test rolls back (much faster than flushing).
pytestmark = [pytest.mark.django_db]

Enrol = Callable[..., tuple[Device, str]]

BAD_CREDENTIALS = [
    "",
    "phd_",
    "phd_" + "A" * 42,  # one short
    "phd_" + "A" * 44,  # one long
    "phd_" + "A" * 43,  # well formed, unknown
    "phe_" + "A" * 43,  # an enrolment token's shape
    "phd_" + "A" * 10_000,  # oversize
    "phd_" + "é" * 43,
    "phd_" + "\x00" * 43,
    "'; DROP TABLE fleet_device; --",
    "../../etc/passwd",
]


def no_bundle(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:200])
    assert b"enterprise_managed" not in response.content
    assert b'"files"' not in response.content


@pytest.mark.parametrize("credential", BAD_CREDENTIALS)
def test_bad_bearer_credentials_get_401(
    credential: str, publish: Callable[..., Any], client: Client
) -> None:
    publish()
    for path in ("/api/v1/device/bundle", "/api/v1/keys"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {credential}")
        no_bundle(response)
        assert response.status_code == 401
    status = client.post(
        "/api/v1/device/status",
        data="{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {credential}",
    )
    assert status.status_code == 401


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Token phd_x", "bearer\tphd_x"]
)
def test_missing_or_malformed_authorization_gets_401(
    header: str | None, publish: Callable[..., Any], client: Client
) -> None:
    publish()
    headers = {} if header is None else {"Authorization": header}
    for path in ("/api/v1/device/bundle", "/api/v1/keys"):
        response = client.get(path, headers=headers)
        no_bundle(response)
        assert response.status_code == 401


@pytest.mark.parametrize(
    "segment",
    ["phd_" + "A" * 43, "phd_%FF%FE" + "A" * 39, "%00", "phd_" + "A" * 600, "x" * 512, "%2e%2e"],
)
def test_bad_native_channel_credentials_get_4xx(
    segment: str, publish: Callable[..., Any], client: Client
) -> None:
    publish()
    no_bundle(client.get(f"/config-server/{segment}/codex/config/bundle"))


def test_bundle_endpoints_refuse_other_methods(
    enrol: Enrol, publish: Callable[..., Any], client: Client
) -> None:
    publish()
    _, credential = enrol()
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)(f"/config-server/{credential}/codex/config/bundle")
        assert response.status_code == 405
        response = getattr(client, method)(
            "/api/v1/device/bundle", HTTP_AUTHORIZATION=f"Bearer {credential}"
        )
        assert response.status_code == 405


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(credential=st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
def test_any_credential_text_is_refused_without_error(client: Client, credential: str) -> None:
    header = "".join(c for c in credential if c not in "\r\n")
    response = client.get("/api/v1/device/bundle", HTTP_AUTHORIZATION=f"Bearer {header}")
    assert response.status_code == 401


BAD_STATUS_BODIES: list[tuple[str, bytes, str]] = [
    ("not json", b"{", "body"),
    ("not utf-8", b'{"os": "\xff\xfe"}', "body"),
    ("a list", b"[1, 2]", "body"),
    ("wrong type", b'{"applied_revision": "three"}', "applied_revision"),
    ("negative revision", b'{"applied_revision": -1}', "applied_revision"),
    ("huge revision", b'{"applied_revision": 99999999999999}', "applied_revision"),
    ("errors not a list", b'{"errors": "boom"}', "errors"),
    ("too many errors", json.dumps({"errors": ["e"] * 21}).encode(), "errors"),
    ("error too long", json.dumps({"errors": ["e" * 2001]}).encode(), "errors.0"),
    ("os too long", json.dumps({"os": "x" * 129}).encode(), "os"),
    ("NUL in os", b'{"os": "linux\\u0000"}', "os"),
    ("lone surrogate", b'{"codex_version": "\\ud800"}', "codex_version"),
    ("escape in error", b'{"errors": ["\\u001b[31mred"]}', "errors.0"),
]


@pytest.mark.parametrize(
    ("body", "field"),
    [(body, field) for _, body, field in BAD_STATUS_BODIES],
    ids=[name for name, _, _ in BAD_STATUS_BODIES],
)
def test_malformed_status_report_is_refused_naming_the_field_and_stores_nothing(
    body: bytes, field: str, enrol: Enrol, publish: Callable[..., Any], client: Client
) -> None:
    publish()
    device, credential = enrol()
    response = client.post(
        "/api/v1/device/status",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {credential}",
    )
    assert response.status_code == 400, response.content
    answer = response.json()
    if field != "body":
        assert field in answer["errors"], answer
    device.refresh_from_db()
    assert device.reported_at is None


def test_oversize_status_report_is_refused_with_413(
    enrol: Enrol, publish: Callable[..., Any], client: Client
) -> None:
    publish()
    device, credential = enrol()
    body = json.dumps({"os": "linux", "padding": "x" * 100_000})
    response = client.post(
        "/api/v1/device/status",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {credential}",
    )
    assert response.status_code == 413
    device.refresh_from_db()
    assert device.reported_at is None


def test_valid_status_report_is_stored(
    enrol: Enrol, publish: Callable[..., Any], client: Client
) -> None:
    publish()
    device, credential = enrol()
    report = {
        "applied_revision": 1,
        "codex_version": "0.169.0",
        "os": "Linux 6.1 x86_64",
        "agent_version": "0.1.0",
        "errors": ["config.toml: permission denied"],
    }
    response = client.post(
        "/api/v1/device/status",
        data=json.dumps(report),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {credential}",
    )
    assert response.status_code == 204
    device.refresh_from_db()
    assert (device.applied_revision, device.codex_version, device.errors) == (
        1,
        "0.169.0",
        ["config.toml: permission denied"],
    )


BAD_ENROLMENTS: list[tuple[str, bytes, int]] = [
    ("empty", b"{}", 400),
    ("not json", b"token=abc", 400),
    ("not utf-8", b'{"token": "\xff"}', 400),
    ("token a number", b'{"token": 5}', 403),  # read as the text "5": an unknown token
    ("token too long", json.dumps({"token": "phe_" + "A" * 200}).encode(), 400),
    ("unknown token", json.dumps({"token": "phe_" + "A" * 43}).encode(), 403),
    ("device credential as token", json.dumps({"token": "phd_" + "A" * 43}).encode(), 403),
    ("oversize body", json.dumps({"token": "phe_x", "os": "x" * 10_000}).encode(), 413),
    ("NUL in hostname", json.dumps({"token": "phe_x", "hostname": "a\x00"}).encode(), 400),
]


@pytest.mark.parametrize(
    ("body", "status"),
    [(body, status) for _, body, status in BAD_ENROLMENTS],
    ids=[name for name, _, _ in BAD_ENROLMENTS],
)
def test_bad_enrolment_is_refused_and_creates_no_device(
    body: bytes, status: int, client: Client, cast: dict[str, Any]
) -> None:
    response = client.post("/api/v1/device/enroll", data=body, content_type="application/json")
    assert response.status_code == status, response.content
    assert "credential" not in response.json()
    assert not Device.objects.exists()


@pytest.mark.parametrize("path", ["%00", "a%00b", "platform/%1b"])
def test_control_characters_in_download_paths_get_404(
    path: str, cast: dict[str, Any], publish: Callable[..., Any], client: Client
) -> None:
    publish()
    client.force_login(cast["admin"])
    for suffix in ("files.zip", "codex.mobileconfig"):
        assert client.get(f"/orgs/acme/teams/{path}/{suffix}").status_code == 404


def test_control_characters_in_fleet_filters_get_400(cast: dict[str, Any], client: Client) -> None:
    client.force_login(cast["admin"])
    response = client.get("/api/v1/orgs/acme/fleet/devices", {"team": "a\x00"})
    assert response.status_code == 400 and "team" in response.json()["errors"]
