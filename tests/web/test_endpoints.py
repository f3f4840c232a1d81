"""The provider endpoint pages: the list with where each endpoint is used (counted in SQL), a
form per kind with exactly that kind's fields, edits collected in the editor's unpublished
change set with refusals beside their fields, and what each role is offered and allowed."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from policyhub.accounts.models import Role
from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import change_set_draft_of, change_set_endpoints
from policyhub.changes.services import change_set_discard
from policyhub.policies import document
from policyhub.policies.models import ProviderEndpoint
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from tests.api.conftest import World
from tests.conftest import OPERATOR, acting

pytestmark = [pytest.mark.django_db]

LIST = "/orgs/acme/endpoints/"
NEW = "/orgs/acme/endpoints/-/new/"
AZURE = "/orgs/acme/endpoints/azure-eng/"

AZURE_CI = {
    "kind": "azure",
    "name": "azure-ci",
    "provider_id": "azure-ci",
    "resource_url": "https://acme-ci.openai.azure.com/openai/v1",
    "env_key": "AZURE_CI_KEY",
    "deployments": "gpt-5.5\ncodex-ci",
    "reason": "a resource for CI",
}


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def people(world: World) -> dict[str, Any]:
    return dict(world.ids["people"])


def fresh_draft(world: World) -> None:
    """The admin starts without a draft: the world's change set is theirs."""
    admin = people(world)["admin"]
    change_set_discard(
        actor=acting(admin), change_set=ChangeSet.objects.get(pk=world.ids["change_set"])
    )


def admin_draft(world: World) -> ChangeSet | None:
    admin = people(world)["admin"]
    return change_set_draft_of(people(world)["acme"], admin.pk)


# --- the list -----------------------------------------------------------------------------------


def test_list_shows_each_endpoint_with_its_kind_id_and_uses(
    world: World, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(people(world)["admin"])
    with django_assert_max_num_queries(10):
        response = client.get(LIST)
    assert response.status_code == 200
    text = response.content.decode()
    rows = {
        name: text.split(f">{name}</a>", 1)[1].split("</tr>", 1)[0]
        for name in ("azure-eng", "bedrock", "oci", "openai")
    }
    assert "Azure OpenAI" in rows["azure-eng"] and "<code>azure</code>" in rows["azure-eng"]
    # The root's default, platform/ci's and batch's: one node each; oci is named by nobody.
    assert "1 node, 0 profiles" in rows["openai"]
    assert "1 node, 0 profiles" in rows["azure-eng"]
    assert "1 node, 0 profiles" in rows["bedrock"]
    assert "0 nodes, 0 profiles" in rows["oci"]
    assert "Add an endpoint" in text


def test_profiles_naming_an_endpoint_count_as_uses(world: World) -> None:
    acme = people(world)["acme"]
    wanted = document.to_dict(org_policy(acme))
    wanted["teams"]["batch"]["profiles"] = {
        "fast": {"model": "gpt-5.5", "model_provider": "oci"},
    }
    policy_apply(organization=acme, wanted=document.from_dict(wanted), actor=OPERATOR)
    text = signed_in(people(world)["viewer"]).get(LIST).content.decode()
    assert "0 nodes, 1 profile" in text.split(">oci</a>", 1)[1].split("</tr>", 1)[0]
    page = signed_in(people(world)["viewer"]).get("/orgs/acme/endpoints/oci/").content.decode()
    assert "Team batch" in page and "<code>fast</code>" in page


def test_list_pages_by_name_at_a_fixed_query_count(
    world: World, django_assert_max_num_queries: Any
) -> None:
    acme = people(world)["acme"]
    wanted = document.to_dict(org_policy(acme))
    for index in range(60):
        wanted["providers"][f"zz-{index:02d}"] = {
            "kind": "amazon-bedrock",
            "region": "us-west-2",
            "provider_id": "amazon-bedrock",
        }
    policy_apply(organization=acme, wanted=document.from_dict(wanted), actor=OPERATOR)
    client = signed_in(people(world)["auditor"])
    with django_assert_max_num_queries(10):
        first = client.get(LIST)
    text = first.content.decode()
    assert ">azure-eng</a>" in text and ">zz-45</a>" in text and ">zz-46</a>" not in text
    assert 'href="?after=zz-45">Next endpoints' in text
    with django_assert_max_num_queries(10):
        second = client.get(LIST + "?after=zz-45").content.decode()
    assert ">zz-46</a>" in second and ">zz-59</a>" in second and ">azure-eng</a>" not in second
    assert "Next endpoints" not in second and "First endpoints" in second


def test_auditor_and_viewer_are_offered_no_change(world: World) -> None:
    for role in ("auditor", Role.VIEWER):
        client = signed_in(people(world)[role])
        listed = client.get(LIST).content.decode()
        assert "Add an endpoint" not in listed
        page = client.get(AZURE).content.decode()
        assert "Edit endpoint" not in page and "Delete endpoint" not in page
        assert '<form method="post" action="/orgs/' not in page


@pytest.mark.parametrize("role", ["auditor", Role.VIEWER, Role.APPROVER, Role.TEAM_EDITOR])
def test_a_forged_change_is_refused_with_403(world: World, role: str) -> None:
    client = signed_in(people(world)[role])
    assert client.post(NEW, AZURE_CI).status_code == 403
    assert client.post(AZURE + "-/edit/", {**AZURE_CI, "name": ""}).status_code == 403
    assert client.post(AZURE + "-/delete/", {"reason": "x"}).status_code == 403
    assert client.get(NEW).status_code == 403
    assert not ProviderEndpoint.objects.filter(name="azure-ci").exists()
    assert ChangeSet.objects.filter(author=people(world)[role]).count() == 0


def test_team_editor_sees_endpoints_but_no_edit_control(world: World) -> None:
    client = signed_in(people(world)[Role.TEAM_EDITOR])
    assert "Add an endpoint" not in client.get(LIST).content.decode()
    assert "Edit endpoint" not in client.get(AZURE).content.decode()


def test_outsider_gets_404(world: World) -> None:
    client = signed_in(people(world)["outsider"])
    for url in (LIST, NEW, AZURE, AZURE + "-/edit/"):
        assert client.get(url).status_code == 404, url
    assert client.post(AZURE + "-/delete/").status_code == 404


def test_missing_endpoint_is_404(world: World) -> None:
    client = signed_in(people(world)["admin"])
    assert client.get("/orgs/acme/endpoints/nope/").status_code == 404
    assert client.get("/orgs/acme/endpoints/nope/-/edit/").status_code == 404


def test_empty_list_says_so(cast: dict[str, Any]) -> None:
    text = signed_in(cast["admin"]).get(LIST).content.decode()
    assert "No provider endpoints yet" in text


# --- the form per kind ----------------------------------------------------------------------------


def test_the_kind_comes_first_and_its_fields_follow(
    world: World, django_assert_max_num_queries: Any
) -> None:
    client = signed_in(people(world)["admin"])
    text = client.get(NEW).content.decode()
    assert "Choose the kind of endpoint first" in text and 'name="resource_url"' not in text
    with django_assert_max_num_queries(10):
        azure = client.get(NEW + "?kind=azure").content.decode()
    assert 'name="resource_url"' in azure and 'name="deployments"' in azure
    assert 'name="region"' not in azure and 'name="auth_method"' not in azure
    # Credentials are names, never secrets, and the kind says so beside the field.
    assert "never the secret itself" in azure
    assert "as of 2026-11-01" in azure
    # htmx asks for the same page and swaps the form in; the fields are those of the new kind.
    bedrock = client.get(NEW + "?kind=amazon-bedrock", HTTP_HX_REQUEST="true").content.decode()
    assert 'name="region"' in bedrock and 'name="resource_url"' not in bedrock
    assert 'id="endpoint-form"' in bedrock
    # A built-in provider's id is fixed: no field for it.
    assert 'name="provider_id"' not in bedrock


def test_adding_an_endpoint_goes_into_the_unpublished_change_set(world: World) -> None:
    fresh_draft(world)
    client = signed_in(people(world)["admin"])
    response = client.post(NEW, AZURE_CI)
    assert response.status_code == 302 and response["Location"] == "/orgs/acme/endpoints/azure-ci/"
    draft = admin_draft(world)
    assert draft is not None and "+ provider azure-ci" in draft.plan
    assert draft.reason == "a resource for CI"
    endpoint = change_set_endpoints(draft)["azure-ci"]
    assert endpoint.settings["deployments"] == ["gpt-5.5", "codex-ci"]
    assert endpoint.settings["env_key"] == "AZURE_CI_KEY"
    # Not live before it is published.
    assert not ProviderEndpoint.objects.filter(name="azure-ci").exists()
    page = client.get(response["Location"]).content.decode()
    assert "in your unpublished change set" in page and "new in your unpublished change set" in page
    assert "AZURE_CI_KEY" in page
    assert f"change set {draft.pk}" in page
    listed = client.get(LIST).content.decode()
    assert "+ provider azure-ci" in listed


def test_a_refused_field_is_shown_beside_it_and_nothing_is_stored(world: World) -> None:
    draft_before = ChangeSet.objects.get(pk=world.ids["change_set"])
    client = signed_in(people(world)["admin"])
    bad = {**AZURE_CI, "resource_url": "http://acme-ci.openai.azure.com/openai/v1"}
    response = client.post(NEW, bad)
    assert response.status_code == 400
    text = response.content.decode()
    field = text.split('name="resource_url"', 1)[1].split('class="field"', 1)[0]
    assert "must use https" in field
    # What was typed stays.
    assert 'value="AZURE_CI_KEY"' in text and "gpt-5.5\ncodex-ci" in text
    after = ChangeSet.objects.get(pk=world.ids["change_set"])
    assert after.document == draft_before.document and after.plan == draft_before.plan


def test_a_list_item_finding_points_at_its_field(world: World) -> None:
    client = signed_in(people(world)["admin"])
    response = client.post(NEW, {**AZURE_CI, "deployments": "ok\nnot a name!"})
    assert response.status_code == 400
    field = response.content.decode().split('name="deployments"', 1)[1].split('class="field"')[0]
    assert "[1]: " in field


def test_a_map_line_without_equals_is_a_form_error(world: World) -> None:
    client = signed_in(people(world)["admin"])
    gateway = {
        "kind": "custom",
        "name": "gw",
        "provider_id": "gw",
        "base_url": "https://gw.example.com/v1",
        "env_key": "GW_KEY",
        "http_headers": "X-Team platform",
    }
    response = client.post(NEW, gateway)
    assert response.status_code == 400
    assert "is not key=value" in response.content.decode()
    assert "+ provider gw" not in ChangeSet.objects.get(pk=world.ids["change_set"]).plan


def test_a_literal_secret_is_refused(world: World) -> None:
    client = signed_in(people(world)["admin"])
    response = client.post(NEW, {**AZURE_CI, "env_key": "sk-proj-abcdefghijklmnopqrstuvwx"})
    assert response.status_code == 400
    field = response.content.decode().split('name="env_key"', 1)[1].split('class="field"')[0]
    assert "errorlist" in field


def test_a_taken_name_is_refused_beside_the_name(world: World) -> None:
    client = signed_in(people(world)["admin"])
    response = client.post(NEW, {**AZURE_CI, "name": "azure-eng"})
    assert response.status_code == 400
    field = response.content.decode().split('name="name"', 1)[1].split('class="field"')[0]
    assert "is taken" in field


# --- edit and delete ------------------------------------------------------------------------------


def test_editing_starts_from_the_unpublished_version(world: World) -> None:
    fresh_draft(world)
    client = signed_in(people(world)["admin"])
    form = client.get(AZURE + "-/edit/").content.decode()
    assert "https://acme-eng.openai.azure.com/openai" in form
    changed = {
        "kind": "azure",
        "provider_id": "azure",
        "resource_url": "https://acme-eng.openai.azure.com/openai",
        "api_version": "2025-04-01-preview",
        "env_key": "AZURE_OPENAI_API_KEY",
        "deployments": "gpt-5.5\ncodex-ci\ngpt-5.5-mini",
        "capability_web_search": "yes",
    }
    response = client.post(AZURE + "-/edit/", changed)
    assert response.status_code == 302, response.content.decode()[:2000]
    draft = admin_draft(world)
    assert draft is not None
    unpublished = change_set_endpoints(draft)["azure-eng"]
    assert unpublished.settings["deployments"][-1] == "gpt-5.5-mini"
    assert unpublished.capabilities == {"web_search": True}
    # Live stays as it was; the page and the next edit show the unpublished version.
    assert ProviderEndpoint.objects.get(name="azure-eng").capabilities == {}
    page = client.get(AZURE).content.decode()
    assert "gpt-5.5-mini" in page and "unpublished changes" in page
    override = page.split("Web search</th>", 1)[1].split("</tr>", 1)[0]
    assert "<td>no</td><td>yes</td>" in override
    again = client.get(AZURE + "-/edit/").content.decode()
    assert "gpt-5.5-mini" in again
    assert '<option value="yes" selected>yes</option>' in again


def test_deleting_an_endpoint_in_use_is_refused_with_the_uses_named(world: World) -> None:
    client = signed_in(people(world)["admin"])
    before = ChangeSet.objects.get(pk=world.ids["change_set"]).document
    response = client.post(AZURE + "-/delete/", {"reason": "no longer needed"})
    assert response.status_code == 400
    text = response.content.decode()
    assert "Not deleted" in text and "teams.platform/ci" in text
    assert 'value="no longer needed"' in text
    assert ChangeSet.objects.get(pk=world.ids["change_set"]).document == before


def test_deleting_an_unused_endpoint(world: World) -> None:
    fresh_draft(world)
    client = signed_in(people(world)["admin"])
    response = client.post("/orgs/acme/endpoints/oci/-/delete/", {"reason": "unused"})
    assert response.status_code == 302 and response["Location"] == LIST
    draft = admin_draft(world)
    assert draft is not None and draft.plan == ["- provider oci"]
    page = client.get("/orgs/acme/endpoints/oci/").content.decode()
    assert "deletes this endpoint" in page and "Edit endpoint" not in page


def test_where_used_pages_through_nodes(world: World, django_assert_max_num_queries: Any) -> None:
    acme = people(world)["acme"]
    wanted = document.to_dict(org_policy(acme))
    for index in range(55):
        wanted["teams"][f"batch/b{index:02d}"] = {"name": f"B{index}"}
        wanted["teams"][f"batch/b{index:02d}"]["config"] = {
            "model": "openai.gpt-oss-120b",
            "model_provider": "bedrock",
        }
    policy_apply(organization=acme, wanted=document.from_dict(wanted), actor=OPERATOR)
    client = signed_in(people(world)["admin"])
    with django_assert_max_num_queries(12):
        first = client.get("/orgs/acme/endpoints/bedrock/").content.decode()
    assert first.count("Team batch") == 50
    assert "Next nodes" in first
    after = first.split('href="?after=', 1)[1].split('"', 1)[0]
    with django_assert_max_num_queries(12):
        second = client.get(f"/orgs/acme/endpoints/bedrock/?after={after}").content.decode()
    assert second.count("Team batch") == 6 and "Next nodes" not in second
