"""Whatever a server or anything in between answers, the agent fails with one line, records it,
reports it, and leaves every file as it was: never a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agent.support import FakeHub, Signer, bundle, encode, enroll, run
from tests.agent.support import snapshot as tree

STATE = "var/lib/policyhub-agent"
BUNDLE = "/api/v1/device/bundle"
KEYS = "/api/v1/keys"
ASSIGNMENT = "/api/v1/device/assignment"
STATUS = "/api/v1/device/status"
DEEP = b"[" * 200_000 + b"]" * 200_000


def _deep_manifest(signer: Signer) -> bytes:
    """A bundle whose manifest, validly signed, is JSON nested far too deep."""
    data = bundle(signer, revision=2)
    manifest = "[" * 100_000 + "]" * 100_000
    return encode({**data, "manifest": manifest, "signature": signer.sign(manifest.encode())})


def _unknown_key(signer: Signer) -> bytes:
    """A bundle by a key the machine has not pinned: the agent asks for the key list."""
    return encode(bundle(Signer(endorsed_by=signer), revision=2))


def _moved(signer: Signer) -> bytes:
    """Another team's bundle: the agent asks for the team assignment."""
    return encode(bundle(signer, revision=2, team="research"))


def _huge_revision(signer: Signer) -> bytes:
    data = bundle(signer, revision=2)
    return encode(data).replace(b'"revision":2', b'"revision":' + b"9" * 50_000)


def _infinite_revision(signer: Signer) -> bytes:
    return encode(bundle(signer, revision=2)).replace(b'"revision":2', b'"revision":1e999')


# case -> (the bundle served, {path: (status, raw answer)}, what the error says)
CASES: dict[str, tuple[Callable[[Signer], bytes], dict[str, tuple[int, bytes]], str]] = {
    "deeply nested bundle": (lambda s: DEEP, {}, "the bundle is not valid JSON"),
    "deeply nested signed manifest": (_deep_manifest, {}, "the signed manifest is not valid JSON"),
    "bundle of invalid UTF-8": (lambda s: b'{"a": "\xff\xfe"}', {}, "not valid JSON"),
    "bundle that is a list": (lambda s: b"[1, 2, 3]", {}, "the bundle is not a JSON object"),
    "measurement of a lone surrogate": (
        lambda s: encode(bundle(s, revision=2)).replace(
            b'"key_id"', b'"measurement":"\\ud800","key_id"', 1
        ),
        {},
        "the bundle holds text that is not valid Unicode",
    ),
    "assignment of a lone surrogate": (
        _moved,
        {ASSIGNMENT: (200, b'{"statement": "\\ud800", "signature": "x", "key_id": "y"}')},
        "team assignment: the server's answer holds text that is not valid Unicode",
    ),
    "revision of 50,000 digits": (_huge_revision, {}, "not valid JSON"),
    "revision of infinity": (_infinite_revision, {}, "'revision' is missing or not a int"),
    "deeply nested key list": (_unknown_key, {KEYS: (200, DEEP)}, "key list: the server's"),
    "key list of the wrong shape": (_unknown_key, {KEYS: (200, b'{"keys": 7}')}, "no 'keys' list"),
    "deeply nested assignment": (_moved, {ASSIGNMENT: (200, DEEP)}, "team assignment: the server"),
    "assignment of the wrong shape": (
        _moved,
        {ASSIGNMENT: (200, b'{"statement": [], "signature": {}}')},
        "the team assignment lacks its statement",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_hostile_answer_is_one_recorded_and_reported_error_and_changes_nothing(
    root: Path, hub: FakeHub, signer: Signer, case: str
) -> None:
    served, overrides, reason = CASES[case]
    assert enroll(root, hub).code == 0
    before = tree(root, skip=(STATE,))
    hub.publish(served(signer))
    hub.overrides = overrides
    result = run(root, "sync")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert reason in result.err.strip().splitlines()[-1], result.err
    assert tree(root, skip=(STATE,)) == before
    state: dict[str, Any] = json.loads((root / STATE / "state.json").read_text())
    assert reason in state["last_error"]
    assert reason in hub.requests(STATUS)[-1].body["errors"][0]


def test_a_huge_error_answer_is_cut_to_a_readable_line(root: Path, hub: FakeHub) -> None:
    assert enroll(root, hub).code == 0
    detail = "x" * 60_000
    hub.overrides = {BUNDLE: (500, json.dumps({"detail": detail}).encode())}
    result = run(root, "sync")
    assert result.code == 1 and "the server answered 500" in result.err
    assert len(result.err) < 1000
