"""Release receipts and report history: fetches through both channels (batched behind the request,
or written at once without the cache), status reports through the device API, devices moved
between teams, staged rollouts; the per-release page and API, the device page, the export rows."""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create
from policyhub.delivery.cache import (
    FLUSH_SQL,
    RECEIPTS_SQL,
    Pending,
    _flush_params,
    _receipts_params,
    cache,
    cache_stop,
)
from policyhub.exports.files import RECEIPT_COLUMNS
from policyhub.exports.formats import FORMATS, read
from policyhub.exports.manifest import export_verify
from policyhub.fleet.models import Device, DeviceReceipt, DeviceReport
from policyhub.fleet.selectors import release_receipt_counts
from policyhub.fleet.services import device_move
from policyhub.releases.models import Release
from policyhub.releases.selectors import rollout_includes
from policyhub.releases.services.rollout import release_rollout_start
from policyhub.teams.models import Team
from tests.conftest import acting
from tests.delivery.conftest import POLICY

pytestmark = [pytest.mark.django_db(transaction=True)]

Enrol = Callable[..., tuple[Device, str]]
Publish = Callable[..., Any]
# batch gets another model: a publish with it gives batch a second revision, the others none.
NEWER = POLICY.replace('model = "openai.gpt-oss-120b"', 'model = "openai.gpt-oss-20b"')
ORG = "/api/v1/orgs/acme"


def caught_up() -> None:
    state = cache()
    assert state is None or state.catch_up(), "the delivery listener did not catch up"


def native(client: Client, credential: str) -> Any:
    caught_up()
    response = client.get(f"/config-server/{credential}/codex/config/bundle")
    assert response.status_code == 200
    return response


def agent(client: Client, credential: str) -> int:
    """The revision the agent channel serves the device."""
    caught_up()
    response = client.get(
        "/api/v1/device/bundle", headers={"Authorization": f"Bearer {credential}"}
    )
    assert response.status_code == 200
    return int(json.loads(response.content)["revision"])


def report(
    client: Client,
    credential: str,
    applied: int | None,
    *,
    codex: str = "0.169.0",
    errors: list[str] | None = None,
) -> None:
    """A status report through the device API, as the agent sends it after a sync."""
    caught_up()
    response = client.post(
        "/api/v1/device/status",
        json.dumps(
            {
                "applied_revision": applied,
                "codex_version": codex,
                "os": "Linux 6.1",
                "agent_version": "0.1.0",
                "errors": errors or [],
            }
        ),
        content_type="application/json",
        headers={"Authorization": f"Bearer {credential}"},
    )
    assert response.status_code == 204, response.content


def written() -> None:
    """The fetches this process counted are written (its listener writes its last batch when it
    stops; the next fetch starts a new one)."""
    cache_stop()


def release(cast: dict[str, Any], team: str, revision: int) -> Release:
    return Release.objects.get(organization=cast["acme"], team_path=team, revision=revision)


def receipts_of(device: Device) -> dict[tuple[str, int], DeviceReceipt]:
    return {
        (r.release.team_path, r.release.revision): r
        for r in DeviceReceipt.objects.filter(device=device).select_related("release")
    }


def test_fetches_through_both_channels_make_one_receipt_written_behind_the_request(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("platform/ci")
    before = timezone.now()
    assert agent(client, credential) == 1
    native(client, credential)
    written()
    (receipt,) = DeviceReceipt.objects.filter(device=device)
    assert receipt.release_id == release(cast, "platform/ci", 1).pk
    assert receipt.organization_id == cast["acme"].pk
    assert receipt.first_channel == "agent"  # the first of the two fetches
    assert receipt.first_fetched_at is not None and receipt.last_fetched_at is not None
    assert before <= receipt.first_fetched_at <= receipt.last_fetched_at <= timezone.now()
    assert receipt.applied_at is None and receipt.errors == []
    first = receipt.first_fetched_at
    time.sleep(0.01)
    native(client, credential)  # a later batch
    written()
    receipt.refresh_from_db()
    assert (receipt.first_fetched_at, receipt.first_channel) == (first, "agent")
    assert receipt.last_fetched_at is not None and receipt.last_fetched_at > first
    device.refresh_from_db()
    assert device.fetch_count == 3 and device.last_channel == "native"


def test_a_report_marks_what_the_agent_applied_once_and_its_history_only_what_changed(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("batch")
    assert agent(client, credential) == 1
    # Right after its fetch, as from a real agent: usually before the fetch is written.
    report(client, credential, 1)
    (receipt,) = DeviceReceipt.objects.filter(device=device)
    assert receipt.applied_at is not None
    applied = receipt.applied_at
    written()
    receipt = DeviceReceipt.objects.get(pk=receipt.pk)
    assert receipt.first_fetched_at is not None and receipt.first_channel == "agent"
    assert receipt.applied_at == applied

    report(client, credential, 1)  # the same again: no history, the first apply stays
    report(client, credential, 1)
    receipt.refresh_from_db()
    assert receipt.applied_at == applied
    assert DeviceReport.objects.filter(device=device).count() == 1
    report(client, credential, 1, codex="0.170.0")  # Codex was upgraded
    report(client, credential, 1, codex="0.170.0", errors=["config.toml: permission denied"])
    report(client, credential, 1, codex="0.170.0", errors=["config.toml: permission denied"])
    history = list(DeviceReport.objects.filter(device=device).order_by("reported_at", "id"))
    assert [(h.codex_version, h.errors) for h in history] == [
        ("0.169.0", []),
        ("0.170.0", []),
        ("0.170.0", ["config.toml: permission denied"]),
    ]
    assert all(h.applied_revision == 1 and h.os == "Linux 6.1" for h in history)
    device.refresh_from_db()
    assert device.reported_at is not None and device.reported_at > history[-1].reported_at
    receipt.refresh_from_db()
    assert receipt.errors == ["config.toml: permission denied"]
    assert receipt.reported_at == device.reported_at
    report(client, credential, 1, codex="0.170.0")  # fixed: the receipt's errors go
    receipt.refresh_from_db()
    assert receipt.errors == [] and DeviceReport.objects.filter(device=device).count() == 4


def test_a_refused_new_release_carries_the_errors_while_the_old_one_stays_applied(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client
) -> None:
    publish()
    device, credential = enrol("batch")
    agent(client, credential)
    report(client, credential, 1)
    publish(NEWER)
    assert agent(client, credential) == 2
    report(client, credential, 1, errors=["bundle refused: signature does not verify"])
    written()
    receipts = receipts_of(device)
    assert set(receipts) == {("batch", 1), ("batch", 2)}
    old, new = receipts["batch", 1], receipts["batch", 2]
    assert old.applied_at is not None and old.errors == []
    assert new.applied_at is None and new.first_fetched_at is not None
    assert new.errors == ["bundle refused: signature does not verify"]
    counts = release_receipt_counts(cast["acme"], release(cast, "batch", 2))
    assert (counts.fetched, counts.applied, counts.errors, counts.not_fetched) == (1, 0, 1, 0)


def test_a_device_moved_to_another_team_keeps_each_release_apart(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client
) -> None:
    publish()
    publish(NEWER)  # platform/ci is at revision 1, batch at revision 2
    device, credential = enrol("platform/ci")
    assert agent(client, credential) == 1
    report(client, credential, 1)
    written()
    device_move(device=device, team_path="batch", actor=acting(cast["admin"]))
    # Before its first sync in the new team it still runs platform/ci's revision 1, which is
    # also the number of a release of batch: the receipt it fetched says which it is.
    report(client, credential, 1)
    assert set(receipts_of(device)) == {("platform/ci", 1)}
    assert agent(client, credential) == 2
    report(client, credential, 2)
    written()
    receipts = receipts_of(device)
    assert set(receipts) == {("platform/ci", 1), ("batch", 2)}
    ci, batch = receipts["platform/ci", 1], receipts["batch", 2]
    assert ci.applied_at is not None and batch.applied_at is not None
    assert ci.last_fetched_at is not None and batch.first_fetched_at is not None
    assert ci.applied_at < batch.applied_at and ci.last_fetched_at < batch.first_fetched_at
    # Per release: the old one counts the device as it was, the new team's counts it now.
    old = release_receipt_counts(cast["acme"], release(cast, "platform/ci", 1))
    assert (old.fetched, old.applied, old.team_devices) == (1, 1, 0)
    new = release_receipt_counts(cast["acme"], release(cast, "batch", 2))
    assert (new.fetched, new.applied, new.team_devices, new.not_fetched) == (1, 1, 1, 0)
    assert release_receipt_counts(cast["acme"], release(cast, "batch", 1)).fetched == 0


def test_a_staged_rollout_gives_each_device_the_receipt_of_the_release_it_was_served(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client
) -> None:
    publish()
    devices = [enrol("batch", hostname=f"m{i:02d}") for i in range(12)]
    publish(NEWER)
    new = release_rollout_start(
        organization=cast["acme"], team_path="batch", percent=50, actor=acting(cast["admin"])
    )
    previous = release(cast, "batch", new.revision - 1)
    inside = set()
    for device, credential in devices:
        served = agent(client, credential)
        report(client, credential, served)
        if rollout_includes(release_id=new.pk, device_id=str(device.pk), percent=50):
            inside.add(device.pk)
            assert served == new.revision
        else:
            assert served == previous.revision
    assert 0 < len(inside) < len(devices)
    written()
    for device, _ in devices:
        (receipt,) = DeviceReceipt.objects.filter(device=device)
        assert receipt.release_id == (new.pk if device.pk in inside else previous.pk)
        assert receipt.applied_at is not None and receipt.first_fetched_at is not None
    counts = release_receipt_counts(cast["acme"], new)
    assert (counts.fetched, counts.applied, counts.errors) == (len(inside), len(inside), 0)
    assert (counts.team_devices, counts.not_fetched) == (12, 12 - len(inside))
    older = release_receipt_counts(cast["acme"], previous)
    assert (older.fetched, older.applied) == (12 - len(inside), 12 - len(inside))


def test_without_the_cache_each_fetch_writes_its_receipt_at_once(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client, settings: Any
) -> None:
    publish()
    written()
    settings.DELIVERY_CACHE = False  # as on SQLite: fetch_record writes on the request path
    device, credential = enrol("batch")
    native(client, credential)
    (receipt,) = DeviceReceipt.objects.filter(device=device)
    assert receipt.first_channel == "native" and receipt.release_id == release(cast, "batch", 1).pk
    first = receipt.first_fetched_at
    assert first is not None and receipt.last_fetched_at == first
    agent(client, credential)
    receipt.refresh_from_db()
    assert (receipt.first_fetched_at, receipt.first_channel) == (first, "native")
    assert receipt.last_fetched_at is not None and receipt.last_fetched_at > first
    report(client, credential, 1)
    receipt.refresh_from_db()
    assert receipt.applied_at is not None
    assert DeviceReceipt.objects.filter(device=device).count() == 1


def test_a_batch_written_late_keeps_the_earliest_first_fetch_and_the_latest_last_one(
    cast: dict[str, Any], publish: Publish, enrol: Enrol
) -> None:
    publish()
    device, _ = enrol("batch")
    device_id, release_id = str(device.pk), release(cast, "batch", 1).pk
    now = time.time()
    newer = {(device_id, release_id): (now - 5, "agent", now)}
    older = {(device_id, release_id): (now - 10, "native", now - 8)}
    gone = {("00000000-0000-0000-0000-000000000000", release_id): (now, "agent", now)}
    with connection.cursor() as cursor:
        cursor.execute(RECEIPTS_SQL, _receipts_params(newer))  # one worker writes first...
        cursor.execute(RECEIPTS_SQL, _receipts_params(older))  # ...another, older, later
        cursor.execute(RECEIPTS_SQL, _receipts_params(newer))  # and the first again (a retry)
        cursor.execute(RECEIPTS_SQL, _receipts_params(gone))  # a device deleted since: skipped
    (receipt,) = DeviceReceipt.objects.all()
    assert receipt.first_fetched_at is not None and receipt.last_fetched_at is not None
    assert receipt.first_channel == "native"
    assert abs(receipt.first_fetched_at.timestamp() - (now - 10)) < 0.001
    assert abs(receipt.last_fetched_at.timestamp() - now) < 0.001


def test_a_device_given_another_release_within_one_batch_gets_both_receipts() -> None:
    pending = Pending()
    pending.add("d1", 1, "agent", 11)
    pending.add("d1", 1, "native", 11)
    pending.add("d1", 2, "agent", 12)  # a publish between two fetches of one batch
    rows, receipts = pending.take()
    assert rows["d1"][1:] == (2, "agent", 3)
    assert set(receipts) == {("d1", 11), ("d1", 12)}
    first, channel, last = receipts["d1", 11]
    assert channel == "agent" and first < last
    # A write that failed gives its batch back: fetches made since keep their own times.
    pending.add("d1", 2, "native", 12)
    pending.give_back(rows, receipts)
    _, again = pending.take()
    assert again["d1", 11] == receipts["d1", 11]
    assert again["d1", 12][:2] == receipts["d1", 12][:2]
    assert again["d1", 12][2] > receipts["d1", 12][2]


def test_a_fetch_written_after_the_report_completes_the_receipt_the_report_made(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client
) -> None:
    """The agent reports right after it fetched, before the listener writes that fetch: the
    report makes the receipt, and the batch (the SQL the listener runs in one transaction, run
    here in one too) fills in its fetch."""
    publish()
    device, credential = enrol("batch")
    report(client, credential, 1)
    (receipt,) = DeviceReceipt.objects.filter(device=device)
    assert receipt.applied_at is not None and receipt.first_fetched_at is None
    assert receipt.release_id == release(cast, "batch", 1).pk
    pending = Pending()
    pending.add(str(device.pk), 1, "agent", receipt.release_id)
    rows, receipts = pending.take()
    with connection.cursor() as cursor:
        cursor.execute(FLUSH_SQL, _flush_params(rows))
        cursor.execute(RECEIPTS_SQL, _receipts_params(receipts))
    device.refresh_from_db()
    fetched = DeviceReceipt.objects.get(pk=receipt.pk)
    assert fetched.first_channel == "agent" and fetched.applied_at == receipt.applied_at
    assert device.last_seen_at == fetched.last_fetched_at == fetched.first_fetched_at


# --- reading them ---------------------------------------------------------------------------


def api(cast: dict[str, Any], who: str, role: str) -> APIClient:
    _, secret = api_token_create(
        actor=acting(cast[who]),
        organization=cast["acme" if who != "outsider" else "other"],
        name=f"{who}-{role}",
        role=role,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def next_page(text: str, label: str) -> str | None:
    """The query of a page's link to the next page of the list `label` names."""
    found = re.search(rf'<a href="(\?[^"]*)" rel="next">Next page of {label}</a>', text)
    return html.unescape(found.group(1)) if found else None


@pytest.fixture
def three_devices(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client
) -> dict[str, Device]:
    """batch at revision 1: one device applied it, one fetched it only (through Codex), one
    fetched it and reported errors; a fourth never fetched."""
    publish()
    found = {}
    for name in ("applied", "failing", "fetched", "silent"):
        found[name], credential = enrol("batch", hostname=name)
        if name == "fetched":
            native(client, credential)
        elif name != "silent":
            agent(client, credential)
            report(
                client,
                credential,
                1 if name == "applied" else None,
                errors=[] if name == "applied" else ["no space left"],
            )
    written()
    return found


def test_the_release_page_shows_its_counts_and_receipts_filtered_by_state(
    cast: dict[str, Any], three_devices: dict[str, Device]
) -> None:
    browser = Client()
    browser.force_login(cast["auditor"])  # auditors read receipts too
    team = browser.get("/orgs/acme/releases/batch/").content.decode()
    assert 'href="/orgs/acme/releases/batch/-/revision/1/"' in team
    page = browser.get("/orgs/acme/releases/batch/-/revision/1/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Revision 1 of batch" in text
    for label, count in (
        ("Devices that fetched it", "3"),
        ("Devices that applied it", "1"),
        ("Devices that reported errors with it", "1"),
        ("Devices of batch that have not fetched it", "1 of 4"),
    ):
        assert f'<th scope="row">{label}</th><td>{count}</td>' in text
    assert all(f">{name}</a>" in text for name in ("applied", "fetched", "failing"))
    assert ">silent</a>" not in text and "through Codex's config server" in text
    for state, shown in (
        ("applied", {"applied"}),
        ("fetched", {"fetched", "failing"}),
        ("errors", {"failing"}),
    ):
        text = browser.get(
            "/orgs/acme/releases/batch/-/revision/1/", {"state": state}
        ).content.decode()
        assert {n for n in ("applied", "fetched", "failing") if f">{n}</a>" in text} == shown, state
    refused = browser.get("/orgs/acme/releases/batch/-/revision/1/", {"state": "lost"})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert browser.get("/orgs/acme/releases/batch/-/revision/9/").status_code == 404
    assert browser.get("/orgs/acme/releases/nowhere/-/revision/1/").status_code == 404
    outsider = Client()
    outsider.force_login(cast["outsider"])
    assert outsider.get("/orgs/acme/releases/batch/-/revision/1/").status_code == 404


def test_the_release_page_pages_its_receipts(
    cast: dict[str, Any], publish: Publish, enrol: Enrol, client: Client
) -> None:
    publish()
    batch = release(cast, "batch", 1)
    devices = [enrol("batch", hostname=f"host-{i:02d}")[0] for i in range(55)]
    DeviceReceipt.objects.bulk_create(
        DeviceReceipt(organization=cast["acme"], device=d, release=batch) for d in devices
    )
    browser = Client()
    browser.force_login(cast["admin"])
    seen: list[str] = []
    url = "/orgs/acme/releases/batch/-/revision/1/"
    for _ in range(3):
        text = browser.get(url).content.decode()
        seen += [d.hostname for d in devices if f">{d.hostname}</a>" in text]
        if (link := next_page(text, "the receipts")) is None:
            break
        url = "/orgs/acme/releases/batch/-/revision/1/" + link
    assert sorted(seen) == sorted(d.hostname for d in devices) and len(seen) == 55


def test_a_page_of_receipts_costs_the_same_queries_with_3_or_60_of_them(
    cast: dict[str, Any], publish: Publish
) -> None:
    publish()
    batch = release(cast, "batch", 1)
    team = Team.objects.get(organization=cast["acme"], path="batch")
    client = api(cast, "auditor", Role.AUDITOR)
    browser = Client()
    browser.force_login(cast["auditor"])

    def add(count: int) -> None:
        devices = Device.objects.bulk_create(
            Device(
                organization=cast["acme"],
                team=team,
                credential_hash=uuid.uuid4().hex * 2,
                hostname=f"host-{uuid.uuid4().hex[:8]}",
            )
            for _ in range(count)
        )
        DeviceReceipt.objects.bulk_create(
            DeviceReceipt(organization=cast["acme"], device=d, release=batch, errors=["x"])
            for d in devices
        )

    def cost() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as listed:
            assert client.get(f"{ORG}/releases/{batch.pk}/receipts").status_code == 200
        with CaptureQueriesContext(connection) as shown:
            assert browser.get("/orgs/acme/releases/batch/-/revision/1/").status_code == 200
        return len(listed), len(shown)

    add(3)
    cost()  # the token's first use is noted once
    few = cost()
    add(57)
    assert cost() == few


def test_the_device_page_shows_its_receipts_and_report_history(
    cast: dict[str, Any], three_devices: dict[str, Device], client: Client
) -> None:
    browser = Client()
    browser.force_login(cast["admin"])
    text = browser.get(f"/orgs/acme/devices/{three_devices['failing'].pk}/").content.decode()
    assert 'href="/orgs/acme/releases/batch/-/revision/1/">revision 1 of batch</a>' in text
    assert "no space left" in text and "Linux 6.1" in text
    silent = browser.get(f"/orgs/acme/devices/{three_devices['silent'].pk}/").content.decode()
    assert "This device has fetched no release yet." in silent
    assert "The agent has not reported yet." in silent


def test_the_device_page_pages_its_report_history(
    cast: dict[str, Any], publish: Publish, enrol: Enrol
) -> None:
    publish()
    device, _ = enrol("batch")
    now = timezone.now()
    DeviceReport.objects.bulk_create(
        DeviceReport(device=device, reported_at=now, codex_version=f"0.{i}.0") for i in range(60)
    )
    browser = Client()
    browser.force_login(cast["admin"])
    url = f"/orgs/acme/devices/{device.pk}/"
    first = browser.get(url).content.decode()
    link = next_page(first, "the status reports")
    assert link is not None
    second = browser.get(url + link).content.decode()
    assert next_page(second, "the status reports") is None
    shown = [f"0.{i}.0" for i in range(60) if f"<code>0.{i}.0</code>" in first] + [
        f"0.{i}.0" for i in range(60) if f"<code>0.{i}.0</code>" in second
    ]
    # Equal times: the id orders them, newest first, none twice and none missed.
    assert sorted(shown) == sorted(f"0.{i}.0" for i in range(60)) and len(shown) == 60
    assert "<code>0.59.0</code>" in first and "<code>0.0.0</code>" in second


def test_the_api_lists_a_release_receipts_filtered_a_page_at_a_time(
    cast: dict[str, Any], three_devices: dict[str, Device]
) -> None:
    batch = release(cast, "batch", 1)
    url = f"{ORG}/releases/{batch.pk}/receipts"
    for who, role in (("auditor", Role.AUDITOR), ("admin", Role.VIEWER)):
        answer = api(cast, who, role).get(url)
        assert answer.status_code == 200, (who, answer.content)
        rows = answer.json()["results"]
        # Newest first: the agent's reports made theirs before the native fetch was written.
        assert [r["hostname"] for r in rows] == ["fetched", "failing", "applied"]
    client = api(cast, "auditor", Role.AUDITOR)
    (applied,) = client.get(url, {"state": "applied"}).json()["results"]
    assert applied["device_id"] == str(three_devices["applied"].pk)
    assert applied["team"] == "batch" and applied["first_channel"] == "agent"
    assert applied["applied_at"] and applied["first_fetched_at"] and applied["errors"] == []
    (failing,) = client.get(url, {"state": "errors"}).json()["results"]
    assert failing["errors"] == ["no space left"] and failing["applied_at"] is None
    fetched = client.get(url, {"state": "fetched"}).json()["results"]
    assert {r["hostname"] for r in fetched} == {"fetched", "failing"}
    walked, page = [], client.get(url, {"page_size": 1}).json()
    while True:
        walked += [r["hostname"] for r in page["results"]]
        if not page["next"]:
            break
        page = client.get(page["next"]).json()
    assert walked == ["fetched", "failing", "applied"]
    bad = client.get(url, {"state": "lost"})
    assert bad.status_code == 400 and "state" in bad.json()["errors"]
    assert client.get(f"{ORG}/releases/{batch.pk + 1000}/receipts").status_code == 404
    assert client.get(f"{ORG}/releases/{2**63}/receipts").status_code == 404
    outsider = api(cast, "outsider", Role.OWNER)
    assert outsider.get(url).status_code == 404
    assert APIClient().get(url).status_code == 401


def _settled(receipts: Any) -> None:
    """Receipts as if their fetches and reports were ten minutes ago: an export shows them as
    of a minute ago at the latest (RECEIPTS_SETTLE)."""
    earlier = timedelta(minutes=10)
    receipts.update(
        first_fetched_at=F("first_fetched_at") - earlier,
        last_fetched_at=F("last_fetched_at") - earlier,
        applied_at=F("applied_at") - earlier,
    )


@pytest.mark.parametrize("file_format", FORMATS)
def test_receipts_export_as_of_a_moment_and_verify_against_their_manifest(
    cast: dict[str, Any], three_devices: dict[str, Device], file_format: str, tmp_path: Path
) -> None:
    batch = release(cast, "batch", 1)
    receipts = DeviceReceipt.objects.filter(release=batch).order_by("id")
    _settled(receipts)

    def export(*more: str) -> tuple[list[dict[str, Any]], Path, Path]:
        out = tmp_path / f"receipts.{file_format}"
        call_command(
            "audit", "export-receipts", "--org", "acme", "--team", "batch", "--revision", "1",
            "--format", file_format, "--output", str(out), *more, stderr=StringIO(),
        )  # fmt: skip
        with out.open(encoding="utf-8", newline="") as stream:
            rows = list(read(file_format, RECEIPT_COLUMNS, stream))
        return rows, out, Path(f"{out}.manifest.json")

    def shown(moment: datetime | None) -> str:
        return "" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    rows, out, manifest = export()
    assert [(r["hostname"], r["channel"]) for r in rows] == [
        (receipt.device.hostname, receipt.first_channel) for receipt in receipts
    ]
    assert [(r["fetched_at"], r["applied_at"]) for r in rows] == [
        (shown(receipt.first_fetched_at), shown(receipt.applied_at)) for receipt in receipts
    ]
    assert {(r["team"], r["revision"], r["release_id"]) for r in rows} == {("batch", 1, batch.pk)}
    assert [r["device_id"] for r in rows] == [str(receipt.device_id) for receipt in receipts]
    assert export_verify(out, manifest).ok
    # Later fetches and reports do not change what the manifest describes.
    pinned = json.loads(manifest.read_text())["as_of"]
    assert json.loads(manifest.read_text())["rows"] == 3
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(
        "".join(lines[:-2] + lines[-1:]) if file_format == "json" else "".join(lines[:-1])
    )
    assert not export_verify(out, manifest).ok
    # As of a moment between the fetches and the apply, the apply is not there yet.
    applied = receipts.get(device__hostname="applied")
    assert applied.applied_at is not None and applied.first_fetched_at is not None
    between = applied.first_fetched_at + (applied.applied_at - applied.first_fetched_at) / 2
    if applied.first_fetched_at < between < applied.applied_at:
        rows, out, manifest = export("--as-of", between.isoformat())
        assert all(r["applied_at"] == "" for r in rows)
        assert export_verify(out, manifest).ok
    rows, _, _ = export("--as-of", "2020-01-01T00:00:00+00:00")
    assert rows == []
    with pytest.raises(CommandError, match="a minute ago or earlier"):
        export("--as-of", timezone.now().isoformat())
    assert pinned.endswith("Z")


def test_receipts_exports_are_for_those_who_may_export(
    cast: dict[str, Any], three_devices: dict[str, Device]
) -> None:
    batch = release(cast, "batch", 1)
    _settled(DeviceReceipt.objects.filter(release=batch))
    url = f"{ORG}/releases/{batch.pk}/receipts/export/ndjson"
    auditor = api(cast, "auditor", Role.AUDITOR)
    answer = auditor.get(url)
    assert answer.status_code == 200 and answer["X-Export-As-Of"].endswith("Z")
    body = b"".join(answer.streaming_content)  # type: ignore[attr-defined]
    link = answer["Link"]
    manifest = auditor.get(link[1 : link.index(">")].removeprefix("http://testserver"))
    assert manifest.status_code == 200 and manifest.json()["rows"] == 3
    assert len(body.splitlines()) == 3
    assert auditor.get(f"{url}?as_of=yesterday").json()["errors"] == {
        "as_of": ["not a time with its zone (2026-03-01T12:00:00Z)"]
    }
    assert auditor.get(f"{ORG}/releases/{batch.pk + 1000}/receipts/export/csv").status_code == 404
    viewer = api(cast, "admin", Role.VIEWER)
    assert viewer.get(url).status_code == 403
    page = Client()
    page.force_login(cast["auditor"])
    text = page.get("/orgs/acme/releases/batch/-/revision/1/").content.decode()
    assert 'id="receipt-export-links"' in text and "receipts/export/csv?as_of=" in text
