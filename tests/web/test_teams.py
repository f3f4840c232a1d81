"""The team tree: path order and depth, stored validation state, devices per team, search and
filters in SQL, keyset pages at a fixed query count; creating, renaming and deleting teams into
the editor's unpublished changes, moving a team after seeing its impact; and controls offered,
and writes allowed, only where the person may edit."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import change_set_draft_of
from policyhub.policies import document
from policyhub.policies.models import TeamCheck
from policyhub.policies.services import policy_apply
from policyhub.teams.models import Team
from tests.api.conftest import World
from tests.conftest import OPERATOR, THREE_TEAMS, make_policy

pytestmark = [pytest.mark.django_db]

TREE = "/orgs/acme/teams/"
NEW = "/orgs/acme/teams/-/new/"
# Session and user, organisation and membership, endpoints, the page of teams, their devices,
# the viewer's unpublished changes; plus the session's save (three) on a first request.
MAX_QUERIES = 12

# The world's three teams, a third level, and a team whose requirement earns a warning.
TREE_POLICY = (
    THREE_TEAMS
    + """
[teams."platform/ci/nightly"]
name = "Nightly"
[teams.strict.requirements]
cli_auth_credentials_store = "keyring"
"""
)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def person(world: World, name: str) -> Any:
    return world.ids["people"][name]


def acme(world: World) -> Any:
    return world.ids["people"]["acme"]


def paths(response: Any) -> list[str]:
    """The team paths a tree page lists, in order."""
    return re.findall(r"<td><code>([^<]+)</code></td>", response.content.decode())


def with_tree(world: World) -> None:
    policy_apply(organization=acme(world), wanted=make_policy(TREE_POLICY), actor=OPERATOR)


def draft_document(world: World, user: str) -> dict[str, Any]:
    draft = change_set_draft_of(acme(world), person(world, user).pk)
    assert draft is not None
    return document.to_dict(document.parse(draft.document))


# --- the tree -----------------------------------------------------------------------------------


def test_the_tree_lists_teams_in_path_order_indented_with_state_and_devices(world: World) -> None:
    with_tree(world)
    response = signed_in(person(world, "admin")).get(TREE)
    html = response.content.decode()
    assert response.status_code == 200
    assert paths(response) == ["batch", "platform", "platform/ci", "platform/ci/nightly", "strict"]
    assert (
        '<td class="depth-2"><a href="/orgs/acme/teams/platform/ci/nightly/">Nightly</a></td>'
        in html
    )
    assert '<td class="depth-1"><a href="/orgs/acme/teams/platform/ci/">ci</a></td>' in html
    assert '<td class="depth-0"><a href="/orgs/acme/teams/batch/">batch</a></td>' in html
    row = re.search(r"<code>strict</code></td>\s*<td>(.*?)</td>", html, re.S)
    assert row and '<span class="warning">1 warning</span>' in row.group(1)
    assert html.count('<span class="ok">valid</span>') == 4
    # platform/ci holds the world's one device.
    assert '<a href="/orgs/acme/devices/?team=platform/ci">1<span class="visually-hidden">' in html
    assert 'href="/orgs/acme/teams/-/new/">Add a team</a>' in html
    assert 'href="/orgs/acme/teams/strict/-/rename/">Rename' in html


def test_search_matches_names_and_paths(world: World) -> None:
    with_tree(world)
    client = signed_in(person(world, "viewer"))
    assert paths(client.get(TREE, {"q": "ci"})) == ["platform/ci", "platform/ci/nightly"]
    assert paths(client.get(TREE, {"q": "NIGHT"})) == ["platform/ci/nightly"]
    empty = client.get(TREE, {"q": "nothing-like-it"})
    assert paths(empty) == [] and "No team matches these filters." in empty.content.decode()


def test_the_state_filter_reads_the_stored_validation(world: World) -> None:
    with_tree(world)
    client = signed_in(person(world, "viewer"))
    assert paths(client.get(TREE, {"state": "warnings"})) == ["strict"]
    assert paths(client.get(TREE, {"state": "errors"})) == []
    assert paths(client.get(TREE, {"state": "valid"})) == [
        "batch",
        "platform",
        "platform/ci",
        "platform/ci/nightly",
    ]
    # Rows as a change of the rules would leave them until the next write.
    TeamCheck.objects.filter(team__path="batch").update(errors=2, warnings=1)
    response = client.get(TREE, {"state": "errors"})
    assert paths(response) == ["batch"]
    assert '<span class="error">2 errors</span>, <span class="warning">1 warning</span>' in (
        response.content.decode()
    )


def test_the_endpoint_filter_lists_the_teams_using_it(world: World) -> None:
    with_tree(world)
    client = signed_in(person(world, "viewer"))
    html = client.get(TREE).content.decode()
    assert '<option value="bedrock" >bedrock</option>' in html
    assert paths(client.get(TREE, {"endpoint": "bedrock"})) == ["batch"]
    assert paths(client.get(TREE, {"endpoint": "azure-eng"})) == [
        "platform/ci",
        "platform/ci/nightly",
    ]
    assert paths(client.get(TREE, {"endpoint": "azure-eng", "q": "nightly"})) == [
        "platform/ci/nightly"
    ]
    refused = client.get(TREE, {"endpoint": "no-such"})
    assert paths(refused) == [] and "Filters not applied" in refused.content.decode()


def test_pages_of_teams_cover_the_tree_once_at_a_fixed_query_count(
    world: World, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(person(world, "admin"))
    with CaptureQueriesContext(connection) as small:
        client.get(TREE)
    many = THREE_TEAMS + "".join(f"[teams.t{i:03}]\n" for i in range(120))
    policy_apply(organization=acme(world), wanted=make_policy(many), actor=OPERATOR)
    seen: list[str] = []
    url, pages = TREE, 0
    while url:
        with django_assert_max_num_queries(MAX_QUERIES):
            response = client.get(url)
        seen += paths(response)
        found = re.search(r'<a href="(\?[^"]*)" rel="next">', response.content.decode())
        url = TREE + found.group(1).replace("&amp;", "&") if found else ""
        pages += 1
    assert pages == 3
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 123
    with CaptureQueriesContext(connection) as large:
        client.get(TREE)
    assert len(large) == len(small)


def test_filters_are_kept_from_page_to_page(world: World) -> None:
    many = THREE_TEAMS + "".join(f"[teams.t{i:03}]\n" for i in range(60))
    policy_apply(organization=acme(world), wanted=make_policy(many), actor=OPERATOR)
    client = signed_in(person(world, "viewer"))
    first = client.get(TREE, {"q": "t0"})
    assert len(paths(first)) == 50
    found = re.search(r'<a href="(\?[^"]*)" rel="next">', first.content.decode())
    assert found and "q=t0" in found.group(1)
    second = client.get(TREE + found.group(1).replace("&amp;", "&"))
    assert paths(second) == [f"t0{i}" for i in range(50, 60)]


def test_an_empty_organisation_says_it_has_no_team(cast: dict[str, Any]) -> None:
    html = signed_in(cast["outsider"]).get("/orgs/other/teams/").content.decode()
    assert "This organisation has no team yet." in html and "<table" not in html


# --- who is offered what ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["auditor", "viewer", "approver"])
def test_readers_are_offered_no_edit_control_and_forged_posts_are_refused(
    world: World, role: str
) -> None:
    client = signed_in(person(world, role))
    html = client.get(TREE).content.decode()
    assert "Add a team" not in html and "/-/rename/" not in html and "/-/delete/" not in html
    assert "/-/move/" not in html
    assert client.get(NEW).status_code == 403
    assert client.post(NEW, {"slug": "forged"}).status_code == 403
    for action in ("rename", "move", "delete"):
        url = f"/orgs/acme/teams/batch/-/{action}/"
        assert client.get(url).status_code == 403
        assert client.post(url, {"name": "Forged", "parent": ""}).status_code == 403
    assert Team.objects.get(organization__slug="acme", path="batch").name == "batch"
    assert not ChangeSet.objects.filter(author=person(world, role)).exists()


def test_an_outsider_gets_404_everywhere(world: World) -> None:
    client = signed_in(person(world, "outsider"))
    for url in (TREE, NEW, "/orgs/acme/teams/batch/-/rename/", "/orgs/acme/teams/batch/-/move/"):
        assert client.get(url).status_code == 404
    assert client.post("/orgs/acme/teams/batch/-/delete/").status_code == 404


def test_a_missing_team_is_a_404(world: World) -> None:
    client = signed_in(person(world, "admin"))
    for action in ("rename", "move", "delete"):
        assert client.get(f"/orgs/acme/teams/nope/-/{action}/").status_code == 404


def test_a_team_editor_is_offered_controls_only_inside_their_subtree(world: World) -> None:
    editor = signed_in(person(world, "team_editor"))
    html = editor.get(TREE).content.decode()
    assert 'href="/orgs/acme/teams/platform/-/rename/"' in html
    assert 'href="/orgs/acme/teams/platform/ci/-/move/"' in html
    assert "/orgs/acme/teams/batch/-/" not in html
    assert editor.get("/orgs/acme/teams/batch/-/rename/").status_code == 403
    assert editor.post("/orgs/acme/teams/batch/-/rename/", {"name": "Mine"}).status_code == 403
    # A new team outside the subtree: the service refuses it.
    assert editor.post(NEW, {"parent": "", "slug": "rogue"}).status_code == 403
    assert editor.post(NEW, {"parent": "batch", "slug": "rogue"}).status_code == 403
    # Moving out of the subtree: the service refuses it too.
    moved = editor.post("/orgs/acme/teams/platform/ci/-/move/", {"parent": "batch"})
    assert moved.status_code == 403
    assert change_set_draft_of(acme(world), person(world, "team_editor").pk) is None
    # Inside it, the edit goes into their own unpublished changes.
    assert editor.get(NEW).content.decode().count('value="platform"') == 1
    response = editor.post(NEW, {"parent": "platform", "slug": "tools", "name": "Tools"})
    assert response.status_code == 302
    assert draft_document(world, "team_editor")["teams"]["platform/tools"] == {"name": "Tools"}


# --- create, rename, delete into the unpublished changes -----------------------------------------


def test_creating_a_team_puts_it_into_the_unpublished_changes(world: World) -> None:
    client = signed_in(person(world, "admin"))
    form = client.get(NEW, {"parent": "platform"}).content.decode()
    assert '<label for="id_slug">Slug</label>' in form and 'value="platform"' in form
    response = client.post(
        NEW,
        {"parent": "platform/ci", "slug": "nightly", "name": "Nightly", "reason": "new job"},
        follow=True,
    )
    draft = change_set_draft_of(acme(world), person(world, "admin").pk)
    assert draft is not None
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == TREE
    assert (
        f'Team platform/ci/nightly added into your unpublished changes: <a href="/orgs/acme/changes/{draft.pk}/">change set {draft.pk}</a>'
        in html
    )
    assert draft_document(world, "admin")["teams"]["platform/ci/nightly"] == {"name": "Nightly"}
    assert "+ team platform/ci/nightly" in draft.plan
    # Not live until published.
    assert not Team.objects.filter(path="platform/ci/nightly").exists()
    assert f'href="/orgs/acme/changes/{draft.pk}/">change set {draft.pk}</a>' in html


def test_a_bad_slug_is_shown_beside_its_field_and_nothing_is_stored(world: World) -> None:
    client = signed_in(person(world, "owner"))
    response = client.post(NEW, {"parent": "platform", "slug": "Bad Slug", "name": "Keep me"})
    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(
        r'id="id_slug"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="id_slug"', html
    )
    assert "use lowercase letters, digits and" in html
    assert 'value="Keep me"' in html and 'value="Bad Slug"' in html
    assert change_set_draft_of(acme(world), person(world, "owner").pk) is None


def test_a_refusal_of_the_service_is_shown_beside_the_field_it_names(world: World) -> None:
    client = signed_in(person(world, "owner"))
    response = client.post(NEW, {"parent": "nowhere", "slug": "tools", "name": "Tools"})
    html = response.content.decode()
    assert "Refused:" in html
    parent_field = re.search(r'<label for="id_parent">.*?</div>', html, re.S)
    assert parent_field and "no team &#x27;nowhere&#x27;" in parent_field.group(0)
    assert 'value="Tools"' in html
    exists = client.post(NEW, {"parent": "platform", "slug": "ci"}).content.decode()
    slug_field = re.search(r'<label for="id_slug">.*?</div>', exists, re.S)
    assert slug_field and "team &#x27;platform/ci&#x27; exists" in slug_field.group(0)
    assert change_set_draft_of(acme(world), person(world, "owner").pk) is None


def test_renaming_a_team_puts_the_new_name_into_the_unpublished_changes(world: World) -> None:
    client = signed_in(person(world, "owner"))
    url = "/orgs/acme/teams/batch/-/rename/"
    assert 'value="batch"' in client.get(url).content.decode()
    response = client.post(url, {"name": "Batch jobs"}, follow=True)
    assert (
        "Team batch renamed to Batch jobs into your unpublished changes"
        in response.content.decode()
    )
    assert draft_document(world, "owner")["teams"]["batch"]["name"] == "Batch jobs"
    assert Team.objects.get(organization__slug="acme", path="batch").name == "batch"
    empty = client.post(url, {"name": ""})
    assert "This field is required." in empty.content.decode()


def test_the_delete_page_shows_the_impact_and_what_refuses_it(world: World) -> None:
    with_tree(world)
    html = (
        signed_in(person(world, "admin"))
        .get("/orgs/acme/teams/platform/-/delete/")
        .content.decode()
    )
    assert "3 teams in the subtree:" in html
    assert (
        "<code>platform</code>, <code>platform/ci</code>, <code>platform/ci/nightly</code>" in html
    )
    assert "1 device enrolled" in html
    assert "1 team editor</strong> scoped inside it" in html and "(<code>platform</code>)" in html
    assert 'href="/orgs/acme/releases/platform/">release history of platform</a>' in html
    assert "Refused as things stand:" in html and "devices are enrolled" in html


def test_deleting_a_team_puts_the_deletion_into_the_unpublished_changes(world: World) -> None:
    client = signed_in(person(world, "owner"))
    url = "/orgs/acme/teams/batch/-/delete/"
    page = client.get(url).content.decode()
    assert "1 team in the subtree:" in page and "Refused as things stand" not in page
    assert 'data-confirm="Delete team batch' in page
    response = client.post(url, {"reason": "no more batch"}, follow=True)
    assert "Deletion of team batch into your unpublished changes" in response.content.decode()
    assert "batch" not in draft_document(world, "owner")["teams"]
    assert Team.objects.filter(organization__slug="acme", path="batch").exists()


def test_deleting_a_team_with_devices_is_refused_with_the_reason(world: World) -> None:
    client = signed_in(person(world, "owner"))
    response = client.post("/orgs/acme/teams/platform/ci/-/delete/", {"reason": ""})
    html = response.content.decode()
    assert response.status_code == 400
    assert "Refused:" in html and "devices are enrolled" in html
    assert change_set_draft_of(acme(world), person(world, "owner").pk) is None


# --- move ---------------------------------------------------------------------------------------


def test_the_move_page_shows_the_impact_and_the_move_happens_at_once(world: World) -> None:
    client = signed_in(person(world, "owner"))
    url = "/orgs/acme/teams/batch/-/move/"
    page = client.get(url).content.decode()
    assert "1 team in the subtree:" in page and "No device is enrolled in the subtree." in page
    assert "It has releases" in page
    response = client.post(url, {"parent": "platform", "reason": "reorganised"}, follow=True)
    assert "Team batch moved to platform/batch." in response.content.decode()
    assert Team.objects.get(organization__slug="acme", slug="batch").path == "platform/batch"
    assert "platform/batch" in paths(response)


def test_a_move_into_its_own_subtree_is_refused_beside_the_parent_field(world: World) -> None:
    client = signed_in(person(world, "owner"))
    response = client.post("/orgs/acme/teams/platform/-/move/", {"parent": "platform/ci"})
    html = response.content.decode()
    parent_field = re.search(r'<label for="id_parent">.*?</div>', html, re.S)
    assert parent_field and "lies inside the moved team" in parent_field.group(0)
    assert 'value="platform/ci"' in html
    assert Team.objects.get(organization__slug="acme", slug="platform").path == "platform"


def test_a_move_with_devices_enrolled_shows_why_it_is_refused(world: World) -> None:
    client = signed_in(person(world, "owner"))
    url = "/orgs/acme/teams/platform/ci/-/move/"
    assert "Refused as things stand:" in client.get(url).content.decode()
    html = client.post(url, {"parent": "batch"}).content.decode()
    assert "Refused:" in html and "devices are enrolled" in html
    assert Team.objects.filter(organization__slug="acme", path="platform/ci").exists()
