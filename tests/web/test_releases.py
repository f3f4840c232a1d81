"""The publishes and releases pages: publish now and follow the run, a team's history and diffs,
rollback and staged rollouts, each offered only to those who may use it."""

# ruff: noqa: F811 (the `world` fixture is imported, and named by the tests that use it)

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from policyhub.accounts.models import Role
from policyhub.changes.models import ChangeSet
from policyhub.changes.services import change_set_approve, change_set_submit
from policyhub.fleet.services import device_report_record
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.runs import publish_run_request
from policyhub.web.labels import codex_label
from policyhub.web.pages import PAGE_SIZE
from providers.codex_versions import parse_version
from tests.api.conftest import World, world  # noqa: F401
from tests.conftest import OPERATOR, THREE_TEAMS, acting, make_policy

TEAM = "platform/ci"
CHANGED = THREE_TEAMS.replace('model = "codex-ci"', 'model = "gpt-5.5"')


def url(name: str, *args: Any) -> str:
    return reverse(name, args=["acme", *args])


def publish(acme: Any, text: str) -> PublishRun:
    policy_apply(organization=acme, wanted=make_policy(text), actor=OPERATOR)
    run = publish_run_request(organization=acme, actor=OPERATOR)
    done = publish_run_execute(run_id=run.pk)
    assert done is not None and done.status == "succeeded", done and done.error
    return done


def releases_of(acme: Any) -> list[tuple[int, bool, int]]:
    return list(
        Release.objects.filter(organization=acme, team_path=TEAM)
        .order_by("revision")
        .values_list("revision", "current", "rollout_percent")
    )


@pytest.fixture
def two(world: World) -> dict[str, Any]:
    """platform/ci at revision 1 and revision 2 (current), its device in the team."""
    people = world.ids["people"]
    publish(people["acme"], CHANGED)
    return people


def as_user(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


# --- codex labels -----------------------------------------------------------------------------


def test_codex_label_names_the_last_version_served() -> None:
    v = parse_version
    assert codex_label([(v("0.125.0"), v("0.169.0"))]) == "Codex 0.125.0 \N{EN DASH} 0.168.x"
    assert codex_label([(v("0.169.0"), None)]) == "Codex 0.169.0 and later"
    assert codex_label([(v("0.131.0"), v("0.131.1"))]) == "Codex 0.131.0"
    assert (
        codex_label([(v("0.118.0"), v("0.134.0")), (v("0.140.0"), None)])
        == "Codex 0.118.0 \N{EN DASH} 0.133.x, 0.140.0 and later"
    )


# --- publishes --------------------------------------------------------------------------------


def test_publishes_page_lists_runs_and_recent_releases(
    client: Client,
    world: World,
    django_assert_max_num_queries: Any,
) -> None:
    as_user(client, world.ids["people"]["admin"])
    with django_assert_max_num_queries(10):
        response = client.get(url("web-publishes"))
    assert response.status_code == 200
    text = response.content.decode()
    run = world.ids["publish_run"]
    assert f"Publish run {run}</a>" in text
    assert "Publish now" in text
    assert url("web-team-releases", TEAM) in text
    assert "revision 1" in text
    assert "succeeded" in text.lower()


@pytest.mark.parametrize("role", ["auditor", Role.VIEWER])
def test_readers_get_no_publish_button_and_a_forged_publish_is_refused(
    client: Client,
    world: World,
    role: str,
) -> None:
    as_user(client, world.ids["people"][role])
    response = client.get(url("web-publishes"))
    assert response.status_code == 200
    assert "Publish now" not in response.content.decode()
    runs = PublishRun.objects.count()
    assert client.post(url("web-publishes")).status_code == 403
    assert PublishRun.objects.count() == runs


def test_outsiders_get_404_everywhere(client: Client, two: dict[str, Any]) -> None:
    as_user(client, two["outsider"])
    run = PublishRun.objects.filter(organization=two["acme"]).first()
    assert run is not None
    for address in (
        url("web-publishes"),
        url("web-releases"),
        url("web-publish-run", run.pk),
        url("web-publish-run-progress", run.pk),
        url("web-team-releases", TEAM),
        url("web-release-rollback", TEAM) + "?to=1",
    ):
        assert client.get(address).status_code == 404, address
    for name in ("web-rollout-start", "web-rollout-promote", "web-rollout-abort"):
        assert client.post(url(name, TEAM), {"percent": "30"}).status_code == 404
    assert client.post(url("web-release-rollback", TEAM), {"to_revision": "1"}).status_code == 404
    assert client.post(url("web-publishes")).status_code == 404


def test_unknown_run_and_team_are_404(client: Client, world: World) -> None:
    as_user(client, world.ids["people"]["admin"])
    assert client.get(url("web-publish-run", 999999)).status_code == 404
    assert client.get(url("web-publish-run-progress", 999999)).status_code == 404
    assert client.get(url("web-team-releases", "no/such/team")).status_code == 404
    assert client.get(url("web-release-rollback", TEAM) + "?to=99").status_code == 404
    assert client.get(url("web-release-rollback", TEAM) + "?to=x").status_code == 404


def test_publish_now_follows_the_run_until_it_has_succeeded(
    client: Client,
    world: World,
    django_assert_max_num_queries: Any,
) -> None:
    people = world.ids["people"]
    # The world's change set, approved: the run publishes it.
    change_set = ChangeSet.objects.get(pk=world.ids["change_set"])
    change_set = change_set_submit(actor=acting(people["admin"]), change_set=change_set)
    if change_set.status == "submitted":  # where the organisation requires approval
        change_set_approve(actor=acting(people["owner"]), change_set=change_set)
    as_user(client, people["admin"])

    response = client.post(url("web-publishes"))
    run = PublishRun.objects.filter(organization=people["acme"]).order_by("-id").first()
    assert run is not None and run.status == "pending"
    assert response.status_code == 302
    assert response["Location"] == url("web-publish-run", run.pk)

    page = client.get(response["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert f"Publish run {run.pk}" in text and "is queued for a worker" in text
    assert 'hx-trigger="every 1s"' in text
    assert url("web-publish-run-progress", run.pk) in text
    with django_assert_max_num_queries(9):
        pending = client.get(url("web-publish-run-progress", run.pk), HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 1s"' in pending.content.decode()
    assert "waiting for a worker" in pending.content.decode()

    publish_run_execute(run_id=run.pk)  # what the worker does

    with django_assert_max_num_queries(11):
        done = client.get(url("web-publish-run-progress", run.pk), HTTP_HX_REQUEST="true")
    fragment = done.content.decode()
    assert "Succeeded" in fragment
    assert "hx-trigger" not in fragment and "hx-get" not in fragment
    assert "1 release made" in fragment
    assert f"{TEAM}<span" in fragment and "revision 2" in fragment
    assert f"Change set {change_set.pk}" in fragment
    assert "hx-trigger" not in client.get(url("web-publish-run", run.pk)).content.decode()
    # The world's first run made a release for every team: the same queries as for one.
    first = world.ids["publish_run"]
    with django_assert_max_num_queries(11):
        many = client.get(url("web-publish-run-progress", first)).content.decode()
    assert "revision 1" in many and "batch" in many and TEAM in many


def test_a_failed_run_shows_its_error(client: Client, world: World) -> None:
    people = world.ids["people"]
    run = publish_run_request(organization=people["acme"], actor=OPERATOR)
    # What a worker records when a publish fails (publishing._failed).
    PublishRun.objects.filter(pk=run.pk).update(status="failed", error="the signing key is gone")
    as_user(client, people["admin"])
    text = client.get(url("web-publish-run", run.pk)).content.decode()
    assert "The run failed" in text and "the signing key is gone" in text
    assert "hx-trigger" not in text
    listed = client.get(url("web-publishes")).content.decode()
    assert "the signing key is gone" in listed


def many_revisions(acme: Any, count: int) -> None:
    """`count` more stored revisions of the team, copies of revision 1 (not current): enough
    history to page through without publishing each."""
    first = Release.objects.get(organization=acme, team_path=TEAM, revision=1)
    top = Release.objects.filter(organization=acme, team_path=TEAM).count()
    copies = []
    for n in range(count):
        copy = Release.objects.get(pk=first.pk)
        copy.pk, copy.revision, copy.current, copy.previous = None, top + n + 1, False, None
        copies.append(copy)
    Release.objects.bulk_create(copies)


def test_all_releases_page_pages_and_filters_by_run(client: Client, two: dict[str, Any]) -> None:
    as_user(client, two["admin"])
    first_run = PublishRun.objects.filter(organization=two["acme"]).order_by("id").first()
    assert first_run is not None
    filtered = client.get(url("web-releases") + f"?run={first_run.pk}").content.decode()
    assert "batch" in filtered and "revision 2" not in filtered
    many_revisions(two["acme"], PAGE_SIZE)
    response = client.get(url("web-releases"))
    text = response.content.decode()
    assert f"revision {PAGE_SIZE + 2}" in text
    assert "Next page of releases" in text
    assert client.get(url("web-releases") + "?run=abc").status_code == 200


# --- a team's releases ----------------------------------------------------------------------


def test_team_history_and_default_diff(
    client: Client, two: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    as_user(client, two["admin"])
    with django_assert_max_num_queries(16):
        response = client.get(url("web-team-releases", TEAM))
    assert response.status_code == 200
    text = response.content.decode()
    assert "Releases of platform/ci" in text
    assert "Revision 2, made" in text
    assert "From revision 1 to revision 2." in text
    assert "Codex " in text
    assert '<span class="del">-model = &quot;codex-ci&quot;' in text
    assert '<span class="add">+model = &quot;gpt-5.5&quot;' in text
    assert "Roll back to revision 1" in text
    assert "Start a staged rollout" in text
    # The revisions are always "revision N", never the services' short form.
    assert ">r1<" not in text and "r1/" not in text


def test_diff_of_chosen_revisions_and_a_bad_choice(client: Client, two: dict[str, Any]) -> None:
    as_user(client, two["admin"])
    text = client.get(url("web-team-releases", TEAM) + "?old=2&new=1").content.decode()
    assert "From revision 2 to revision 1." in text
    assert '<span class="add">+model = &quot;codex-ci&quot;' in text
    bad = client.get(url("web-team-releases", TEAM) + "?old=99&new=1").content.decode()
    assert "From: Select a valid choice" in bad
    assert "From revision" not in bad


def test_history_pages_by_revision(
    client: Client, two: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    as_user(client, two["admin"])
    with django_assert_max_num_queries(16) as few:
        client.get(url("web-team-releases", TEAM))
    many_revisions(two["acme"], PAGE_SIZE + 5)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url("web-team-releases", TEAM))
    text = response.content.decode()
    newest = PAGE_SIZE + 7
    assert f"<td>revision {newest}</td>" in text
    assert "<td>revision 7</td>" not in text
    assert "Next page of the history" in text
    following = client.get(url("web-team-releases", TEAM) + f"?after={newest - PAGE_SIZE + 1}")
    rest = following.content.decode()
    assert "<td>revision 7</td>" in rest and "<td>revision 1</td>" in rest
    assert f"<td>revision {newest}</td>" not in rest


def test_rollback_makes_a_new_revision_with_the_old_files(
    client: Client, two: dict[str, Any]
) -> None:
    as_user(client, two["admin"])
    confirm = client.get(url("web-release-rollback", TEAM) + "?to=1")
    assert confirm.status_code == 200
    text = confirm.content.decode()
    assert "new revision, revision 3" in text and "files of revision 1" in text

    response = client.post(
        url("web-release-rollback", TEAM), {"to_revision": "1", "reason": "codex-ci is back"}
    )
    assert response.status_code == 302
    assert response["Location"] == url("web-team-releases", TEAM)
    assert releases_of(two["acme"]) == [(1, False, 100), (2, False, 100), (3, True, 100)]
    history = client.get(response["Location"]).content.decode()
    assert "revision 3 of platform/ci now carries the files of revision 1" in history
    assert "rollback to the files of revision 1" in history
    assert "Revision 3, made" in history


def test_a_refused_rollback_says_why_and_stores_nothing(
    client: Client, two: dict[str, Any]
) -> None:
    as_user(client, two["admin"])
    # Revision 2 is current: the same files, nothing to roll back.
    assert (
        "nothing to roll back"
        in client.get(url("web-release-rollback", TEAM) + "?to=2").content.decode()
    )
    response = client.post(
        url("web-release-rollback", TEAM), {"to_revision": "2", "reason": "typed by hand"}
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "already serves the content of revision 2" in text
    assert "typed by hand" in text  # the input is kept
    assert releases_of(two["acme"]) == [(1, False, 100), (2, True, 100)]
    too_long = client.post(
        url("web-release-rollback", TEAM), {"to_revision": "1", "reason": "x" * 2001}
    )
    assert too_long.status_code == 400
    assert "at most 2000 characters" in too_long.content.decode()
    assert releases_of(two["acme"]) == [(1, False, 100), (2, True, 100)]


def test_staged_rollout_start_promote_then_abort_another(
    client: Client,
    two: dict[str, Any],
    world: World,
    django_assert_max_num_queries: Any,
) -> None:
    acme = two["acme"]
    as_user(client, two["admin"])
    response = client.post(url("web-rollout-start", TEAM), {"percent": "30"})
    assert response.status_code == 302
    assert releases_of(acme) == [(1, False, 100), (2, True, 30)]
    device_report_record(
        device_id=world.ids["device"],
        applied_revision=2,
        codex_version="0.169.0",
        os="linux",
        agent_version="1.0",
        errors=[],
    )
    with django_assert_max_num_queries(17):
        page = client.get(url("web-team-releases", TEAM))
    text = page.content.decode()
    assert "now reaches 30 % of the devices" in text
    assert "Staged rollout of revision 2" in text
    assert "rolling out to 30&nbsp;%" in text
    assert 'value="1" max="1"' in text  # the one device has revision 2
    assert "Promote the rollout" in text and "Abort the rollout" in text

    assert client.post(url("web-rollout-promote", TEAM), {"percent": "100"}).status_code == 302
    assert releases_of(acme) == [(1, False, 100), (2, True, 100)]
    assert "now reaches every device" in client.get(url("web-team-releases", TEAM)).content.decode()

    publish(acme, THREE_TEAMS)  # revision 3: the first files again
    assert client.post(url("web-rollout-start", TEAM), {"percent": "50"}).status_code == 302
    assert client.post(url("web-rollout-abort", TEAM)).status_code == 302
    assert releases_of(acme) == [(1, False, 100), (2, True, 100), (3, False, 50)]
    after = client.get(url("web-team-releases", TEAM)).content.decode()
    assert "Rollout aborted: revision 2 is current again" in after
    assert "aborted</span>" in after


def test_rollout_refusals_show_beside_the_percentage(client: Client, two: dict[str, Any]) -> None:
    acme = two["acme"]
    as_user(client, two["admin"])
    full = client.post(url("web-rollout-start", TEAM), {"percent": "100"})
    assert full.status_code == 400
    text = full.content.decode()
    assert 'id="start-percent-errors"' in text and "100 is not between 1 and 99" in text
    assert 'value="100"' in text
    assert "not a number" not in text
    junk = client.post(url("web-rollout-start", TEAM), {"percent": "lots"})
    assert junk.status_code == 400 and "Enter a whole number" in junk.content.decode()
    assert releases_of(acme) == [(1, False, 100), (2, True, 100)]

    client.post(url("web-rollout-start", TEAM), {"percent": "40"})
    narrower = client.post(url("web-rollout-promote", TEAM), {"percent": "20"})
    assert narrower.status_code == 400
    assert "20 is not between 41 and 100" in narrower.content.decode()
    assert releases_of(acme) == [(1, False, 100), (2, True, 40)]
    client.post(url("web-rollout-promote", TEAM), {"percent": "100"})
    nothing = client.post(url("web-rollout-abort", TEAM))
    assert nothing.status_code == 400
    assert "is not in a staged rollout" in nothing.content.decode()
    assert "revision 2 of team" in nothing.content.decode()


@pytest.mark.parametrize("role", ["auditor", Role.VIEWER, Role.TEAM_EDITOR])
def test_readers_see_no_release_controls_and_forged_ones_are_refused(
    client: Client, two: dict[str, Any], role: str
) -> None:
    as_user(client, two[role])
    text = client.get(url("web-team-releases", TEAM)).content.decode()
    assert "From revision 1 to revision 2." in text  # they may read
    for control in ("Roll back to", "Start a staged rollout", "Promote", "Abort"):
        assert control not in text
    assert client.get(url("web-release-rollback", TEAM) + "?to=1").status_code == 403
    assert client.post(url("web-release-rollback", TEAM), {"to_revision": "1"}).status_code == 403
    for name in ("web-rollout-start", "web-rollout-promote", "web-rollout-abort"):
        assert client.post(url(name, TEAM), {"percent": "30"}).status_code == 403
    assert releases_of(two["acme"]) == [(1, False, 100), (2, True, 100)]


def test_a_team_with_one_revision_has_nothing_to_compare_or_roll_out(
    client: Client,
    world: World,
) -> None:
    as_user(client, world.ids["people"]["admin"])
    text = client.get(url("web-team-releases", TEAM)).content.decode()
    assert "only one revision" in text
    assert "Start a staged rollout" not in text
    assert "Roll back to" not in text
