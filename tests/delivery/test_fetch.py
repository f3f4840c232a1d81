"""Both fetch paths: what they serve, 304s, revocation, moves, rollouts, and counting fetches."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from policyhub.delivery.cache import FLUSH_SQL, _flush_params, cache
from policyhub.fleet.models import Device
from policyhub.fleet.services import device_move, device_revoke
from policyhub.policies.services import policy_apply
from policyhub.releases import signing
from policyhub.releases.models import Release
from policyhub.releases.selectors import rollout_includes
from policyhub.releases.services.rollout import release_rollout_start
from tests.conftest import acting, make_policy
from tests.delivery.conftest import POLICY

pytestmark = [pytest.mark.django_db(transaction=True)]

Enrol = Callable[..., tuple[Device, str]]


def caught_up() -> None:
    """This process has heard of every change committed so far (they arrive a few milliseconds
    after the commit; a busy machine could otherwise fetch in between)."""
    state = cache()
    assert state is None or state.catch_up(), "the delivery listener did not catch up"


def native(client: Client, credential: str, **headers: str) -> Any:
    caught_up()
    return client.get(f"/config-server/{credential}/codex/config/bundle", headers=headers)


def agent(client: Client, credential: str, **headers: str) -> Any:
    caught_up()
    return client.get(
        "/api/v1/device/bundle", headers={"Authorization": f"Bearer {credential}", **headers}
    )


def current(cast: dict[str, Any], team: str) -> Release:
    return Release.objects.get(organization=cast["acme"], team_path=team, current=True)


def test_native_channel_serves_the_team_release_as_enterprise_managed_fragments(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    _, credential = enrol("platform/ci")
    response = native(client, credential)
    release = current(cast, "platform/ci")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["ETag"] == f'"{release.etag}"'
    body = json.loads(response.content)
    assert set(body) == {"config_toml", "requirements_toml"}
    (config,) = body["config_toml"]["enterprise_managed"]
    (requirements,) = body["requirements_toml"]["enterprise_managed"]
    assert config["contents"] == release.files["config.toml"]
    assert requirements["contents"] == release.files["requirements.toml"]
    assert config["id"] and config["name"] and "platform/ci" in config["name"]


def test_agent_bundle_is_the_signed_release_and_verifies(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    _, credential = enrol("platform/ci")
    body = json.loads(agent(client, credential).content)
    release = current(cast, "platform/ci")
    assert body["files"] == release.files
    assert "profiles/deep.config.toml" in body["files"]
    assert body["revision"] == release.revision and body["team"] == "platform/ci"
    assert signing.verify(
        release.signing_key.public_key, body["manifest"].encode(), body["signature"]
    )
    assert json.loads(body["manifest"])["files"] == body["hashes"]
    # When it was signed, bound to this manifest and signed by the same key.
    assert signing.verify(
        release.signing_key.public_key,
        body["signed_time"].encode(),
        body["signed_time_signature"],
    )
    stamp = json.loads(body["signed_time"])
    assert stamp["manifest"] == hashlib.sha256(body["manifest"].encode()).hexdigest()
    signed_at = datetime.fromisoformat(stamp["signed_at"])
    assert abs(signed_at - release.created_at) < timedelta(seconds=30)


@pytest.mark.parametrize("channel", [native, agent])
def test_matching_etag_gets_304_and_a_stale_one_the_body(
    channel: Callable[..., Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    _, credential = enrol("batch")
    etag = channel(client, credential)["ETag"]
    unchanged = channel(client, credential, **{"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged["ETag"] == etag
    listed = channel(client, credential, **{"If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304
    weak = channel(client, credential, **{"If-None-Match": f"W/{etag}"})
    assert weak.status_code == 304  # as a compressing proxy hands the tag on
    stale = channel(client, credential, **{"If-None-Match": '"0123"'})
    assert stale.status_code == 200 and stale.content


def test_a_new_publish_changes_the_etag_and_the_body(
    publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    _, credential = enrol("batch")
    first = agent(client, credential)
    publish(POLICY.replace('model = "openai.gpt-oss-120b"', 'model = "openai.gpt-oss-20b"'))
    second = agent(client, credential, **{"If-None-Match": first["ETag"]})
    assert second.status_code == 200
    assert json.loads(second.content)["revision"] == json.loads(first.content)["revision"] + 1
    assert "gpt-oss-20b" in json.loads(second.content)["files"]["config.toml"]


def test_revoked_device_gets_401_on_both_channels_at_once(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("platform/ci")
    assert native(client, credential).status_code == 200
    assert agent(client, credential).status_code == 200
    device_revoke(device=device, actor=acting(cast["admin"]), reason="laptop lost")
    for response in (native(client, credential), agent(client, credential)):
        assert response.status_code == 401
        assert b"enterprise_managed" not in response.content
        assert b"files" not in response.content


def test_moved_device_gets_its_new_team_release_on_its_next_fetch(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("platform/ci")
    assert json.loads(agent(client, credential).content)["team"] == "platform/ci"
    device_move(device=device, team_path="batch", actor=acting(cast["admin"]))
    assert json.loads(agent(client, credential).content)["team"] == "batch"


def test_staged_rollout_serves_previous_release_to_devices_outside_it(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    devices = [enrol("batch", hostname=f"m{i}") for i in range(12)]
    publish(POLICY.replace('model = "openai.gpt-oss-120b"', 'model = "openai.gpt-oss-20b"'))
    new = release_rollout_start(
        organization=cast["acme"], team_path="batch", percent=50, actor=acting(cast["admin"])
    )
    served = {}
    for device, credential in devices:
        served[str(device.pk)] = json.loads(agent(client, credential).content)["revision"]
    for device_id, revision in served.items():
        inside = rollout_includes(release_id=new.pk, device_id=device_id, percent=50)
        assert revision == (new.revision if inside else new.revision - 1)
    assert len(set(served.values())) == 2  # 12 devices at 50 %: both sides are served


def test_team_without_release_gets_empty_native_bundle_and_agent_404(
    cast: dict[str, Any], enrol: Enrol, client: Client
) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    _, credential = enrol("platform")  # applied, never published
    response = native(client, credential)
    assert (response.status_code, response.content) == (200, b"{}")
    assert agent(client, credential).status_code == 404


def test_fetches_are_counted_per_device_behind_the_request(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("platform/ci")
    etag = native(client, credential)["ETag"]
    agent(client, credential, **{"If-None-Match": etag})
    agent(client, credential)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        device.refresh_from_db()
        if device.fetch_count == 3:
            break
        time.sleep(0.1)
    assert device.fetch_count == 3
    assert device.revision_served == current(cast, "platform/ci").revision
    assert device.last_channel == "agent" and device.last_seen_at is not None


def test_fetch_counts_survive_their_connection_being_cut_between_flushes(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    """The counts' connection stays open between flushes: when PostgreSQL drops it (a restart, a
    failover, an idle timeout), the next flush fails on it, gives its batch back and opens
    another; no fetch is lost or counted twice."""
    publish()
    device, credential = enrol("platform/ci")
    state = cache()
    assert state is not None

    def counted(expected: int) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            device.refresh_from_db()
            if device.fetch_count >= expected:
                break
            time.sleep(0.1)
        assert device.fetch_count == expected

    for _ in range(2):
        assert native(client, credential).status_code == 200
    counted(2)
    held = state._counts
    assert held is not None and not held.closed
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [held.info.backend_pid])
        assert cursor.fetchone() == (True,)
    for _ in range(3):
        assert native(client, credential).status_code == 200
    counted(5)
    assert state._counts is not held  # the cut connection was replaced
    time.sleep(settings.DELIVERY_FLUSH_SECONDS + 0.5)  # a further flush writes nothing again
    device.refresh_from_db()
    assert device.fetch_count == 5


def test_an_older_fetch_written_late_never_overwrites_a_newer_one(
    publish: Callable[..., Any], enrol: Enrol
) -> None:
    publish()
    device, _ = enrol("batch")
    now = time.time()
    newer = {str(device.pk): (now, 6, "agent", 1)}
    older = {str(device.pk): (now - 1, 5, "native", 2)}
    with connection.cursor() as cursor:
        cursor.execute(FLUSH_SQL, _flush_params(newer))  # one worker writes first...
        cursor.execute(FLUSH_SQL, _flush_params(older))  # ...another, with an older fetch, later
    device.refresh_from_db()
    assert (device.revision_served, device.last_channel, device.fetch_count) == (6, "agent", 3)
