"""Key revocation end to end: the real agent CLI, as a subprocess, against the real PolicyHub
server (pytest-django's live_server on PostgreSQL), with real signing keys rotated and revoked by
the server's services.

What the server would never send comes from a relay between the two, standing for whoever holds
a revoked key and can answer the machine: bundles signed with that real revoked key (or with a
key it endorsed), and revocation lists that are forged, stale, dated ahead or for another
organisation. Everything else the relay passes on as the server answered it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from policyhub.fleet.models import Device
from policyhub.releases import signing
from policyhub.releases.models import Release, SigningKey
from policyhub.releases.services.keys import signing_key_new, signing_key_rotate
from policyhub.releases.services.revocation import signing_key_revoke
from policyhub.releases.services.rollback import file_sets_retitled
from policyhub.releases.services.signed import signed_release
from tests.agent.support import MISSING_CODEX, snapshot
from tests.agent.test_live import (
    ETC,
    POLICY,
    STATE,
    TEAM,
    Machine,
    agent,
    assert_release_on_disk,
    last_line,
    new_token,
    publish,
)
from tests.conftest import acting
from tests.delivery.conftest import fresh_cache

# Fixtures (autouse: publishing and re-signing run at commit, the delivery cache starts empty).
__all__ = ["agent", "fresh_cache", "new_token", "publish"]

pytestmark = [pytest.mark.django_db(transaction=True)]

KEYS = "/api/v1/keys"
BUNDLE = "/api/v1/device/bundle"
REVOCATION_FIELDS = ("revocations", "revocations_signature", "revocations_key_id")
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Relay:
    """A plain-http relay on loopback to the live server. `rewrite` maps a path to a function
    of the server's answer (status, headers, body) returning the answer the machine gets;
    `fresh` drops If-None-Match, so every sync gets a whole bundle (and looks at the keys)."""

    upstream: str
    rewrite: dict[str, Callable[[Answer], Answer]] = field(default_factory=dict)
    fresh: bool = False
    url: str = ""


def _handler(relay: Relay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() in ("authorization", "content-type", "x-codex-version")
                or (name.lower() == "if-none-match" and not relay.fresh)
            }
            target = urlsplit(relay.upstream)
            connection = http.client.HTTPConnection(
                target.hostname or "127.0.0.1", target.port, timeout=60
            )
            connection.request(self.command, self.path, body=body, headers=headers)
            reply = connection.getresponse()
            answer: Answer = (
                reply.status,
                {k: v for k, v in reply.getheaders() if k.lower() in ("etag", "content-type")},
                reply.read(),
            )
            connection.close()
            if self.path in relay.rewrite:
                answer = relay.rewrite[self.path](answer)
            status, reply_headers, data = answer
            self.send_response(status)
            for name, value in reply_headers.items():
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if status != 304:
                self.wfile.write(data)

        do_GET = do_POST = _relay

    return Handler


@contextlib.contextmanager
def relaying(upstream: str) -> Iterator[Relay]:
    relay = Relay(upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(relay))
    relay.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def relay(live_server: Any) -> Iterator[Relay]:
    with relaying(live_server.url) as found:
        yield found


def bundle_signed_by(
    key: SigningKey, release: Release, revision: int
) -> Callable[[Answer], Answer]:
    """The team's current files as a new revision, signed by `key` with the server's own code:
    what the holder of that key could make."""
    forged, _ = signed_release(
        organization=release.organization,
        team_path=release.team_path,
        revision=revision,
        sets=file_sets_retitled(release, revision=revision),
        content_digest=release.content_digest,
        key=key,
        previous=None,
        publish_run=None,
        created_by=None,
        provenance={},
    )
    body = forged.agent_body.encode()
    return lambda answer: (
        200,
        {"ETag": f'"{forged.etag}"', "Content-Type": "application/json"},
        body,
    )


def keys_changed(change: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Answer], Answer]:
    """The server's key answer, changed as `change` says."""

    def rewrite(answer: Answer) -> Answer:
        status, headers, data = answer
        return status, headers, json.dumps(change(json.loads(data))).encode()

    return rewrite


def without_revocations(answer: dict[str, Any]) -> dict[str, Any]:
    """The key answer of a server before revocations (or one that had them stripped)."""
    return {"keys": answer["keys"]}


def status_of(machine: Machine) -> dict[str, Any]:
    return dict(json.loads(machine("status", "--json").stdout))


def key_of(release: Release) -> SigningKey:
    return SigningKey.objects.get(pk=release.signing_key_id)


def revoke(cast: dict[str, Any], key: SigningKey, reason: str = "key file leaked") -> Any:
    return signing_key_revoke(
        actor=acting(cast["owner"]), organization=cast["acme"], key_id=key.key_id, reason=reason
    )


def enrol(machine: Machine, relay: Relay, token: str) -> None:
    done = machine("enroll", "--server", relay.url, "--token", token, "--codex-bin", MISSING_CODEX)
    assert done.returncode == 0, done.stderr


# --- the finding: a retired key's bundle, and a key it endorsed ------------------------------


def test_a_bundle_signed_by_a_revoked_key_is_refused_and_its_endorsee_is_not_pinned(
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
    relay: Relay,
) -> None:
    first = publish()
    old_key = key_of(first)
    enrol(agent, relay, new_token())
    new_key = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    second = publish(POLICY.replace('"high"', '"medium"'))
    synced = agent("sync")
    assert last_line(synced.stdout) == f"revision {second.revision} applied", synced.stderr
    assert sorted(status_of(agent)["pinned_keys"]) == sorted([old_key.key_id, new_key.key_id])
    # Rotation alone: the retired key still verifies, which is what the finding was about.
    done = revoke(cast, old_key)
    # Team engineering still served its first release: it is signed again; this team is not.
    assert (done.rotated, done.teams_to_resign) == (False, 1)
    assert Release.objects.get(team_path=TEAM, current=True) == second
    old_key.refresh_from_db()

    before = snapshot(agent.root, skip=(STATE,))
    relay.rewrite[BUNDLE] = bundle_signed_by(old_key, second, second.revision + 1)
    refused = agent("sync")
    assert refused.returncode == 1
    assert f"signed by key {old_key.key_id}, which the organisation revoked" in refused.stderr
    assert f"signing key {old_key.key_id} was revoked by the organisation" in refused.stderr
    assert snapshot(agent.root, skip=(STATE,)) == before
    status = status_of(agent)
    assert status["pinned_keys"] == [new_key.key_id]
    assert status["revoked_keys"] == [old_key.key_id]
    assert "which the organisation revoked" in status["last_error"]
    device = Device.objects.get()
    (reported,) = device.errors
    assert reported.startswith("bundle refused: ") and old_key.key_id in reported

    # A key the revoked key endorses: never pinned, even where the revocations are stripped
    # from the answer (this machine keeps what it learned).
    attacker = signing_key_new(cast["acme"], endorser=old_key)
    offered = {
        "key_id": attacker.key_id,
        "public_key": attacker.public_key,
        "status": "active",
        "endorsed_by": old_key.key_id,
        "endorsement": attacker.endorsement,
    }
    assert signing.verify(
        old_key.public_key,
        signing.endorsement_message(attacker.key_id, attacker.public_key),
        attacker.endorsement,
    )
    relay.rewrite[BUNDLE] = bundle_signed_by(attacker, second, second.revision + 1)
    relay.rewrite[KEYS] = keys_changed(
        lambda answer: {"keys": [*answer["keys"], offered]}  # and no revocations
    )
    refused = agent("sync")
    assert refused.returncode == 1
    assert (
        f"signed by key {attacker.key_id}, which is not pinned and not trusted: its endorsing "
        f"key {old_key.key_id} is revoked" in refused.stderr
    )
    assert snapshot(agent.root, skip=(STATE,)) == before
    status = status_of(agent)
    assert status["pinned_keys"] == [new_key.key_id]
    assert status["revoked_keys"] == [old_key.key_id]

    # The real server again: what it serves is still applied.
    relay.rewrite.clear()
    again = agent("sync")
    assert again.returncode == 0, again.stderr
    assert last_line(again.stdout) == f"revision {second.revision} unchanged"
    assert_release_on_disk(agent.root, second)


# --- revoking the active key -----------------------------------------------------------------


def test_the_active_key_revoked_the_release_is_re_signed_and_the_machine_follows(
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
    relay: Relay,
) -> None:
    first = publish()
    oldest = key_of(first)
    active = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    second = publish(POLICY.replace('"high"', '"medium"'))
    enrol(agent, relay, new_token())
    assert sorted(status_of(agent)["pinned_keys"]) == sorted([oldest.key_id, active.key_id])

    done = revoke(cast, active)
    successor = done.active
    assert done.rotated and not done.reenrolment_needed and successor.endorsed_by == oldest
    third = Release.objects.get(organization=cast["acme"], team_path=TEAM, current=True)
    assert (third.revision, key_of(third)) == (second.revision + 1, successor)
    assert third.content_digest == second.content_digest
    assert signing.verify(successor.public_key, third.manifest.encode(), third.signature)

    synced = agent("sync")
    assert synced.returncode == 0, synced.stderr
    assert last_line(synced.stdout) == f"revision {third.revision} applied"
    assert_release_on_disk(agent.root, third)
    status = status_of(agent)
    assert sorted(status["pinned_keys"]) == sorted([oldest.key_id, successor.key_id])
    assert status["revoked_keys"] == [active.key_id]
    assert Device.objects.get().applied_revision == third.revision

    # Whoever holds the revoked key now: refused.
    active.refresh_from_db()
    relay.rewrite[BUNDLE] = bundle_signed_by(active, third, third.revision + 1)
    refused = agent("sync")
    assert refused.returncode == 1 and "which the organisation revoked" in refused.stderr
    assert_release_on_disk(agent.root, third)


def test_with_no_key_left_to_vouch_the_machine_refuses_until_enrolled_again(
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
    relay: Relay,
) -> None:
    first = publish()
    only = key_of(first)
    enrol(agent, relay, new_token())
    done = revoke(cast, only)
    assert done.reenrolment_needed
    resigned = Release.objects.get(organization=cast["acme"], team_path=TEAM, current=True)
    assert key_of(resigned) == done.active

    stranded = agent("sync")
    assert stranded.returncode == 1
    # The list is signed by a key this machine cannot trust; the key's own revocation is enough.
    assert "ignored revocation data from the server: the revocation list is signed by key" in (
        stranded.stderr
    )
    assert (
        f"signed by key {done.active.key_id}, which is not pinned and not trusted: it carries no "
        "endorsement by a pinned key; enrol this device again" in stranded.stderr
    )
    status = status_of(agent)
    assert (status["pinned_keys"], status["revoked_keys"]) == ([], [only.key_id])
    assert_release_on_disk(agent.root, first)  # untouched

    enrol(agent, relay, new_token())
    status = status_of(agent)
    assert status["pinned_keys"] == [done.active.key_id]
    assert status["revoked_keys"] == [only.key_id]  # from the enrolment's list
    assert status["applied_revision"] == resigned.revision
    assert_release_on_disk(agent.root, resigned)
    only.refresh_from_db()
    relay.rewrite[BUNDLE] = bundle_signed_by(only, resigned, resigned.revision + 1)
    refused = agent("sync")
    assert refused.returncode == 1 and "which the organisation revoked" in refused.stderr


# --- revocation lists that must be ignored ---------------------------------------------------


@pytest.fixture
def learned(
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
    relay: Relay,
) -> dict[str, Any]:
    """Three keys; the machine pinned all, then learned that the oldest and the middle one were
    revoked (two lists, the later naming both). The relay hands out whole bundles every sync."""
    first = publish()
    oldest = key_of(first)
    middle = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    publish(POLICY.replace('"high"', '"medium"'))
    newest = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    enrol(agent, relay, new_token())
    relay.fresh = True
    revoke(cast, oldest)
    earlier = json.loads(agent("status", "--json").stdout)  # nothing fetched yet
    assert earlier["revoked_keys"] == []
    older_answer = json.loads(relay_get(relay, KEYS, agent))
    assert agent("sync").returncode == 0
    revoke(cast, middle)
    assert agent("sync").returncode == 0
    status = status_of(agent)
    assert status["pinned_keys"] == [newest.key_id]
    assert sorted(status["revoked_keys"]) == sorted([oldest.key_id, middle.key_id])
    return {"newest": newest, "older_answer": older_answer, **cast}


def relay_get(relay: Relay, path: str, machine: Machine) -> bytes:
    """What the server answers the machine's credential at `path`."""
    state = json.loads((machine.root / STATE / "state.json").read_text())
    target = urlsplit(relay.upstream)
    connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
    connection.request("GET", path, headers={"Authorization": f"Bearer {state['credential']}"})
    data = connection.getresponse().read()
    connection.close()
    return data


def held(machine: Machine) -> tuple[str, list[str]]:
    state = json.loads((machine.root / STATE / "state.json").read_text())
    return state["revocations_issued_at"], sorted(state["revoked_keys"])


def resigned_list(key: SigningKey, statement: dict[str, Any]) -> dict[str, Any]:
    """A list signed with a real key of the organisation."""
    text = signing.canonical_json(statement)
    return {
        "revocations": text.decode(),
        "revocations_signature": signing.sign(key.private_key_encrypted, text),
        "revocations_key_id": key.key_id,
    }


def replacing(fields: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda answer: {**answer, **fields}


def test_forged_stale_and_misdated_revocation_lists_are_ignored(
    learned: dict[str, Any], agent: Machine, relay: Relay, publish: Callable[..., Release]
) -> None:
    newest = learned["newest"]
    before = held(agent)
    genuine = json.loads(relay_get(relay, KEYS, agent))
    statement = json.loads(genuine["revocations"])
    revoking_the_active_key = {
        **statement,
        "revoked": [
            *statement["revoked"],
            {"key_id": newest.key_id, "revoked_at": "2030-01-01T00:00:00Z"},
        ],
        "issued_at": signing.timestamp(timezone.now()),
    }
    stranger = signing_key_new(learned["acme"], endorser=None)
    one_more = {
        **statement,
        "revoked": [
            *statement["revoked"],
            {"key_id": stranger.key_id, "revoked_at": "2030-01-01T00:00:00Z"},
        ],
        "issued_at": signing.timestamp(timezone.now()),
    }
    cases = {
        # Signed by a key this machine never trusted.
        "signed by key": resigned_list(stranger, revoking_the_active_key),
        # Claimed to be the active key's, with someone else's signature.
        "does not verify": {
            "revocations": signing.canonical_json(one_more).decode(),
            "revocations_signature": genuine["revocations_signature"],
            "revocations_key_id": newest.key_id,
        },
        # The list this machine held before the last one: genuine, and older.
        "is older than the one this machine holds": {
            k: learned["older_answer"][k] for k in REVOCATION_FIELDS
        },
        # Signed by the real active key, dated two days ahead.
        "ahead of this machine's clock": resigned_list(
            newest,
            {**statement, "issued_at": signing.timestamp(timezone.now() + timedelta(days=2))},
        ),
        # Signed by the real active key, for another organisation.
        "is for organisation 'other'": resigned_list(
            newest,
            {**statement, "organization": "other", "issued_at": signing.timestamp(timezone.now())},
        ),
    }
    release = publish(POLICY.replace('"high"', '"low"'))
    for why, fields in cases.items():
        relay.rewrite[KEYS] = keys_changed(replacing(fields))
        synced = agent("sync")
        assert synced.returncode == 0, (why, synced.stderr)
        assert "warning: ignored revocation data from the server" in synced.stderr, why
        assert why in synced.stderr, (why, synced.stderr)
        assert last_line(synced.stdout).startswith(f"revision {release.revision} "), why
        assert held(agent) == before, why
        assert status_of(agent)["pinned_keys"] == [newest.key_id], why
    assert_release_on_disk(agent.root, release)


def test_a_key_answer_of_a_server_before_revocations_still_works(
    cast: dict[str, Any],
    publish: Callable[..., Release],
    new_token: Callable[[], str],
    agent: Machine,
    relay: Relay,
) -> None:
    relay.rewrite[KEYS] = keys_changed(without_revocations)
    first = publish()
    enrol(agent, relay, new_token())
    new_key = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    second = publish(POLICY.replace('"high"', '"medium"'))
    synced = agent("sync")
    assert synced.returncode == 0, synced.stderr
    assert "revocation" not in synced.stderr
    assert last_line(synced.stdout) == f"revision {second.revision} applied"
    status = status_of(agent)
    assert sorted(status["pinned_keys"]) == sorted([key_of(first).key_id, new_key.key_id])
    assert status["revoked_keys"] == []
    assert (agent.root / ETC / "config.toml").exists()
