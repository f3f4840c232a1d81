"""The keys machines are served, wherever they are served (the enrolment answer and the key
list), once a key is revoked: the revoked key is left out, the signed revocation list and each
key's own revocation come beside them, and what agents of every version read still parses."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from policyhub_agent import verify as agent

from policyhub.fleet.services import enrollment_token_create
from policyhub.releases import signing
from policyhub.releases.models import SigningKey
from policyhub.releases.services.keys import signing_key_new, signing_key_rotate
from policyhub.releases.services.revocation import signing_key_revoke
from tests.conftest import acting

pytestmark = [pytest.mark.django_db(transaction=True)]

# What an agent before revocations reads of a key, and the statuses it accepts.
KEY_FIELDS = {"key_id", "public_key", "status", "endorsed_by", "endorsement"}


def keys_answer(client: Client, credential: str) -> dict[str, Any]:
    answer = client.get("/api/v1/keys", HTTP_AUTHORIZATION=f"Bearer {credential}")
    assert answer.status_code == 200
    return dict(answer.json())


def enrolment_answer(client: Client, cast: dict[str, Any]) -> dict[str, Any]:
    _, secret = enrollment_token_create(
        organization=cast["acme"], team_path="platform/ci", actor=acting(cast["admin"])
    )
    answer = client.post(
        "/api/v1/device/enroll",
        {"token": secret, "hostname": "new"},
        content_type="application/json",
    )
    assert answer.status_code == 201, answer.json()
    return dict(answer.json())


def test_before_any_revocation_the_answer_is_the_old_one_plus_empty_fields(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Callable[..., Any], client: Client
) -> None:
    publish()
    signing_key_rotate(organization=cast["acme"], actor=acting(cast["admin"]))
    _, credential = enrol()
    answer = keys_answer(client, credential)
    assert (answer["revocations"], answer["revocations_signature"]) == (None, None)
    assert (answer["revocations_key_id"], answer["self_revocations"]) == (None, [])
    assert [set(key) for key in answer["keys"]] == [KEY_FIELDS, KEY_FIELDS]
    assert [key["status"] for key in answer["keys"]] == ["retired", "active"]


@pytest.mark.parametrize("where", ["key list", "enrolment"])
def test_a_revoked_key_is_left_out_and_its_revocation_proves_itself(
    cast: dict[str, Any],
    publish: Callable[..., Any],
    enrol: Callable[..., Any],
    client: Client,
    where: str,
) -> None:
    publish()
    first = SigningKey.objects.get(status="active")
    second = signing_key_rotate(organization=cast["acme"], actor=acting(cast["admin"]))
    _, credential = enrol()
    signing_key_revoke(
        actor=acting(cast["owner"]), organization=cast["acme"], key_id=first.key_id, reason="lost"
    )
    first.refresh_from_db()
    answer = (
        keys_answer(client, credential) if where == "key list" else enrolment_answer(client, cast)
    )
    # Only the keys machines may trust: an agent that knows no revocations never learns the
    # revoked key again, and what it reads parses as it always did.
    assert [key["key_id"] for key in answer["keys"]] == [second.key_id]
    assert {key["status"] for key in answer["keys"]} <= {"active", "retired"}
    assert [key.key_id for key in agent.parse_keys(answer["keys"])] == [second.key_id]
    # The list, signed by the active key.
    assert answer["revocations_key_id"] == second.key_id
    assert signing.verify(
        second.public_key, answer["revocations"].encode(), answer["revocations_signature"]
    )
    statement = json.loads(answer["revocations"])
    assert statement["purpose"] == "policyhub-key-revocations"
    assert statement["organization"] == "acme"
    assert statement["revoked"] == [
        {"key_id": first.key_id, "revoked_at": signing.timestamp(first.revoked_at)}  # type: ignore[arg-type]
    ]
    # The key's own word, which needs no other key.
    (own,) = answer["self_revocations"]
    assert (own["key_id"], own["public_key"]) == (first.key_id, first.public_key)
    assert signing.verify(
        first.public_key,
        signing.self_revocation_message("acme", first.key_id, first.revoked_at),  # type: ignore[arg-type]
        own["signature"],
    )
    # And the agent's own checks accept both and drop the revoked key from what it pins.
    pinned = {first.key_id: first.public_key, second.key_id: second.public_key}
    update = agent.key_update(answer, pinned, {}, None, "acme", datetime.now(UTC))
    assert update.pinned == {second.key_id: second.public_key}
    assert set(update.revoked) == {first.key_id} and update.ignored == []
    assert update.issued_at == statement["issued_at"]


def test_a_key_pinned_through_a_revoked_key_before_the_revocation_is_dropped_with_it(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Callable[..., Any], client: Client
) -> None:
    """A machine that pinned a key the stolen key endorsed (before it knew of the revocation)
    drops it with the first genuine, newer list: the server lists every key it did not revoke,
    and that one is none of them. A replayed older list drops nothing."""
    publish()
    first = SigningKey.objects.get(status="active")
    second = signing_key_rotate(organization=cast["acme"], actor=acting(cast["admin"]))
    _, credential = enrol()
    before = keys_answer(client, credential)
    attacker = signing_key_new(cast["acme"], endorser=first)
    pinned = {
        first.key_id: first.public_key,
        second.key_id: second.public_key,
        attacker.key_id: attacker.public_key,
    }
    signing_key_revoke(
        actor=acting(cast["owner"]), organization=cast["acme"], key_id=first.key_id, reason="lost"
    )
    answer = keys_answer(client, credential)
    now = datetime.now(UTC)
    update = agent.key_update(answer, pinned, {}, None, "acme", now)
    assert update.pinned == {second.key_id: second.public_key}
    # The same answer without a newer list (an answer from before the revocation, replayed
    # to a machine that already holds this list) keeps the pins it does not revoke.
    held = agent.key_update(before, pinned, {}, update.issued_at, "acme", now)
    assert attacker.key_id in held.pinned and held.issued_at == update.issued_at
