"""The signed team assignment a device fetches to prove a move to its agent: numbered by the
moves, signed by the organisation's active key, for this device only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from policyhub_agent.errors import VerificationError
from policyhub_agent.verify import Assignment, verify_assignment

from policyhub.fleet.models import Device
from policyhub.fleet.services import device_move
from policyhub.releases.models import SigningKey
from policyhub.releases.services.keys import signing_key_rotate
from tests.conftest import acting

pytestmark = [pytest.mark.django_db]

Enrol = Callable[..., tuple[Device, str]]
URL = "/api/v1/device/assignment"


def assignment(client: Client, credential: str) -> Any:
    return client.get(URL, headers={"Authorization": f"Bearer {credential}"})


def pinned(cast: dict[str, Any]) -> dict[str, str]:
    return {k.key_id: k.public_key for k in SigningKey.objects.filter(organization=cast["acme"])}


def test_the_assignment_names_the_team_and_counts_the_moves(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("platform/ci")
    first = assignment(client, credential)
    assert first.status_code == 200
    checked = verify_assignment(first.json(), pinned(cast), "acme", str(device.pk))
    assert checked == Assignment("platform/ci", 0)
    device_move(device=device, team_path="batch", actor=acting(cast["admin"]))
    device_move(device=device, team_path="platform/ci", actor=acting(cast["admin"]))
    again = verify_assignment(
        assignment(client, credential).json(), pinned(cast), "acme", str(device.pk)
    )
    assert again == Assignment("platform/ci", 2)
    # Signed by the active key: after a rotation, the new one.
    new = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    assert assignment(client, credential).json()["key_id"] == new.key_id


def test_the_assignment_verifies_for_its_device_only_and_needs_a_credential(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("platform/ci")
    other, _ = enrol("batch", hostname="laptop-2")
    answer = assignment(client, credential).json()
    with pytest.raises(VerificationError, match="for another device"):
        verify_assignment(answer, pinned(cast), "acme", str(other.pk))
    tampered = json.loads(answer["statement"]) | {"team": "batch"}
    forged = {**answer, "statement": json.dumps(tampered, sort_keys=True, separators=(",", ":"))}
    with pytest.raises(VerificationError, match="does not verify"):
        verify_assignment(forged, pinned(cast), "acme", str(device.pk))
    assert client.get(URL).status_code == 401
    assert assignment(client, "phd_" + "x" * 43).status_code == 401
