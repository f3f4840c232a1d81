"""Devices on a Codex newer than the newest measured release: flagged "not measured" beside their
window state (which stays inside, below, above or unknown), listed by the `unmeasured` filter of
the API, the devices page and `device list --not-measured`, and counted per version."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from policyhub.fleet.models import Device
from policyhub.fleet.selectors import device_statuses
from policyhub.fleet.services import device_report_record
from providers.codex_versions import NEWEST_MEASURED, OLDEST, version_text
from tests.delivery.conftest import POLICY

pytestmark = [pytest.mark.django_db]

Enrol = Callable[..., tuple[Device, str]]
NEWEST = version_text(NEWEST_MEASURED)
MAJOR, MINOR, PATCH = NEWEST_MEASURED
# The window reaches one minor release past the measured end (allowed, with a warning).
LATER = version_text((MAJOR, MINOR + 1, 0))
REPORTED = {
    "oldest": version_text(OLDEST),  # below the window
    "newest": NEWEST,  # inside, measured
    "patch": version_text((MAJOR, MINOR, PATCH + 1)),  # inside, not measured
    "later": LATER,  # inside, not measured
    "major": version_text((MAJOR + 1, 0, 0)),  # above, not measured
    "odd": "nightly",  # unknown
}
WINDOWS = {
    "oldest": "below",
    "newest": "inside",
    "patch": "inside",
    "later": "inside",
    "major": "above",
    "odd": "unknown",
    "silent": "unknown",
}
NOT_MEASURED = ["later", "major", "patch"]


@pytest.fixture
def fleet(cast: dict[str, Any], publish: Callable[..., Any], enrol: Enrol) -> Any:
    publish(f'[codex]\nmin_version = "{NEWEST}"\nmax_version = "{LATER}"\n' + POLICY)
    for hostname, version in REPORTED.items():
        device, _ = enrol("batch", hostname=hostname)
        device_report_record(
            device_id=device.pk,
            applied_revision=1,
            codex_version=version,
            os="Linux",
            agent_version="0.3.0",
            errors=[],
        )
    enrol("batch", hostname="silent")
    cast["acme"].refresh_from_db()  # the window was stored by the publish above
    return cast["acme"]


def test_not_measured_is_a_flag_beside_the_window_states(fleet: Any) -> None:
    statuses = device_statuses(fleet)
    assert {s.device.hostname: s.codex_window for s in statuses} == WINDOWS
    flagged = sorted(s.device.hostname for s in statuses if s.codex_unmeasured)
    assert flagged == NOT_MEASURED
    listed = device_statuses(fleet, codex_window="unmeasured")
    assert sorted(s.device.hostname for s in listed) == NOT_MEASURED
    outside = device_statuses(fleet, codex_window="outside")
    assert sorted(s.device.hostname for s in outside) == ["major", "oldest"]
    # Reporting no error, a machine on an unmeasured Codex is current, not failing.
    assert {s.state for s in listed} == {"current"}


def test_the_api_flags_filters_and_counts_devices_not_measured(
    fleet: Any, cast: dict[str, Any], client: Client
) -> None:
    client.force_login(cast["auditor"])
    devices = "/api/v1/orgs/acme/fleet/devices"
    every = client.get(devices).json()["results"]
    assert {d["hostname"]: d["codex_unmeasured"] for d in every} == {
        name: name in NOT_MEASURED for name in WINDOWS
    }
    assert {d["hostname"]: d["codex_window"] for d in every} == WINDOWS
    listed = client.get(devices, {"codex_window": "unmeasured"}).json()["results"]
    assert sorted(d["hostname"] for d in listed) == NOT_MEASURED
    seen = client.get("/api/v1/orgs/acme/fleet/codex-versions").json()
    assert seen["newest_measured"] == NEWEST
    assert (seen["devices_outside"], seen["devices_unmeasured"]) == (2, 3)
    by_version = {v["version"]: (v["window"], v["unmeasured"]) for v in seen["versions"]}
    assert by_version[LATER] == ("inside", True)
    assert by_version[NEWEST] == ("inside", False)
    assert by_version[REPORTED["major"]] == ("above", True)
    assert by_version[""] == ("unknown", False)


def test_device_list_flags_them_and_lists_them_alone(fleet: Any) -> None:
    out = io.StringIO()
    call_command("device", "list", "--org", "acme", stdout=out)
    lines = {line.split("\t")[2]: line for line in out.getvalue().splitlines()}
    assert f"codex {LATER} (not measured)" in lines["later"]
    assert f"codex {REPORTED['major']} (above window, not measured)" in lines["major"]
    assert f"codex {NEWEST}\t" in lines["newest"]
    assert f"codex {REPORTED['oldest']} (below window)" in lines["oldest"]
    out = io.StringIO()
    call_command("device", "list", "--org", "acme", "--not-measured", stdout=out)
    assert sorted(line.split("\t")[2] for line in out.getvalue().splitlines()) == NOT_MEASURED


def test_the_devices_page_flags_them_and_filters_by_it(
    fleet: Any, cast: dict[str, Any], client: Client
) -> None:
    client.force_login(cast["auditor"])
    html = client.get("/orgs/acme/devices/", {"codex_window": "unmeasured"}).content.decode()
    assert 'value="unmeasured" selected' in html
    assert html.count("not measured</span>") == len(NOT_MEASURED)
    for name in WINDOWS:
        assert (f">{name}<" in html) is (name in NOT_MEASURED), name
    page = client.get("/orgs/acme/devices/").content.decode()
    assert f"than {NEWEST}, the newest release PolicyHub has measured" in page
    assert page.count("not measured</span>") == len(NOT_MEASURED)
    dashboard = client.get("/orgs/acme/").content.decode()
    assert dashboard.count("not measured</strong>") == len(NOT_MEASURED)
