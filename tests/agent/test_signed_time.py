"""Each file set says when it was signed, in a statement bound to its manifest (with the
manifest's organisation, team and revision, the time the release was made): the agent verifies
it, records it and shows it, and refuses one that is forged, moved or from the future."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from policyhub.releases.signing import canonical_json, signed_time_message, timestamp
from tests.agent.support import FakeHub, Signer, bundle, enroll, run
from tests.agent.test_sync import ETC

NOW = datetime.now(UTC)


def stamped(signer: Signer, data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`data` with another signed-time statement, signed by `signer`."""
    fields = json.loads(signed_time_message(data["manifest"], NOW))
    fields.update(changes)
    text = canonical_json(fields)
    return {**data, "signed_time": text.decode(), "signed_time_signature": signer.sign(text)}


def test_the_signing_time_is_verified_recorded_and_shown(
    root: Path, hub: FakeHub, signer: Signer
) -> None:
    hub.publish(bundle(signer, signed_at=NOW))
    result = enroll(root, hub)
    assert result.code == 0, result.err
    status = json.loads(run(root, "status", "--json").out)
    assert status["applied_signed_at"] == timestamp(NOW)
    assert f"(signed {timestamp(NOW)})" in run(root, "status").out
    # A server that signs no time: nothing recorded, nothing refused.
    hub.publish(bundle(signer, revision=2))
    assert run(root, "sync").code == 0
    assert json.loads(run(root, "status", "--json").out)["applied_signed_at"] is None


def _moved(signer: Signer) -> dict[str, Any]:
    own = bundle(signer)
    other = bundle(signer, revision=2, signed_at=NOW)
    return {
        **own,
        "signed_time": other["signed_time"],
        "signed_time_signature": other["signed_time_signature"],
    }


BROKEN = {
    "another release's": (_moved, "signed signing time is for another manifest"),
    "another key's": (
        lambda signer: stamped(Signer(), bundle(signer)),
        "signing time's signature does not verify",
    ),
    "from the future": (
        lambda signer: stamped(
            signer, bundle(signer), signed_at=timestamp(NOW + timedelta(days=2))
        ),
        "more than a day ahead",
    ),
    "not a time": (
        lambda signer: stamped(signer, bundle(signer), signed_at="yesterday"),
        "signed signing time is malformed",
    ),
    "another purpose": (
        lambda signer: stamped(signer, bundle(signer), purpose="policyhub-codex-measurement"),
        "signed signing time is malformed",
    ),
    "no signature": (
        lambda signer: {
            k: v for k, v in bundle(signer, signed_at=NOW).items() if k != "signed_time_signature"
        },
        "not a string",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_signing_time_that_fails_verification_is_refused_and_nothing_is_written(
    root: Path, hub: FakeHub, signer: Signer, case: str
) -> None:
    make, message = BROKEN[case]
    hub.publish(make(signer))
    result = enroll(root, hub)
    assert result.code == 1 and message in result.err
    assert not (root / ETC).exists()
