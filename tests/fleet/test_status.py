"""Fleet status: each device's state and, per team, the counts and the rollout's progress."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from policyhub.fleet.models import Device
from policyhub.fleet.selectors import device_statuses, fleet_teams, team_fleet
from policyhub.fleet.services import device_report_record
from policyhub.releases.models import Release
from policyhub.releases.selectors import rollout_includes
from policyhub.releases.services.rollout import release_rollout_start
from tests.conftest import acting
from tests.delivery.conftest import POLICY

pytestmark = [pytest.mark.django_db]

Enrol = Callable[..., tuple[Device, str]]
NEWER = POLICY.replace('model = "openai.gpt-oss-120b"', 'model = "openai.gpt-oss-20b"')


def teams_status(organization: Any) -> list[Any]:
    return team_fleet(organization, list(fleet_teams(organization)))


def report(device: Device, revision: int | None, errors: list[str] | None = None) -> None:
    device_report_record(
        device_id=device.pk,
        applied_revision=revision,
        codex_version="0.169.0",
        os="Linux",
        agent_version="0.1.0",
        errors=errors or [],
    )


def test_each_device_gets_the_state_its_fetches_and_reports_say(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol
) -> None:
    publish()
    publish(NEWER)  # batch is at revision 2 now
    now = timezone.now()
    current, _ = enrol("batch", hostname="current")
    report(current, 2)
    behind, _ = enrol("batch", hostname="behind")
    report(behind, 1)
    failing, _ = enrol("batch", hostname="failing")
    report(failing, 2, ["config.toml: permission denied"])
    native, _ = enrol("batch", hostname="native-only")
    Device.objects.filter(pk=native.pk).update(last_seen_at=now, revision_served=2)
    stale, _ = enrol("batch", hostname="stale")
    Device.objects.filter(pk=stale.pk).update(
        last_seen_at=now - timedelta(days=3), revision_served=2
    )
    enrol("batch", hostname="pending")
    states = {s.device.hostname: s.state for s in device_statuses(cast["acme"])}
    assert states == {
        "current": "current",
        "behind": "behind",
        "failing": "failing",
        "native-only": "current",
        "stale": "stale",
        "pending": "pending",
    }
    (batch,) = [t for t in teams_status(cast["acme"]) if t.team_path == "batch"]
    assert batch.revision == 2 and batch.total == 6
    assert batch.counts == {"current": 2, "behind": 1, "failing": 1, "stale": 1, "pending": 1}


def test_rollout_progress_counts_devices_inside_and_those_that_applied_it(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol
) -> None:
    publish()
    devices = [enrol("batch", hostname=f"m{i}")[0] for i in range(20)]
    publish(NEWER)
    new = release_rollout_start(
        organization=cast["acme"], team_path="batch", percent=40, actor=acting(cast["admin"])
    )
    inside = [
        d for d in devices if rollout_includes(release_id=new.pk, device_id=str(d.pk), percent=40)
    ]
    outside = [d for d in devices if d not in inside]
    for device in inside[:2]:
        report(device, new.revision)
    for device in inside[2:] + outside:
        report(device, new.revision - 1)
    (batch,) = [t for t in teams_status(cast["acme"]) if t.team_path == "batch"]
    assert batch.rollout == {
        "revision": new.revision,
        "percent": 40,
        "devices_targeted": len(inside),
        "devices_applied": 2,
    }
    # Outside the rollout, the previous revision is what they should have: current.
    assert batch.counts["current"] == len(outside) + 2
    assert batch.counts["behind"] == len(inside) - 2


def test_revoked_devices_leave_fleet_status(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol
) -> None:
    publish()
    device, _ = enrol("batch")
    Device.objects.filter(pk=device.pk).update(revoked_at=timezone.now())
    assert device_statuses(cast["acme"]) == []


def test_fleet_api_answers_members_and_hides_the_organisation_from_others(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    device, _ = enrol("batch")
    report(device, Release.objects.get(team_path="batch", current=True).revision)
    client.force_login(cast["auditor"])
    teams = client.get("/api/v1/orgs/acme/fleet/teams").json()["results"]
    (batch,) = [t for t in teams if t["team"] == "batch"]
    assert batch["counts"]["current"] == 1 and batch["total"] == 1
    devices = client.get("/api/v1/orgs/acme/fleet/devices", {"state": "current"}).json()
    assert [d["id"] for d in devices["results"]] == [str(device.pk)]
    bad = client.get("/api/v1/orgs/acme/fleet/devices", {"state": "asleep"})
    assert bad.status_code == 400 and "state" in bad.json()["errors"]
    # An auditor reads but may not revoke.
    refused = client.post(f"/api/v1/orgs/acme/devices/{device.pk}/revoke", {}, "application/json")
    assert refused.status_code == 403 and "actor" in refused.json()["errors"]
    client.force_login(cast["outsider"])
    for path in (
        "/api/v1/orgs/acme/fleet/teams",
        "/api/v1/orgs/acme/fleet/devices",
        "/api/v1/orgs/acme/enrollment-tokens",
    ):
        assert client.get(path).status_code == 404
    assert (
        client.post(
            f"/api/v1/orgs/acme/devices/{device.pk}/revoke", {}, "application/json"
        ).status_code
        == 404
    )
    client.logout()
    assert client.get("/api/v1/orgs/acme/fleet/teams").status_code in (401, 403)


def test_admin_creates_a_token_and_revokes_a_device_through_the_api(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish()
    client.force_login(cast["admin"])
    created = client.post(
        "/api/v1/orgs/acme/enrollment-tokens",
        {"team": "batch", "expires": "1d", "uses": 2},
        "application/json",
    )
    assert created.status_code == 201
    assert created.json()["token"].startswith("phe_") and created.json()["max_uses"] == 2
    bad = client.post(
        "/api/v1/orgs/acme/enrollment-tokens",
        {"team": "batch", "expires": "forever"},
        "application/json",
    )
    assert bad.status_code == 400 and "expires" in bad.json()["errors"]
    device, _ = enrol("batch")
    moved = client.post(
        f"/api/v1/orgs/acme/devices/{device.pk}/move", {"team": "platform/ci"}, "application/json"
    )
    assert moved.json()["team"] == "platform/ci"
    assert (
        client.post(
            f"/api/v1/orgs/acme/devices/{device.pk}/revoke", {"reason": "lost"}, "application/json"
        ).status_code
        == 204
    )
    device.refresh_from_db()
    assert device.revoked_at is not None


def test_devices_outside_the_codex_window_are_flagged(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol, client: Client
) -> None:
    publish('[codex]\nmin_version = "0.125.0"\nmax_version = "0.169.0"\n' + POLICY)
    reported = {"old": "0.118.0", "low": "0.125.0", "mid": "0.140.0", "new": "0.169.0"}
    reported |= {"newer": "0.170.0", "odd": "nightly"}
    for hostname, version in reported.items():
        device, _ = enrol("batch", hostname=hostname)
        device_report_record(
            device_id=device.pk,
            applied_revision=1,
            codex_version=version,
            os="Linux",
            agent_version="0.1.0",
            errors=[],
        )
    enrol("batch", hostname="silent")
    cast["acme"].refresh_from_db()  # the window was stored by the publish above
    windows = {s.device.hostname: s.codex_window for s in device_statuses(cast["acme"])}
    assert windows == {
        "old": "below",
        "low": "inside",
        "mid": "inside",
        "new": "inside",
        "newer": "above",
        "odd": "unknown",
        "silent": "unknown",
    }
    outside = device_statuses(cast["acme"], codex_window="outside")
    assert sorted(s.device.hostname for s in outside) == ["newer", "old"]

    client.force_login(cast["auditor"])
    seen = client.get("/api/v1/orgs/acme/fleet/codex-versions").json()
    assert seen["window"] == {"min_version": "0.125.0", "max_version": "0.169.0"}
    assert seen["devices_outside"] == 2
    assert [(v["version"], v["devices"], v["window"]) for v in seen["versions"]] == [
        ("0.170.0", 1, "above"),
        ("0.169.0", 1, "inside"),
        ("0.140.0", 1, "inside"),
        ("0.125.0", 1, "inside"),
        ("0.118.0", 1, "below"),
        ("nightly", 1, "unknown"),
        ("", 1, "unknown"),
    ]
    listed = client.get("/api/v1/orgs/acme/fleet/devices", {"codex_window": "below"}).json()
    assert [(d["hostname"], d["codex_version"]) for d in listed["results"]] == [("old", "0.118.0")]
    bad = client.get("/api/v1/orgs/acme/fleet/devices", {"codex_window": "sideways"})
    assert bad.status_code == 400 and "codex_window" in bad.json()["errors"]
