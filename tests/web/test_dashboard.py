"""The organisation's dashboard: fleet health as a chart and as links, approvals waiting,
publishes running and scheduled, recent releases, Codex versions against the window, teams with
validation problems; every section with its empty state, at a query count that does not grow
with teams or devices."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from policyhub.accounts.services import organization_settings_update
from policyhub.changes.models import ChangeSet
from policyhub.changes.services import change_set_create, change_set_submit
from policyhub.fleet.models import Device, codex_sort_key
from policyhub.fleet.services import device_revoke
from policyhub.policies import document
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.releases.services.runs import publish_run_request
from policyhub.teams.models import Team
from tests.api.conftest import World
from tests.conftest import OPERATOR, THREE_TEAMS, acting, make_policy

pytestmark = [pytest.mark.django_db]

DASHBOARD = "/orgs/acme/"
# The page's queries, whatever the organisation holds: session and user, organisation and
# membership, then one or two per section; plus the session's save (three) on a first request.
MAX_QUERIES = 18


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def section(html: str, name: str) -> str:
    """The HTML of one dashboard card, by its id."""
    found = re.search(
        rf'<section class="card[^"]*" aria-labelledby="{name}-heading" id="{name}">(.*?)</section>',
        html,
        re.S,
    )
    assert found, f"no section {name}"
    return found.group(1)


def add_devices(team: Team, count: int, **fields: Any) -> None:
    version = fields.pop("codex_version", "")
    Device.objects.bulk_create(
        Device(
            organization_id=team.organization_id,
            team=team,
            credential_hash=uuid.uuid4().hex * 2,
            hostname=f"host-{index}",
            codex_version=version,
            codex_sort_key=codex_sort_key(version),
            **fields,
        )
        for index in range(count)
    )


def test_an_admin_sees_every_section_of_the_organisation(world: World) -> None:
    html = signed_in(world.ids["people"]["admin"]).get(DASHBOARD).content.decode()
    assert "<h1>Acme</h1>" in html
    fleet = section(html, "fleet")
    # The one device of the world has enrolled and never fetched: pending.
    assert 'href="/orgs/acme/devices/?state=pending">Pending devices</a></td><td>1</td>' in fleet
    assert 'data-chart="#fleet-chart"' in fleet
    script = re.search(r'id="fleet-chart" type="application/json">(.*?)</script>', html, re.S)
    assert script
    chart = json.loads(script.group(1))
    assert chart["data"]["labels"] == [
        "current",
        "behind",
        "failing",
        "stale",
        "pending",
        "revoked",
    ]
    assert chart["data"]["datasets"][0]["data"] == [0, 0, 0, 0, 1, 0]
    assert chart["links"][4] == "/orgs/acme/devices/?state=pending"
    releases = section(html, "releases")
    assert 'href="/orgs/acme/releases/platform/ci/">platform/ci</a>' in releases
    assert "revision 1" in releases and "100%" in releases
    assert "No change set is waiting for approval." in section(html, "approvals")
    assert "Nothing is being published" in section(html, "publishes")
    assert "No team's policy has errors or warnings." in section(html, "problems")
    assert "Support window: <strong>Codex " in section(html, "codex")


def test_a_member_without_devices_sees_every_empty_state(cast: dict[str, Any]) -> None:
    html = signed_in(cast["outsider"]).get("/orgs/other/").content.decode()
    assert "No device has enrolled yet." in html
    assert "No change set is waiting for approval." in html
    assert "Nothing is being published and no publish is scheduled." in html
    assert "Nothing has been released yet." in html
    assert "No enrolled device has reported a Codex version yet." in html
    assert "No team's policy has errors or warnings." in html
    assert "fleet-chart" not in html


def test_revoked_devices_are_shown_as_revoked_not_as_no_device(world: World) -> None:
    device = Device.objects.get(pk=world.ids["device"])
    device_revoke(device=device, actor=OPERATOR)
    html = signed_in(world.ids["people"]["admin"]).get(DASHBOARD).content.decode()
    fleet = section(html, "fleet")
    assert "No device has enrolled yet" not in html
    assert 'href="/orgs/acme/devices/?state=revoked">Revoked devices</a></td><td>1</td>' in fleet
    assert 'href="/orgs/acme/devices/?state=pending">Pending devices</a></td><td>0</td>' in fleet


def test_approvals_waiting_publishes_running_and_scheduled_are_listed(world: World) -> None:
    acme, admin = world.ids["people"]["acme"], world.ids["people"]["admin"]
    later = timezone.now() + timedelta(days=2)
    # Approved at once (acme asks for no second person), to publish in two days.
    scheduled = ChangeSet.objects.get(pk=world.ids["change_set"])
    change_set_submit(actor=acting(admin), change_set=scheduled, publish_at=later)
    organization_settings_update(actor=OPERATOR, organization=acme, requires_approval=True)
    acme.refresh_from_db()
    text = document.dump(org_policy(acme)).replace('name = "batch"', 'name = "Batch jobs"')
    waiting = change_set_create(
        actor=acting(admin), organization=acme, document_text=text, title="Rename batch"
    )
    change_set_submit(actor=acting(admin), change_set=waiting)
    run = publish_run_request(organization=acme, actor=OPERATOR)

    html = signed_in(world.ids["people"]["auditor"]).get(DASHBOARD).content.decode()
    approvals = section(html, "approvals")
    assert "Waiting for approval (1)" in approvals
    assert (
        f'href="/orgs/acme/changes/{waiting.pk}/">Change set {waiting.pk}: Rename batch</a>'
        in approvals
    )
    publishes = section(html, "publishes")
    assert f'href="/orgs/acme/publishes/{run.pk}/">Publish run {run.pk}</a>' in publishes
    assert "pending" in publishes
    assert f'href="/orgs/acme/changes/{scheduled.pk}/">Change set {scheduled.pk}' in publishes
    assert "scheduled" in publishes


def test_codex_versions_outside_the_window_are_marked_in_words(world: World) -> None:
    team = Team.objects.get(organization__slug="acme", path="batch")
    add_devices(team, 2, codex_version="0.100.0")
    html = signed_in(world.ids["people"]["admin"]).get(DASHBOARD).content.decode()
    codex = section(html, "codex")
    assert re.search(
        r"<code>0\.100\.0</code></td>\s*<td>2</td>\s*<td><strong class=\"error\">outside \(below\)</strong>",
        codex,
    )


def test_teams_with_problems_link_to_the_tree_filtered_by_state(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    warned = THREE_TEAMS + '[teams.strict.requirements]\ncli_auth_credentials_store = "keyring"\n'
    policy_apply(organization=acme, wanted=make_policy(warned), actor=OPERATOR)
    html = signed_in(cast["admin"]).get(DASHBOARD).content.decode()
    problems = section(html, "problems")
    assert 'href="/orgs/acme/teams/?state=warnings">1 team with warnings only</a>' in problems
    assert 'href="/orgs/acme/teams/?state=errors">0 teams with errors</a>' in problems
    assert 'href="/orgs/acme/teams/strict/">strict</a>' in problems
    assert '<span class="warning">1 warning</span>' in problems
    assert "batch" not in problems


def test_the_query_count_does_not_grow_with_teams_or_devices(
    world: World, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(world.ids["people"]["admin"])
    with django_assert_max_num_queries(MAX_QUERIES):
        client.get(DASHBOARD)
    with CaptureQueriesContext(connection) as small:
        client.get(DASHBOARD)
    acme = world.ids["people"]["acme"]
    wanted = THREE_TEAMS + "".join(
        f'[teams.t{i:02}.requirements]\ncli_auth_credentials_store = "keyring"\n' for i in range(30)
    )
    policy_apply(organization=acme, wanted=make_policy(wanted), actor=OPERATOR)
    add_devices(Team.objects.get(organization=acme, path="batch"), 40, codex_version="0.169.0")
    with CaptureQueriesContext(connection) as large:
        response = client.get(DASHBOARD)
    assert "30 teams with warnings only" in response.content.decode()
    assert len(large) == len(small)


def test_an_outsider_gets_404_and_a_post_is_refused(world: World) -> None:
    assert signed_in(world.ids["people"]["outsider"]).get(DASHBOARD).status_code == 404
    assert signed_in(world.ids["people"]["viewer"]).post(DASHBOARD).status_code == 403
    assert Client().get(DASHBOARD).status_code == 302
