"""The host's delivery index: one writer per host, another taking over when it stops, and each
process's own memory bounded whatever the fleet's size."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from policyhub.credentials import secret_hash
from policyhub.delivery.cache import LIVE_CHECK_SECONDS, DeliveryCache, cache, cache_stop
from policyhub.delivery.index import HostIndex
from policyhub.fleet.models import Device
from policyhub.fleet.services import device_move, device_revoke
from tests.conftest import acting
from tests.delivery.test_fetch import agent

pytestmark = [pytest.mark.django_db(transaction=True)]

Enrol = Callable[..., tuple[Device, str]]


def until(check: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_one_process_per_host_writes_and_another_takes_over_when_it_stops(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, settings: Any
) -> None:
    first = cache()
    assert first is not None
    # A second process's cache on the same host and database: the same file, the same lock.
    second = DeliveryCache(HostIndex(first.index.path))
    second.start()
    try:
        assert until(lambda: first.listening.is_set() or second.listening.is_set())
        time.sleep(2 * settings.DELIVERY_FLUSH_SECONDS)  # both have tried the lock since
        assert first.listening.is_set() != second.listening.is_set()
        writer, reader = (first, second) if first.listening.is_set() else (second, first)
        publish()
        device, credential = enrol("platform/ci")
        assert reader.catch_up()
        indexed = reader.index.device(secret_hash(credential))
        assert indexed is not None and indexed.device_id == str(device.pk)

        writer.stop()
        assert until(reader.listening.is_set), "no process took over the index"
        assert reader.catch_up() and reader.live()
        device_revoke(device=device, actor=acting(cast["admin"]))
        assert reader.catch_up()
        assert reader.index.device(secret_hash(credential)) is None
    finally:
        second.stop()
        cache_stop()  # this process's next fetch starts its cache afresh


def test_each_process_keeps_a_bounded_number_of_decoded_teams(
    publish: Callable[..., Any], enrol: Enrol, client: Client, settings: Any
) -> None:
    settings.DELIVERY_TEAM_ENTRIES = 2
    publish()
    devices = [enrol(team)[1] for team in ("platform/ci", "batch", "platform")]
    for _ in range(3):
        for credential in devices:
            response = agent(client, credential)
            assert response.status_code == 200
            state = cache()
            assert state is not None and len(state.teams) <= 2
    state = cache()
    assert state is not None
    stats = state.stats()
    assert stats["index_devices"] >= 2 * len(devices)  # each under both of its credentials
    assert stats["index_teams"] >= 3


def test_a_process_answers_from_its_recent_devices_only_while_the_index_is_unchanged(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol
) -> None:
    writer = cache()
    assert writer is not None
    publish()
    device, credential = enrol("platform/ci")
    other, _ = enrol("batch", hostname="laptop-2")
    assert writer.catch_up()
    # Another process on the host: it only reads the index the writer keeps.
    reader = DeliveryCache(HostIndex(writer.index.path))
    lookups: list[str] = []
    reader.index.connection().set_trace_callback(lookups.append)
    digest = secret_hash(credential)

    def database() -> None:
        raise AssertionError("the index holds this device")

    def team_of() -> str | None:
        found = reader.device(digest, database)
        return found.team_path if found else None

    assert team_of() == "platform/ci"
    read = len(lookups)
    assert team_of() == "platform/ci" and len(lookups) == read  # unchanged index: no SQLite

    device_move(device=device, team_path="batch", actor=acting(cast["admin"]))
    assert writer.catch_up()
    assert team_of() == "batch"  # the writer's change reached the other process
    # A change to any device or team changes the generation, and so every answer is read anew.
    device_revoke(device=other, actor=acting(cast["admin"]))
    assert writer.catch_up()
    read = len(lookups)
    assert team_of() == "batch" and len(lookups) > read

    # The generation file removed (a temporary-file cleaner, an operator): the writer's next
    # change makes a new one, and the reader maps it again before it trusts what it kept.
    reader.index.generation_path.unlink()
    device_move(device=device, team_path="platform", actor=acting(cast["admin"]))
    assert writer.catch_up()
    time.sleep(LIVE_CHECK_SECONDS + 0.1)
    assert team_of() == "platform"
    read = len(lookups)
    assert team_of() == "platform" and len(lookups) == read  # kept again, under the new file
    # Removed again, and a new writer started, which makes the new one itself.
    reader.index.generation_path.unlink()
    cache_stop()
    writer = cache()
    assert writer is not None and until(writer.listening.is_set)
    device_move(device=device, team_path="platform/ci", actor=acting(cast["admin"]))
    assert writer.catch_up()
    time.sleep(LIVE_CHECK_SECONDS + 0.1)
    assert team_of() == "platform/ci"

    device_revoke(device=device, actor=acting(cast["admin"]))
    assert writer.catch_up()
    assert reader.device(digest, lambda: None) is None
