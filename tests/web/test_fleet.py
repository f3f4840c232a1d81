"""The devices and enrolment-token pages: lists filtered and paged in SQL at a fixed query count,
revoked devices only when asked for, moving and revoking a device, a token's secret shown once,
and what each role is offered and allowed."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from policyhub import credentials
from policyhub.accounts.models import Role
from policyhub.audit.models import AuditEvent
from policyhub.fleet.models import Device, EnrollmentToken, codex_sort_key
from policyhub.fleet.selectors import window_of
from policyhub.fleet.services import enrollment_token_create
from policyhub.releases.models import Release
from policyhub.teams.models import Team
from providers.codex_versions import version_text
from tests.api.conftest import World
from tests.conftest import OPERATOR

pytestmark = [pytest.mark.django_db]

DEVICES = "/orgs/acme/devices/"
TOKENS = "/orgs/acme/enrolment-tokens/"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def add_devices(
    world: World, count: int, *, team: str = "batch", prefix: str = "host", **fields: Any
) -> list[Device]:
    """`count` devices in one team, enrolled and (unless `fields` say otherwise) never heard
    from, named `<prefix>-0000`, `<prefix>-0001`..."""
    acme = Team.objects.get(path=team, organization__slug="acme")
    version = fields.pop("codex_version", "")
    return Device.objects.bulk_create(
        Device(
            organization_id=acme.organization_id,
            team=acme,
            credential_hash=uuid.uuid4().hex * 2,
            hostname=f"{prefix}-{index:04d}",
            codex_version=version,
            codex_sort_key=codex_sort_key(version),
            **fields,
        )
        for index in range(count)
    )


def hostnames(response: Any) -> list[str]:
    """The host names a devices page lists, in order."""
    return re.findall(r'/devices/[0-9a-f-]{36}/">([^<]+)</a>', response.content.decode())


def all_pages(client: Client, url: str) -> list[str]:
    seen: list[str] = []
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        seen += hostnames(response)
        found = re.search(r'<a href="(\?[^"]*)" rel="next">', response.content.decode())
        url = DEVICES + found.group(1).replace("&amp;", "&") if found else ""
        pages += 1
        assert pages < 10
    return seen


# --- devices list -------------------------------------------------------------------------------


def test_devices_list_shows_each_device_with_its_state_and_revisions(world: World) -> None:
    response = signed_in(world.ids["people"]["admin"]).get(DEVICES)
    assert response.status_code == 200
    page = response.content.decode()
    assert "laptop" in page
    assert reverse("team", args=["acme", "platform/ci"]) in page
    assert '<span class="state-pending">pending</span>' in page
    revision = Release.objects.get(team_path="platform/ci", current=True).revision
    assert f"revision {revision}" in page  # what it should have
    assert reverse("web-device-revoke", args=["acme", world.ids["device"]]) in page
    assert 'aria-current="page"' in page and ">Devices</a>" in page


def test_devices_list_empty_states(cast: dict[str, Any]) -> None:
    client = signed_in(cast["admin"])
    assert "No machine has enrolled yet." in client.get(DEVICES).content.decode()
    filtered = client.get(DEVICES, {"q": "nothing-like-this"}).content.decode()
    assert "No device matches these filters." in filtered


@pytest.mark.parametrize("role", ["auditor", Role.VIEWER, Role.TEAM_EDITOR])
def test_reader_sees_no_control_and_forged_posts_are_refused(world: World, role: str) -> None:
    client = signed_in(world.ids["people"][role])
    device_id = world.ids["device"]
    for url in (DEVICES, f"{DEVICES}{device_id}/", TOKENS):
        page = client.get(url).content.decode()
        assert '<form method="post" action="/orgs' not in page, url
        assert "Revoke" not in page and "Move the device" not in page
    token = world.ids["enrollment_token"]
    forged = [
        (f"{DEVICES}{device_id}/-/revoke/", {"reason": "x"}),
        (f"{DEVICES}{device_id}/-/move/", {"team": "batch"}),
        (TOKENS, {"team": "batch", "expires": "7d"}),
        (f"{TOKENS}{token}/-/revoke/", {}),
    ]
    for url, data in forged:
        assert client.post(url, data).status_code == 403, url
    device = Device.objects.get(pk=device_id)
    assert device.revoked_at is None and device.team.path == "platform/ci"
    assert EnrollmentToken.objects.count() == 1
    assert EnrollmentToken.objects.get().revoked_at is None


def test_outsider_gets_404_everywhere(world: World) -> None:
    client = signed_in(world.ids["people"]["outsider"])
    device_id = world.ids["device"]
    token = world.ids["enrollment_token"]
    for url in (DEVICES, f"{DEVICES}{device_id}/", TOKENS):
        assert client.get(url).status_code == 404, url
    for url in (f"{DEVICES}{device_id}/-/revoke/", f"{TOKENS}{token}/-/revoke/", TOKENS):
        assert client.post(url, {"team": "batch", "expires": "7d"}).status_code == 404, url
    assert Device.objects.get(pk=device_id).revoked_at is None


def test_a_device_of_another_organisation_is_not_found(world: World, cast: dict[str, Any]) -> None:
    client = signed_in(cast["outsider"])
    assert client.get(f"/orgs/other/devices/{world.ids['device']}/").status_code == 404
    other_token = f"/orgs/other/enrolment-tokens/{world.ids['enrollment_token']}/-/revoke/"
    assert client.post(other_token).status_code == 404
    assert signed_in(cast["admin"]).get(f"{DEVICES}{uuid.uuid4()}/").status_code == 404


def states(world: World) -> dict[str, Device]:
    """One device in each state, in team batch."""
    now = timezone.now()
    expected = Release.objects.get(team_path="batch", current=True).revision
    made: dict[str, dict[str, Any]] = {
        "current": dict(last_seen_at=now, reported_at=now, applied_revision=expected),
        "behind": dict(last_seen_at=now, reported_at=now, applied_revision=expected + 7),
        "failing": dict(reported_at=now, applied_revision=expected, errors=["permission denied"]),
        "stale": dict(last_seen_at=now - timedelta(days=5), revision_served=expected),
        "revoked": dict(last_seen_at=now, revoked_at=now),
    }
    return {
        state: add_devices(world, 1, prefix=state, **fields)[0] for state, fields in made.items()
    }


def test_state_filter_lists_only_that_state(world: World) -> None:
    states(world)
    client = signed_in(world.ids["people"]["admin"])
    expected = {
        "current": ["current-0000"],
        "behind": ["behind-0000"],
        "failing": ["failing-0000"],
        "stale": ["stale-0000"],
        "pending": ["laptop"],
        "revoked": ["revoked-0000"],
    }
    for state, names in expected.items():
        response = client.get(DEVICES, {"state": state})
        assert hostnames(response) == names, state
        assert f'<span class="state-{state}">{state}</span>' in response.content.decode()


def test_revoked_devices_are_listed_as_such_only_when_asked_for(world: World) -> None:
    states(world)
    client = signed_in(world.ids["people"]["admin"])
    default = hostnames(client.get(DEVICES))
    assert "revoked-0000" not in default and "current-0000" in default
    with_revoked = client.get(DEVICES, {"include_revoked": "on"})
    assert "revoked-0000" in hostnames(with_revoked)
    page = with_revoked.content.decode()
    assert '<span class="state-revoked">revoked</span>' in page
    assert 'name="include_revoked" value="on" checked' in page


def test_team_filter_takes_the_team_and_those_below(world: World) -> None:
    add_devices(world, 1, team="platform", prefix="plat")
    add_devices(world, 1, team="batch", prefix="batch")
    client = signed_in(world.ids["people"]["admin"])
    assert sorted(hostnames(client.get(DEVICES, {"team": "platform"}))) == ["laptop", "plat-0000"]
    assert hostnames(client.get(DEVICES, {"team": "platform/ci"})) == ["laptop"]
    assert hostnames(client.get(DEVICES, {"team": "batch"})) == ["batch-0000"]
    # A prefix of a path is no team of it.
    assert hostnames(client.get(DEVICES, {"team": "plat"})) == []


def test_codex_window_filter(world: World, cast: dict[str, Any]) -> None:
    low, _ = window_of(cast["acme"])
    for prefix, version in (("below", "0.0.1"), ("in", version_text(low)), ("above", "99.0.0")):
        add_devices(world, 1, prefix=prefix, codex_version=version)
    client = signed_in(world.ids["people"]["admin"])
    assert hostnames(client.get(DEVICES, {"codex_window": "below"})) == ["below-0000"]
    assert hostnames(client.get(DEVICES, {"codex_window": "in"})) == ["in-0000"]
    assert hostnames(client.get(DEVICES, {"codex_window": "above"})) == ["above-0000"]
    assert hostnames(client.get(DEVICES, {"codex_window": "unknown"})) == ["laptop"]
    assert "below the window" in client.get(DEVICES).content.decode()


def test_hostname_filter_and_a_bad_filter(world: World) -> None:
    add_devices(world, 3, prefix="build")
    client = signed_in(world.ids["people"]["admin"])
    assert sorted(hostnames(client.get(DEVICES, {"q": "ILD-000"}))) == [
        "build-0000",
        "build-0001",
        "build-0002",
    ]
    refused = client.get(DEVICES, {"state": "asleep"})
    assert refused.status_code == 200
    assert "These filters cannot be used" in refused.content.decode()
    assert hostnames(refused) == []


def test_pages_of_50_cover_120_devices_once_and_keep_the_filters(world: World) -> None:
    made = add_devices(world, 120, prefix="fleet")
    # Enrolled at one instant across both page breaks: the id alone orders them there.
    tied = [device.pk for device in made[20:110]]
    Device.objects.filter(pk__in=tied).update(enrolled_at=timezone.now() - timedelta(days=1))
    add_devices(world, 5, team="platform", prefix="fleet-other")
    client = signed_in(world.ids["people"]["admin"])
    first = client.get(DEVICES, {"team": "batch", "q": "fleet"})
    assert len(hostnames(first)) == 50
    seen = all_pages(client, f"{DEVICES}?team=batch&q=fleet")
    assert len(seen) == 120 == len(set(seen))
    newest_first = Device.objects.filter(team__path="batch").order_by("-enrolled_at", "-id")
    assert seen == [device.hostname for device in newest_first]
    assert not any(name.startswith("fleet-other") for name in seen)


def test_devices_list_costs_the_same_queries_at_10_and_200_devices(world: World) -> None:
    client = signed_in(world.ids["people"]["admin"])
    counts = []
    for count in (10, 190):
        add_devices(world, count, prefix=f"n{count}", codex_version="0.130.0")
        with CaptureQueriesContext(connection) as queries:
            assert client.get(DEVICES, {"include_revoked": "on"}).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_devices_list_query_count(world: World, django_assert_max_num_queries: Any) -> None:
    add_devices(world, 60)
    client = signed_in(world.ids["people"]["admin"])
    with django_assert_max_num_queries(10):
        client.get(DEVICES, {"team": "batch", "state": "pending"})


# --- one device ---------------------------------------------------------------------------------


def test_device_page_shows_what_it_has_and_offers_move_and_revoke(world: World) -> None:
    device = Device.objects.get(pk=world.ids["device"])
    Device.objects.filter(pk=device.pk).update(
        reported_at=timezone.now(),
        last_seen_at=timezone.now(),
        last_channel="agent",
        revision_served=1,
        applied_revision=1,
        codex_version="0.0.1",
        codex_sort_key=codex_sort_key("0.0.1"),
        errors=["config.toml: permission denied"],
        agent_version="0.1.0",
    )
    response = signed_in(world.ids["people"]["admin"]).get(f"{DEVICES}{device.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<h1>laptop</h1>" in page
    assert "config.toml: permission denied" in page
    assert '<span class="state-failing">failing</span>' in page
    assert "below the window" in page and "the PolicyHub agent" in page
    assert device.enrolled_with is not None and device.enrolled_with.prefix in page
    assert "Move the device" in page and "Revoke the device" in page
    assert reverse("web-team-releases", args=["acme", "platform/ci"]) in page


def test_device_page_query_count(world: World, django_assert_max_num_queries: Any) -> None:
    client = signed_in(world.ids["people"]["admin"])
    # Two of them read a page of its release receipts and a page of its report history.
    with django_assert_max_num_queries(12):
        assert client.get(f"{DEVICES}{world.ids['device']}/").status_code == 200


def test_move_a_device(world: World) -> None:
    client = signed_in(world.ids["people"]["admin"])
    device_id = world.ids["device"]
    response = client.post(
        f"{DEVICES}{device_id}/-/move/", {"team": "batch", "reason": "joined batch"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"{DEVICES}{device_id}/"
    assert "laptop moved to batch." in response.content.decode()
    assert Device.objects.get(pk=device_id).team.path == "batch"
    event = AuditEvent.objects.filter(action="device.move").get()
    assert event.reason == "joined batch"


def test_move_to_an_unknown_team_shows_the_refusal_beside_the_field(world: World) -> None:
    client = signed_in(world.ids["people"]["admin"])
    device_id = world.ids["device"]
    response = client.post(
        f"{DEVICES}{device_id}/-/move/", {"team": "nowhere/else", "reason": "keep me"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "no team &#x27;nowhere/else&#x27;" in page
    assert 'value="nowhere/else"' in page and 'value="keep me"' in page
    assert Device.objects.get(pk=device_id).team.path == "platform/ci"
    empty = client.post(f"{DEVICES}{device_id}/-/move/", {"team": ""})
    assert empty.status_code == 400 and "This field is required." in empty.content.decode()


def test_revoke_a_device_then_it_offers_nothing(world: World) -> None:
    client = signed_in(world.ids["people"]["admin"])
    device_id = world.ids["device"]
    response = client.post(
        f"{DEVICES}{device_id}/-/revoke/", {"reason": "laptop stolen"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"{DEVICES}{device_id}/"
    page = response.content.decode()
    assert "laptop revoked" in page and "<strong>Revoked</strong>" in page
    assert "Move the device" not in page and "Revoke the device" not in page
    assert Device.objects.get(pk=device_id).revoked_at is not None
    assert AuditEvent.objects.filter(action="device.revoke").get().reason == "laptop stolen"
    refused = client.post(f"{DEVICES}{device_id}/-/move/", {"team": "batch"})
    assert refused.status_code == 400
    assert "a revoked device cannot be moved" in refused.content.decode()
    assert Device.objects.get(pk=device_id).team.path == "platform/ci"


def test_revoke_from_the_list_returns_to_the_same_filtered_list(world: World) -> None:
    client = signed_in(world.ids["people"]["admin"])
    device_id = world.ids["device"]
    back = f"{DEVICES}?team=platform"
    response = client.post(f"{DEVICES}{device_id}/-/revoke/", {"next": back})
    assert response.status_code == 302 and response["Location"] == back
    elsewhere = client.post(f"{DEVICES}{device_id}/-/revoke/", {"next": "https://evil.example/"})
    assert elsewhere["Location"] == f"{DEVICES}{device_id}/"


# --- enrolment tokens ---------------------------------------------------------------------------


def test_tokens_list_shows_tokens_and_the_form(world: World) -> None:
    response = signed_in(world.ids["people"]["admin"]).get(TOKENS)
    assert response.status_code == 200
    page = response.content.decode()
    token = EnrollmentToken.objects.get()
    assert f"{token.prefix}…" in page and "platform/ci" in page
    assert '<span class="ok">active</span>' in page and "(no limit)" in page
    assert "Create the token" in page
    assert reverse("web-enrollment-token-revoke", args=["acme", token.pk]) in page


def test_tokens_empty_state(cast: dict[str, Any]) -> None:
    page = signed_in(cast["auditor"]).get(TOKENS).content.decode()
    assert "No enrolment token yet." in page and "Create the token" not in page


def test_create_token_shows_its_secret_once(world: World, settings: Any) -> None:
    settings.BASE_URL = "https://policyhub.example"
    client = signed_in(world.ids["people"]["admin"])
    response = client.post(
        TOKENS, {"team": "batch", "expires": "12h", "uses": "3", "note": "batch runners"}
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    secret = re.search(r'<code id="token-secret">([^<]+)</code>', page)
    assert secret is not None
    token = EnrollmentToken.objects.get(note="batch runners")
    assert token.token_hash == credentials.secret_hash(secret.group(1))
    assert token.team.path == "batch" and token.max_uses == 3
    assert timedelta(hours=11) < token.expires_at - timezone.now() <= timedelta(hours=12)
    assert 'data-copy="#token-secret"' in page
    assert (
        f"policyhub-agent enroll --server https://policyhub.example --token {secret.group(1)}"
        in page
    )
    assert secret.group(1) not in client.get(TOKENS).content.decode()
    assert secret.group(1) not in str(dict(client.session))


@pytest.mark.parametrize(
    ("given", "field", "error"),
    [
        ({"team": "batch", "expires": "forever"}, "expires", "is not a duration like 30m"),
        ({"team": "batch", "expires": "400d"}, "expires", "is longer than 365 days"),
        ({"team": "nowhere", "expires": "7d"}, "team", "no team &#x27;nowhere&#x27;"),
        ({"team": "batch", "expires": "7d", "uses": "0"}, "uses", "greater than or equal to 1"),
        ({"team": "", "expires": "7d"}, "team", "This field is required."),
    ],
)
def test_create_token_refusals_keep_the_input(
    world: World, given: dict[str, str], field: str, error: str
) -> None:
    client = signed_in(world.ids["people"]["admin"])
    response = client.post(TOKENS, {**given, "note": "typed by hand"})
    assert response.status_code == 400
    page = response.content.decode()
    # The error sits in the field's own block, before the next field's label.
    block = page.split(f'id="token-{field}"', 1)[1].split('<div class="field">', 1)[0]
    assert error in block
    assert 'value="typed by hand"' in page
    assert EnrollmentToken.objects.count() == 1


def test_revoke_a_token(world: World) -> None:
    client = signed_in(world.ids["people"]["admin"])
    token = world.ids["enrollment_token"]
    response = client.post(f"{TOKENS}{token}/-/revoke/", follow=True)
    assert response.redirect_chain[-1][0] == TOKENS
    page = response.content.decode()
    assert "revoked" in page and "state-revoked" in page
    assert EnrollmentToken.objects.get(pk=token).revoked_at is not None
    assert reverse("web-enrollment-token-revoke", args=["acme", token]) not in page
    assert client.post(f"{TOKENS}999999/-/revoke/").status_code == 404


def test_tokens_page_through_newest_first(world: World, cast: dict[str, Any]) -> None:
    for index in range(54):
        enrollment_token_create(
            organization=cast["acme"], team_path="batch", note=f"t{index:02d}", actor=OPERATOR
        )
    client = signed_in(world.ids["people"]["admin"])
    first = client.get(TOKENS).content.decode()
    assert "t53" in first and "t04" in first and "t03" not in first
    found = re.search(r'<a href="(\?[^"]*)" rel="next">Older tokens</a>', first)
    assert found is not None
    second = client.get(TOKENS + found.group(1).replace("&amp;", "&")).content.decode()
    assert "t03" in second and "t00" in second and "t04" not in second
    assert "platform/ci" in second  # the world's own, the oldest
    assert 'rel="next"' not in second


def test_tokens_page_query_count(world: World, django_assert_max_num_queries: Any) -> None:
    client = signed_in(world.ids["people"]["admin"])
    with django_assert_max_num_queries(10):
        assert client.get(TOKENS).status_code == 200
