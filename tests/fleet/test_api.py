"""The fleet's admin API: device and team status computed in SQL (and agreeing with the rule as
Python states it, staged rollouts included), pages that cost the same whatever the fleet's size,
enrolment tokens, permissions; and the device API's refusal of malformed enrolments."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import F, Value
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create
from policyhub.fleet.models import Device, EnrollmentToken, RolloutIncludes, codex_sort_key
from policyhub.fleet.selectors import STATES, WINDOW_STATES, device_statuses
from policyhub.fleet.services import device_report_record, device_revoke
from policyhub.releases.models import Release
from policyhub.releases.selectors import rollout_includes, rollout_serves_current
from policyhub.releases.services.rollout import release_rollout_start
from policyhub.teams.models import Team
from policyhub.teams.services import team_create
from providers.codex_versions import parse_version
from tests.conftest import OPERATOR, acting
from tests.delivery.conftest import POLICY

pytestmark = [pytest.mark.django_db]

ORG = "/api/v1/orgs/acme"
WINDOW = '[codex]\nmin_version = "0.125.0"\nmax_version = "0.169.0"\n'
NEWER = POLICY.replace('model = "openai.gpt-oss-120b"', 'model = "openai.gpt-oss-20b"')
VERSIONS = ["", "nightly", "0.118.0", "0.125.0", "0.140.0", "0.169.0", "0.170.0", "1.0.0"]


def api(cast: dict[str, Any], who: str = "admin", role: str = Role.ADMIN) -> APIClient:
    _, secret = api_token_create(
        actor=acting(cast[who]),
        organization=cast["acme" if who != "outsider" else "other"],
        name=f"{who}-{role}",
        role=role,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def add_devices(cast: dict[str, Any], count: int, seed: int = 0) -> list[Device]:
    """`count` devices in acme's teams, in every combination that matters to fleet status:
    never heard from, silent for long, reporting or only fetching, with or without errors, at
    one revision or another, with every kind of reported Codex version."""
    rng = random.Random(seed)
    teams = list(Team.objects.filter(organization=cast["acme"]).order_by("path"))
    now = timezone.now()

    def when() -> datetime | None:
        return rng.choice([None, now - timedelta(hours=1), now - timedelta(days=3)])

    rows = []
    for index in range(count):
        version = rng.choice(VERSIONS)
        rows.append(
            Device(
                organization=cast["acme"],
                team=rng.choice(teams),
                credential_hash=uuid.uuid4().hex * 2,
                hostname=f"host-{seed}-{index}",
                last_seen_at=when(),
                revision_served=rng.choice([None, 1, 2]),
                reported_at=(reported := when()),
                applied_revision=rng.choice([None, 1, 2, 3]) if reported else None,
                errors=rng.choice([[], [], ["config.toml: permission denied"]]),
                codex_version=version,
                codex_sort_key=codex_sort_key(version),
            )
        )
    created = Device.objects.bulk_create(rows)
    # Enrolled long ago or just now (which decides between stale and pending).
    old = [device.pk for device in created if rng.random() < 0.5]
    Device.objects.filter(pk__in=old).update(enrolled_at=now - timedelta(days=5))
    return created


@pytest.fixture
def fleet(cast: dict[str, Any], publish: Callable[..., Any]) -> list[Device]:
    """acme at two revisions of batch, in a 40% staged rollout, with a team that has no
    release (lab), and 240 devices; a few of them revoked."""
    publish(WINDOW + POLICY)
    publish(WINDOW + NEWER)
    release_rollout_start(
        organization=cast["acme"], team_path="batch", percent=40, actor=acting(cast["admin"])
    )
    team_create(organization=cast["acme"], parent=None, slug="lab", name="Lab")
    cast["acme"].refresh_from_db()  # the window was stored by the publish
    devices = add_devices(cast, 240)
    Device.objects.filter(pk__in=[d.pk for d in devices[:5]]).update(revoked_at=timezone.now())
    return devices


def python_rule(cast: dict[str, Any]) -> dict[str, tuple[str, str, int | None, int | None]]:
    """Each unrevoked device's (state, window, expected, applied) as the rule reads in Python:
    the revision a device should have from the releases' own `rollout_serves_current` (the one
    delivery serves by), its state as fleet status decided it before it moved to SQL."""
    releases = {
        r.team_path: r
        for r in Release.objects.filter(organization=cast["acme"], current=True).select_related(
            "previous"
        )
    }
    low, high = parse_version("0.125.0"), parse_version("0.169.0")
    now = timezone.now()
    stale_after = timedelta(hours=settings.FLEET_STALE_AFTER_HOURS)
    out = {}
    for device in Device.objects.filter(revoked_at__isnull=True).select_related("team"):
        release = releases.get(device.team.path)
        expected = None
        if release is not None:
            serves = rollout_serves_current(
                release_id=release.pk,
                percent=release.rollout_percent,
                has_previous=release.previous is not None,
                device_id=str(device.pk),
            )
            shown = release if serves else release.previous
            assert shown is not None
            expected = shown.revision
        applied = device.applied_revision if device.reported_at else device.revision_served
        seen = [t for t in (device.last_seen_at, device.reported_at) if t is not None]
        last = max(seen) if seen else None
        if last is None:
            state = "stale" if now - device.enrolled_at > stale_after else "pending"
        elif now - last > stale_after:
            state = "stale"
        elif device.reported_at and device.errors:
            state = "failing"
        else:
            state = "current" if applied == expected else "behind"
        try:
            version = parse_version(device.codex_version)
            window = "below" if version < low else "above" if version > high else "inside"
        except ValueError:
            window = "unknown"
        out[str(device.pk)] = (state, window, expected, applied)
    return out


def listed(client: APIClient, path: str, **query: Any) -> list[dict[str, Any]]:
    """Every row of a list, page after page."""
    rows: list[dict[str, Any]] = []
    response = client.get(path, {"page_size": 100, **query})
    while True:
        assert response.status_code == 200, response.content
        rows += response.json()["results"]
        if response.json()["next"] is None:
            return rows
        response = client.get(response.json()["next"])


def test_state_and_window_filters_give_the_devices_the_python_rule_gives(
    cast: dict[str, Any], fleet: list[Device]
) -> None:
    rule = python_rule(cast)
    client = api(cast, "auditor", Role.AUDITOR)
    every = listed(client, f"{ORG}/fleet/devices")
    assert len(every) == len(rule) == 235
    for row in every:
        assert (row["state"], row["codex_window"]) == rule[row["id"]][:2], row
        assert (row["expected_revision"], row["applied_revision"]) == rule[row["id"]][2:], row
    for state in STATES:
        found = {row["id"] for row in listed(client, f"{ORG}/fleet/devices", state=state)}
        assert found == {key for key, (s, *_) in rule.items() if s == state}, state
    for window in WINDOW_STATES:
        found = {row["id"] for row in listed(client, f"{ORG}/fleet/devices", codex_window=window)}
        assert found == {key for key, (_, w, *_) in rule.items() if w == window}, window
    outside = listed(client, f"{ORG}/fleet/devices", codex_window="outside", team="batch")
    assert {row["id"] for row in outside} == {
        key
        for key, (_, w, *_) in rule.items()
        if w in ("below", "above") and Device.objects.get(pk=key).team.path == "batch"
    }
    # The command reads the same rule.
    assert {str(s.device.pk): s.state for s in device_statuses(cast["acme"])} == {
        key: s for key, (s, *_) in rule.items()
    }
    # Every state occurs, so the comparison means something.
    assert {s for s, *_ in rule.values()} == set(STATES)


def test_team_counts_and_rollout_progress_agree_with_the_python_rule(
    cast: dict[str, Any], fleet: list[Device]
) -> None:
    rule = python_rule(cast)
    teams = {row["team"]: row for row in listed(api(cast), f"{ORG}/fleet/teams")}
    assert list(teams) == ["batch", "lab", "platform", "platform/ci"]
    paths = dict(Device.objects.values_list("pk", "team__path"))
    for path, row in teams.items():
        mine = [v for key, v in rule.items() if paths[uuid.UUID(key)] == path]
        assert row["counts"] == {s: sum(1 for m in mine if m[0] == s) for s in STATES}
        assert row["total"] == len(mine)
    batch = Release.objects.get(team_path="batch", current=True)
    inside = [v for key, v in rule.items() if paths[uuid.UUID(key)] == "batch"]
    inside = [v for v in inside if v[2] == batch.revision]
    assert teams["batch"]["rollout"] == {
        "revision": batch.revision,
        "percent": 40,
        "devices_targeted": len(inside),
        "devices_applied": sum(1 for v in inside if v[3] == batch.revision),
    }
    assert teams["lab"]["revision"] is None and teams["platform"]["rollout"] is None
    only = api(cast).get(f"{ORG}/fleet/teams", {"team_subtree": "platform"}).json()
    assert [row["team"] for row in only["results"]] == ["platform", "platform/ci"]
    exact = api(cast).get(f"{ORG}/fleet/teams", {"team": "platform"}).json()
    assert [row["team"] for row in exact["results"]] == ["platform"]


def test_the_sql_rollout_draw_is_the_python_one(cast: dict[str, Any]) -> None:
    team_create(organization=cast["acme"], parent=None, slug="lab", name="Lab")
    add_devices(cast, 200, seed=7)
    for release_id in (1, 97, 2**40 + 3):
        for percent in (1, 16, 50, 84, 99):
            drawn = dict(
                Device.objects.annotate(
                    inside=RolloutIncludes(Value(release_id), F("pk"), Value(percent))
                ).values_list("pk", "inside")
            )
            assert drawn == {
                pk: rollout_includes(release_id=release_id, device_id=str(pk), percent=percent)
                for pk in drawn
            }


def queries(client: APIClient, path: str, query: dict[str, Any]) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path, query).status_code == 200
    return len(captured.captured_queries)


def test_a_page_costs_the_same_queries_with_10_and_300_devices(
    cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    publish()
    client = api(cast)
    pages: list[tuple[str, dict[str, Any]]] = [
        (f"{ORG}/fleet/devices", {}),
        (f"{ORG}/fleet/devices", {"state": "stale", "team": "batch", "codex_window": "outside"}),
        (f"{ORG}/fleet/devices", {"team_subtree": "platform", "page_size": 5}),
        (f"{ORG}/fleet/teams", {}),
        (f"{ORG}/fleet/codex-versions", {}),
        (f"{ORG}/enrollment-tokens", {"active": "true"}),
    ]
    add_devices(cast, 10)
    client.get(f"{ORG}/fleet/teams")  # the token's first use is written; later ones are not
    small = [queries(client, path, query) for path, query in pages]
    add_devices(cast, 290, seed=1)
    client.post(f"{ORG}/enrollment-tokens", {"team": "batch"}, format="json")
    assert [queries(client, path, query) for path, query in pages] == small


def test_the_cursor_walks_every_device_once_newest_first(
    cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    publish()
    add_devices(cast, 30)
    rows = listed(api(cast), f"{ORG}/fleet/devices", page_size=7)
    assert len({row["id"] for row in rows}) == len(rows) == 30
    assert [row["enrolled_at"] for row in rows] == sorted(
        (row["enrolled_at"] for row in rows), reverse=True
    )


def test_a_device_shows_alone_revoked_or_not_and_only_to_its_organisation(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Callable[..., Any]
) -> None:
    publish()
    device, _ = enrol("batch", hostname="mine")
    client = api(cast, "auditor", Role.AUDITOR)
    shown = client.get(f"{ORG}/devices/{device.pk}").json()
    assert (shown["hostname"], shown["team"], shown["state"]) == ("mine", "batch", "pending")
    assert shown["revoked_at"] is None and "credential_hash" not in shown
    device_revoke(device=device, actor=OPERATOR)
    assert client.get(f"{ORG}/devices/{device.pk}").json()["state"] == "revoked"
    assert listed(client, f"{ORG}/fleet/devices") == []
    assert client.get(f"{ORG}/devices/{uuid.uuid4()}").status_code == 404
    outsider = api(cast, "outsider", Role.OWNER)
    assert outsider.get(f"{ORG}/devices/{device.pk}").status_code == 404
    assert outsider.get(f"/api/v1/orgs/other/devices/{device.pk}").status_code == 404


def test_moving_and_revoking_take_fleet_manage_and_name_what_is_wrong(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Callable[..., Any]
) -> None:
    publish()
    device, _ = enrol("batch")
    token = EnrollmentToken.objects.get()
    auditor = api(cast, "auditor", Role.AUDITOR)
    for path, body in (
        (f"{ORG}/devices/{device.pk}/move", {"team": "platform"}),
        (f"{ORG}/devices/{device.pk}/revoke", {}),
        (f"{ORG}/enrollment-tokens", {"team": "batch"}),
        (f"{ORG}/enrollment-tokens/{token.pk}/revoke", {}),
    ):
        refused = auditor.post(path, body, format="json")
        assert refused.status_code == 403 and "actor" in refused.json()["errors"], path
    # An admin's token with a viewer's ceiling is refused the same way.
    viewer = api(cast, "admin", Role.VIEWER)
    assert viewer.post(f"{ORG}/devices/{device.pk}/revoke", {}, format="json").status_code == 403
    device.refresh_from_db()
    token.refresh_from_db()
    assert (device.team.path, device.revoked_at, token.revoked_at) == ("batch", None, None)
    assert EnrollmentToken.objects.count() == 1

    admin = api(cast)
    unknown = admin.post(f"{ORG}/devices/{device.pk}/move", {"team": "nowhere"}, format="json")
    assert unknown.status_code == 400 and "team" in unknown.json()["errors"]
    missing = admin.post(f"{ORG}/devices/{device.pk}/move", {}, format="json")
    assert missing.status_code == 400 and "team" in missing.json()["errors"]
    moved = admin.post(f"{ORG}/devices/{device.pk}/move", {"team": "platform"}, format="json")
    assert moved.status_code == 200 and moved.json()["team"] == "platform"
    long = admin.post(f"{ORG}/devices/{device.pk}/revoke", {"reason": "x" * 2001}, format="json")
    assert long.status_code == 400 and "reason" in long.json()["errors"]
    revoked = admin.post(f"{ORG}/devices/{device.pk}/revoke", {"reason": "lost"}, format="json")
    assert revoked.status_code == 204
    again = admin.post(f"{ORG}/devices/{device.pk}/move", {"team": "batch"}, format="json")
    assert again.status_code == 400 and "device" in again.json()["errors"]


def test_outsiders_learn_nothing_and_strangers_are_asked_to_sign_in(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Callable[..., Any]
) -> None:
    publish()
    device, _ = enrol("batch")
    token = EnrollmentToken.objects.get()
    reads = [
        f"{ORG}/fleet/devices",
        f"{ORG}/fleet/teams",
        f"{ORG}/fleet/codex-versions",
        f"{ORG}/devices/{device.pk}",
        f"{ORG}/enrollment-tokens",
    ]
    writes = [
        f"{ORG}/devices/{device.pk}/move",
        f"{ORG}/devices/{device.pk}/revoke",
        f"{ORG}/enrollment-tokens",
        f"{ORG}/enrollment-tokens/{token.pk}/revoke",
    ]
    outsider = api(cast, "outsider", Role.OWNER)
    for path in reads:
        assert outsider.get(path).status_code == 404, path
        assert APIClient().get(path).status_code == 401, path
    for path in writes:
        assert outsider.post(path, {"team": "platform"}, format="json").status_code == 404, path
    device.refresh_from_db()
    assert device.team.path == "batch" and device.revoked_at is None


def test_enrolment_tokens_are_listed_filtered_created_and_revoked(
    cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    publish()
    client = api(cast)
    created = client.post(
        f"{ORG}/enrollment-tokens",
        {"team": "batch", "expires": "1d", "uses": 2, "note": "laptops"},
        format="json",
    )
    assert created.status_code == 201
    secret = created.json()["token"]
    assert secret.startswith("phe_") and created.json()["max_uses"] == 2
    assert created.json()["active"] is True
    other = client.post(f"{ORG}/enrollment-tokens", {"team": "platform/ci"}, format="json")
    assert other.json()["max_uses"] is None
    every = listed(client, f"{ORG}/enrollment-tokens")
    assert [row["team"] for row in every] == ["platform/ci", "batch"]  # newest first
    assert secret not in str(every) and "token" not in every[0]
    batch = listed(client, f"{ORG}/enrollment-tokens", team="batch")
    assert [row["id"] for row in batch] == [created.json()["id"]]

    revoke = f"{ORG}/enrollment-tokens/{created.json()['id']}/revoke"
    assert client.post(revoke, format="json").status_code == 204
    active = listed(client, f"{ORG}/enrollment-tokens", active="true")
    assert [row["id"] for row in active] == [other.json()["id"]]
    spent = listed(client, f"{ORG}/enrollment-tokens", active="false")
    assert [(row["id"], row["active"]) for row in spent] == [(created.json()["id"], False)]
    for token_id in (10**6, 2**70):
        assert client.post(f"{ORG}/enrollment-tokens/{token_id}/revoke").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"team": "batch", "uses": 2147483648}, "uses"),
        ({"team": "batch", "uses": 0}, "uses"),
        ({"team": "batch", "uses": "many"}, "uses"),
        ({"team": "batch", "expires": "forever"}, "expires"),
        ({"team": "batch", "expires": "400d"}, "expires"),
        ({"team": "batch", "note": "x" * 201}, "note"),
        ({"team": "batch", "note": "a\x00b"}, "note"),
        ({"team": "nowhere"}, "team"),
        ({"team": "t" * 1025}, "team"),
        ({}, "team"),
    ],
)
def test_a_bad_token_request_is_a_400_naming_the_field_and_stores_nothing(
    body: dict[str, Any], field: str, cast: dict[str, Any], publish: Callable[..., Any]
) -> None:
    publish()
    response = api(cast).post(f"{ORG}/enrollment-tokens", body, format="json")
    assert response.status_code == 400 and field in response.json()["errors"], response.json()
    assert not EnrollmentToken.objects.exists()


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("fleet/devices", {"state": "asleep"}, "state"),
        ("fleet/devices", {"codex_window": "sideways"}, "codex_window"),
        ("fleet/devices", {"team": "a\x1bb"}, "team"),
        ("fleet/devices", {"team_subtree": "t" * 1025}, "team_subtree"),
        ("fleet/devices", {"hostname": "a\x00"}, "hostname"),
        ("fleet/teams", {"team": "a\x00"}, "team"),
        ("enrollment-tokens", {"active": "maybe"}, "active"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(
    path: str, query: dict[str, str], field: str, cast: dict[str, Any]
) -> None:
    response = api(cast).get(f"{ORG}/{path}", query)
    assert response.status_code == 400 and field in response.json()["errors"], response.json()


def test_the_sort_key_orders_as_versions_do_and_follows_reports(
    cast: dict[str, Any], publish: Callable[..., Any], enrol: Callable[..., Any]
) -> None:
    versions = ["0.9.0", "0.10.0", "0.118.0", "0.169.0", "0.169.10", "1.0.0", "10.0.0"]
    assert sorted(versions, key=codex_sort_key) == versions
    assert codex_sort_key("0.169.0") == "000000.000169.000000"
    assert codex_sort_key("nightly") == codex_sort_key("") == ""
    publish()
    device, _ = enrol("batch")
    device_report_record(
        device_id=device.pk,
        applied_revision=1,
        codex_version="0.140.0",
        os="Linux",
        agent_version="0.1.0",
        errors=[],
    )
    device.refresh_from_db()
    assert device.codex_sort_key == codex_sort_key("0.140.0")


@pytest.mark.parametrize(
    "body",
    [
        b'{"token": ' + b"[" * 40 + b"]" * 40 + b"}",
        b'{"token": "phe_\xff\xfe"}',
        b'{"token": "a", "token": "b"}',
        b'{"token": NaN}',
    ],
)
def test_a_malformed_enrolment_body_is_a_400(body: bytes, cast: dict[str, Any]) -> None:
    response = Client().post("/api/v1/device/enroll", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["detail"]
    assert not Device.objects.exists()
