"""Least privilege on the machine: the credential in requirements.toml (which every local user
can read) is a fetch credential that opens the native channel's fetch and nothing else; the
device credential, which the agent keeps private, opens the rest. Devices enrolled before fetch
credentials existed move off their exposed credential by rotating it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from policyhub import credentials
from policyhub.audit.models import AuditEvent
from policyhub.fleet.models import Device
from policyhub.fleet.services import device_revoke, enrollment_token_create
from tests.conftest import acting
from tests.delivery.test_fetch import agent, native

pytestmark = [pytest.mark.django_db(transaction=True)]

Enrol = Callable[..., tuple[Device, str]]


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def report(client: Client, credential: str, revision: int = 1) -> Any:
    return client.post(
        "/api/v1/device/status",
        data=json.dumps({"applied_revision": revision, "agent_version": "0.3.2"}),
        content_type="application/json",
        headers=bearer(credential),
    )


def rotate(client: Client, credential: str, new: str) -> Any:
    return client.post(
        "/api/v1/device/credential",
        data=json.dumps({"credential": new}),
        content_type="application/json",
        headers=bearer(credential),
    )


def refused_everywhere_but_the_native_fetch(client: Client, credential: str) -> None:
    assert agent(client, credential).status_code == 401
    assert report(client, credential).status_code == 401
    for path in ("/api/v1/keys", "/api/v1/device/assignment"):
        assert client.get(path, headers=bearer(credential)).status_code == 401, path
    assert rotate(client, credential, credentials.new_secret("phd_")).status_code == 401


def test_enrolment_answers_a_fetch_credential_that_only_fetches(
    cast: dict[str, Any], publish: Callable[..., Any], client: Client
) -> None:
    publish()
    _, token = enrollment_token_create(
        organization=cast["acme"], team_path="platform/ci", actor=acting(cast["admin"])
    )
    answer = client.post(
        "/api/v1/device/enroll", data={"token": token}, content_type="application/json"
    ).json()
    credential, fetch = answer["credential"], answer["fetch_credential"]
    assert fetch.startswith("phf_") and fetch == credentials.fetch_credential(credential)
    device = Device.objects.get(pk=answer["device_id"])
    assert device.fetch_credential_hash == credentials.secret_hash(fetch)

    # The fetch credential gets what Codex gets, byte for byte, and nothing else.
    with_fetch, with_device = native(client, fetch), native(client, credential)
    assert with_fetch.status_code == with_device.status_code == 200
    assert with_fetch.content == with_device.content
    refused_everywhere_but_the_native_fetch(client, fetch)
    device.refresh_from_db()
    assert device.reported_at is None and device.applied_revision is None

    # The device credential opens the rest.
    assert agent(client, credential).status_code == 200
    assert report(client, credential).status_code == 204


def test_a_fetch_credential_stops_with_its_device(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("platform/ci")
    fetch = credentials.fetch_credential(credential)
    assert native(client, fetch).status_code == 200
    device_revoke(device=device, actor=acting(cast["admin"]))
    assert native(client, fetch).status_code == 401


def legacy(enrol: Enrol, hostname: str = "laptop-1") -> tuple[Device, str]:
    """A device as one enrolled before fetch credentials existed has it (as migrated)."""
    device, credential = enrol("platform/ci", hostname=hostname)
    Device.objects.filter(pk=device.pk).update(fetch_credential_hash=None)
    device.refresh_from_db()
    return device, credential


def test_rotation_replaces_the_exposed_credential_at_once(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, old = legacy(enrol)
    new = credentials.new_secret(credentials.DEVICE_PREFIX)
    answer = rotate(client, old, new)
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"fetch_credential": credentials.fetch_credential(new)}
    assert native(client, old).status_code == 401
    assert agent(client, old).status_code == 401
    assert report(client, old).status_code == 401
    assert native(client, credentials.fetch_credential(new)).status_code == 200
    assert agent(client, new).status_code == 200
    assert report(client, new).status_code == 204
    event = AuditEvent.objects.get(action="device.rotate_credential")
    assert event.object_key == str(device.pk) and event.actor_kind == "device"
    # Neither secret is in the trail.
    assert old not in json.dumps(event.after) and new not in json.dumps(event.after)
    # Asked again with the credential it now has (an answer lost on the way): nothing changes.
    assert rotate(client, new, new).status_code == 200
    assert AuditEvent.objects.filter(action="device.rotate_credential").count() == 1


def test_a_device_with_a_fetch_credential_cannot_be_taken_over_by_rotation(
    publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    """Its credential never left the agent; and whoever read an old requirements.toml of a
    device that rotated holds nothing that works."""
    publish()
    device, credential = enrol("platform/ci")
    answer = rotate(client, credential, credentials.new_secret(credentials.DEVICE_PREFIX))
    assert answer.status_code == 400 and "credential" in answer.json()["errors"]
    assert Device.objects.get(pk=device.pk).credential_hash == device.credential_hash
    assert agent(client, credential).status_code == 200


@pytest.mark.parametrize(
    "new",
    [
        "",
        "phd_short",
        "phf_" + "A" * 43,  # a fetch credential's shape
        "phd_" + "A" * 44,
        "phd_" + "é" * 43,
    ],
)
def test_a_malformed_new_credential_is_refused_naming_the_field_and_nothing_changes(
    new: str, publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("platform/ci")
    answer = rotate(client, credential, new)
    assert answer.status_code == 400
    assert "credential" in answer.json()["errors"]
    refreshed = Device.objects.get(pk=device.pk)
    assert refreshed.credential_hash == device.credential_hash
    assert refreshed.fetch_credential_hash == device.fetch_credential_hash
    assert agent(client, credential).status_code == 200


def test_another_devices_credential_cannot_be_taken(
    publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    _, mine = legacy(enrol, "mine")
    _, theirs = enrol("platform/ci", hostname="theirs")
    answer = rotate(client, mine, theirs)
    assert answer.status_code == 400 and "credential" in answer.json()["errors"]
    assert agent(client, mine).status_code == 200 and agent(client, theirs).status_code == 200


def test_a_device_enrolled_before_fetch_credentials_keeps_its_native_channel_until_it_rotates(
    publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    _, credential = legacy(enrol)
    # Its requirements.toml holds the device credential: Codex keeps fetching with it.
    assert native(client, credential).status_code == 200
    new = credentials.new_secret(credentials.DEVICE_PREFIX)
    assert rotate(client, credential, new).status_code == 200
    assert native(client, credential).status_code == 401  # the copy in the file opens nothing
    assert report(client, credential).status_code == 401
    assert native(client, credentials.fetch_credential(new)).status_code == 200
