"""The team page and the organisation's own node: provenance, the node's editor (into the
editor's draft change set), live validation, files per Codex version set, what is published
and the diff to it, devices and child teams; at the cost of one team, whatever the tree."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from policyhub.accounts.models import Organization, Role
from policyhub.changes.models import ChangeSet
from policyhub.changes.services import change_set_draft_edit
from policyhub.policies import document, schema
from policyhub.policies.selectors import org_policy, team_policy
from policyhub.policies.services import policy_apply
from policyhub.policies.validation import validate_team
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.runs import publish_run_request
from policyhub.rendering.render import render_release
from policyhub.teams.models import Team
from policyhub.web import team_forms
from tests.api.conftest import World
from tests.conftest import OPERATOR, acting, make_policy

CI = "/orgs/acme/teams/platform/ci/"
ROOT = "/orgs/acme/policy/"


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def edit_url(path: str, section: str) -> str:
    return f"/orgs/acme/teams/{path}/-/edit/{section}/" if path else f"{ROOT}-/edit/{section}/"


def validate_url(path: str, section: str) -> str:
    return f"/orgs/acme/teams/{path}/-/validate/{section}/"


def draft_of(user: Any) -> ChangeSet | None:
    return ChangeSet.objects.filter(author=user, status=ChangeSet.Status.DRAFT).first()


def draft_team(user: Any, path: str) -> Any:
    draft = draft_of(user)
    assert draft is not None
    return document.parse(draft.document).teams[path].node


def publish(org: Any) -> None:
    run = publish_run_request(organization=org, actor=OPERATOR)
    publish_run_execute(run_id=run.pk)
    assert PublishRun.objects.get(pk=run.pk).status == "succeeded"


def ticked(html: str, name: str) -> list[str]:
    """The values of the ticked checkboxes named `name`."""
    return [
        value
        for value, rest in re.findall(
            rf'<input type="checkbox" name="{name}" value="([^"]*)"([^>]*)>', html
        )
        if " checked" in rest
    ]


def errors_beside(html: str, field_id: str) -> str:
    """The text of the findings shown beside one field."""
    found = re.search(rf'<div id="{re.escape(field_id)}-errors"[^>]*>(.*?)</div>', html, re.S)
    assert found is not None, f"no findings element for {field_id}"
    return found.group(1)


# --- the selector ---------------------------------------------------------------------------

THREE_LEVELS = """
[codex]
min_version = "0.125.0"
max_version = "0.169.0"
[requirements]
allowed_sandbox_modes = ["read-only", "workspace-write"]
allowed_approval_policies = ["on-request", "never", "untrusted"]
[config]
model = "gpt-5.5"
model_provider = "openai"
[profiles.deep]
model_reasoning_effort = "high"
[teams.platform.config]
approval_policy = "on-request"
[teams.platform.mcp_servers.docs]
url = "https://docs.example.com/mcp"
[teams."platform/ci".requirements]
allowed_sandbox_modes = ["read-only"]
[teams."platform/ci".config]
model = "codex-ci"
model_provider = "azure-eng"
web_search = "disabled"
[teams."platform/ci".profiles.fast]
model_reasoning_effort = "low"
[teams."platform/ci/release".config]
sandbox_mode = "read-only"
[teams.batch.config]
model = "openai.gpt-oss-120b"
model_provider = "bedrock"
web_search = "disabled"
[teams."batch/nightly".profiles.deep]
model = "openai.gpt-oss-20b"
"""


def test_team_policy_validates_and_renders_every_team_as_the_whole_policy_does(
    cast: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(THREE_LEVELS), actor=OPERATOR)
    whole = org_policy(cast["acme"])
    assert len(whole.teams) == 5
    for path in ["", *whole.teams]:
        with django_assert_max_num_queries(5):
            one = team_policy(cast["acme"], path)
        assert one is not None
        assert set(one.teams) == {p for p in whole.teams if path == p or path.startswith(f"{p}/")}
        assert validate_team(one, path) == validate_team(whole, path)
        if not path:
            continue
        expected = render_release(whole, path, revision="unpublished")
        got = render_release(one, path, revision="unpublished")
        assert [(v.spans, v.team.files) for v in got.variants] == [
            (v.spans, v.team.files) for v in expected.variants
        ]


def test_team_policy_is_none_for_a_path_that_is_not_a_team(world: World) -> None:
    acme = world.ids["people"]["acme"]
    assert team_policy(acme, "platform/nope") is None
    assert team_policy(acme, "platform//ci") is None
    assert team_policy(acme, "platform/ci") is not None


# --- reading the page -----------------------------------------------------------------------


def test_admin_sees_provenance_files_published_release_devices_and_forms(world: World) -> None:
    html = client_for(world.ids["people"]["admin"]).get(CI).content.decode()
    assert "acme (organisation) → platform → platform/ci" in html
    assert "<code>model</code></td><td><code>codex-ci</code></td><td>platform/ci</td>" in html
    assert "<code>model_provider</code></td><td><code>azure-eng</code></td>" in html
    # Breadcrumbs: the organisation, its own node, each ancestor.
    assert 'href="/orgs/acme/teams/platform/"' in html and 'href="/orgs/acme/policy/"' in html
    assert "Unpublished files for Codex" in html
    assert "Revision 1, published" in html and "Revision 1 → unpublished" in html
    assert "no difference" in html
    assert 'href="/orgs/acme/releases/platform/ci/"' in html
    assert 'href="/orgs/acme/teams/platform/ci/files.zip"' in html
    assert f'href="/orgs/acme/devices/{world.ids["device"]}/"' in html and "laptop" in html
    assert 'href="/orgs/acme/devices/?team=platform/ci"' in html
    for form in ("requirements", "config", "profile-new", "mcp", "rules", "node"):
        assert f'id="form-{form}"' in html
    assert "No team below this one." in html


def test_the_page_never_calls_unpublished_files_draft_or_preview(world: World) -> None:
    html = client_for(world.ids["people"]["admin"]).get(CI).content.decode()
    assert "revision unpublished" in html  # the rendered files' own header
    for word in ("revision draft", "revision preview", "Revision draft", "Preview"):
        assert word not in html


@pytest.mark.parametrize("role", ["auditor", Role.VIEWER, Role.APPROVER])
def test_readers_see_no_edit_control_and_a_forged_post_is_refused(world: World, role: str) -> None:
    user = world.ids["people"][role]
    client = client_for(user)
    html = client.get(CI).content.decode()
    assert "Effective policy" in html
    assert "<form" not in html.split('<main id="content">', 1)[1]
    assert "Edit this node" not in html
    response = client.post(edit_url("platform/ci", "config"), {"config-sandbox_mode": "read-only"})
    assert response.status_code == 403
    assert client.post(validate_url("platform/ci", "config"), {}).status_code == 403
    assert client.post(edit_url("", "config"), {}).status_code == 403
    assert not ChangeSet.objects.filter(author=user).exists()


def test_an_outsider_gets_404_everywhere(world: World) -> None:
    client = client_for(world.ids["people"]["outsider"])
    for url in (CI, ROOT):
        assert client.get(url).status_code == 404
    for url in (CI, ROOT, edit_url("platform/ci", "config"), validate_url("platform/ci", "config")):
        assert client.post(url, {}).status_code == 404


def test_a_team_that_does_not_exist_is_404(world: World) -> None:
    client = client_for(world.ids["people"]["admin"])
    assert client.get("/orgs/acme/teams/platform/nope/").status_code == 404
    assert client.post(edit_url("nope", "config"), {}).status_code == 404
    assert client.post(edit_url("platform/ci", "nonsense"), {}).status_code == 404


def test_a_team_editor_edits_only_inside_their_subtree(world: World) -> None:
    editor = world.ids["people"][Role.TEAM_EDITOR]
    client = client_for(editor)
    assert 'id="form-config"' in client.get(CI).content.decode()
    outside = client.get("/orgs/acme/teams/batch/").content.decode()
    assert 'id="form-config"' not in outside and "Edit this node" not in outside
    assert 'id="form-config"' not in client.get(ROOT).content.decode()
    forged = {"config-model": "x", "config-web_search": "disabled"}
    assert client.post(edit_url("batch", "config"), forged).status_code == 403
    assert client.post(edit_url("", "config"), forged).status_code == 403
    assert client.post("/orgs/acme/teams/batch/-/validate/config/", forged).status_code == 403
    assert not ChangeSet.objects.filter(author=editor).exists()
    # Inside: saved into their draft.
    response = client.post(
        edit_url("platform/ci", "config"),
        {
            "config-model": "gpt-5.5",
            "config-model_provider": "azure-eng",
            "config-web_search": "disabled",
        },
    )
    assert response.status_code == 302
    assert draft_team(editor, "platform/ci").config["model"] == "gpt-5.5"


# --- editing each section -------------------------------------------------------------------


def config_post(**changes: str) -> dict[str, str]:
    """The config form of platform/ci as the page shows it, with `changes`."""
    given = {
        "config-model": "codex-ci",
        "config-model_provider": "azure-eng",
        "config-web_search": "disabled",
    }
    return given | {f"config-{k}": v for k, v in changes.items()}


def test_an_enum_saved_goes_into_the_editors_draft_and_the_live_policy_stays(
    world: World,
) -> None:
    owner = world.ids["people"]["owner"]
    client = client_for(owner)
    response = client.post(edit_url("platform/ci", "config"), config_post(sandbox_mode="read-only"))
    assert response.status_code == 302 and response["Location"].endswith("#edit-config")
    node = draft_team(owner, "platform/ci")
    assert node.config == {
        "model": "codex-ci",
        "model_provider": "azure-eng",
        "web_search": "disabled",
        "sandbox_mode": "read-only",
    }
    assert (
        "sandbox_mode"
        not in org_policy(world.ids["people"]["acme"]).teams["platform/ci"].node.config
    )
    page = client.get(response["Location"]).content.decode()
    assert "Saved into your draft change set" in page
    # The form shows the draft's value, and a banner links to the draft with its plan.
    assert '<option value="read-only" selected>read-only</option>' in page
    draft = draft_of(owner)
    assert draft is not None
    assert f'href="/orgs/acme/changes/{draft.pk}/"' in page
    assert "team platform/ci config.sandbox_mode" in page


def test_the_forms_show_the_editors_draft_and_the_page_the_live_policy(world: World) -> None:
    # The world's admin has a draft change set that sets platform/ci's model to gpt-5.5.
    html = client_for(world.ids["people"]["admin"]).get(CI).content.decode()
    assert "<code>model</code></td><td><code>codex-ci</code></td><td>platform/ci</td>" in html
    assert 'name="config-model" value="gpt-5.5"' in html
    assert f"draft change set {world.ids['change_set']}</a>" in html
    assert "team platform/ci config.model: &#x27;codex-ci&#x27; -&gt; &#x27;gpt-5.5&#x27;" in html
    # Someone without a draft edits the live values.
    html = client_for(world.ids["people"]["owner"]).get(CI).content.decode()
    assert 'name="config-model" value="codex-ci"' in html
    assert "Saving a form starts your own draft change set" in html


def test_an_allow_list_is_checkboxes_and_keeps_the_order_of_preference(world: World) -> None:
    owner = world.ids["people"]["owner"]
    client = client_for(owner)
    html = client.get(ROOT).content.decode()
    assert 'type="checkbox" name="requirements-allowed_approval_policies" value="never"' in html
    response = client.post(
        edit_url("", "requirements"),
        {
            "requirements-allowed_approval_policies": ["never", "on-request"],
            "requirements-allowed_sandbox_modes": ["read-only", "workspace-write"],
            "requirements-allow_login_shell": "false",
        },
    )
    assert response.status_code == 302
    draft = draft_of(owner)
    assert draft is not None
    root = document.parse(draft.document).root
    # In the schema's order for values new to the list.
    assert root.requirements == {
        "allowed_approval_policies": ["on-request", "never"],
        "allowed_sandbox_modes": ["read-only", "workspace-write"],
        "allow_login_shell": False,
    }
    # Unticking one keeps the others where they were; "not set" removes the boolean.
    client.post(
        edit_url("", "requirements"),
        {
            "requirements-allowed_approval_policies": ["never"],
            "requirements-allowed_sandbox_modes": ["workspace-write", "read-only"],
            "requirements-allow_login_shell": "",
        },
    )
    draft.refresh_from_db()
    assert document.parse(draft.document).root.requirements == {
        "allowed_approval_policies": ["never"],
        "allowed_sandbox_modes": ["read-only", "workspace-write"],
    }


def test_an_allow_list_without_read_only_is_refused_beside_its_field(world: World) -> None:
    owner = world.ids["people"]["owner"]
    response = client_for(owner).post(
        edit_url("", "requirements"),
        {"requirements-allowed_sandbox_modes": ["workspace-write"]},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "must contain &#x27;read-only&#x27;" in errors_beside(
        html, "id_requirements-allowed_sandbox_modes"
    )
    # What was typed stays.
    assert ticked(html, "requirements-allowed_sandbox_modes") == ["workspace-write"]
    assert draft_of(owner) is None


def test_a_profile_is_added_edited_and_deleted(world: World) -> None:
    owner = world.ids["people"]["owner"]
    client = client_for(owner)
    # Another change in the draft: one that only undoes its own edits would match the live
    # policy, which the draft service does not store yet.
    client.post(edit_url("platform/ci", "config"), config_post(sandbox_mode="read-only"))
    html = client.get(CI).content.decode()
    # The provider is a select of the organisation's endpoints.
    assert '<option value="bedrock">bedrock</option>' in html
    response = client.post(
        edit_url("platform/ci", "profile"),
        {
            "profile": "",
            "profile-new-name": "deep",
            "profile-new-model": "gpt-5.5",
            "profile-new-model_provider": "azure-eng",
            "profile-new-model_reasoning_effort": "high",
            "profile-new-sandbox_mode": "read-only",
        },
    )
    assert response.status_code == 302 and response["Location"].endswith("#edit-profiles")
    assert draft_team(owner, "platform/ci").profiles == {
        "deep": {
            "model": "gpt-5.5",
            "model_provider": "azure-eng",
            "model_reasoning_effort": "high",
            "sandbox_mode": "read-only",
        }
    }
    html = client.get(CI).content.decode()
    assert 'id="form-profile-deep"' in html
    client.post(
        edit_url("platform/ci", "profile"),
        {
            "profile": "deep",
            "profile-deep-name": "deep",
            "profile-deep-model": "codex-ci",
            "profile-deep-model_provider": "azure-eng",
        },
    )
    assert draft_team(owner, "platform/ci").profiles == {
        "deep": {"model": "codex-ci", "model_provider": "azure-eng"}
    }
    response = client.post(edit_url("platform/ci", "profile-delete"), {"name": "deep"})
    assert response.status_code == 302
    assert draft_team(owner, "platform/ci").profiles == {}


def test_a_profile_whose_model_is_not_an_azure_deployment_is_refused_at_its_field(
    world: World,
) -> None:
    owner = world.ids["people"]["owner"]
    response = client_for(owner).post(
        edit_url("platform/ci", "profile"),
        {
            "profile": "",
            "profile-new-name": "deep",
            "profile-new-model": "gpt-4o-mini",
            "profile-new-model_provider": "azure-eng",
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    beside = errors_beside(html, "id_profile-new-model")
    assert "gpt-4o-mini" in beside and "azure-eng" in beside
    assert errors_beside(html, "id_profile-new-name") == ""
    assert 'value="gpt-4o-mini"' in html  # kept as typed
    assert "Not saved:" in html
    assert draft_of(owner) is None


def test_an_endpoint_added_in_the_draft_can_be_named_by_a_profile_at_once(world: World) -> None:
    owner, acme = world.ids["people"]["owner"], world.ids["people"]["acme"]

    def add(raw: Any) -> None:
        raw.setdefault("providers", {})["azure-lab"] = {
            "kind": "azure",
            "provider_id": "azure-lab",
            "resource_url": "https://acme-lab.openai.azure.com/openai/v1",
            "env_key": "AZURE_LAB_API_KEY",
            "deployments": ["lab-codex"],
        }

    change_set_draft_edit(actor=acting(owner), organization=acme, edit=add, reason="")
    client = client_for(owner)
    # Offered by the forms, though not live yet; checked against its deployments as typed.
    assert '<option value="azure-lab">azure-lab</option>' in client.get(CI).content.decode()
    typed = {
        "profile": "",
        "profile-new-name": "lab",
        "profile-new-model": "gpt-5.5",
        "profile-new-model_provider": "azure-lab",
    }
    live = client.post(validate_url("platform/ci", "profile"), typed, HTTP_HX_REQUEST="true")
    assert "lab-codex" in errors_beside(live.content.decode(), "id_profile-new-model")
    typed["profile-new-model"] = "lab-codex"
    live = client.post(validate_url("platform/ci", "profile"), typed, HTTP_HX_REQUEST="true")
    assert "No findings for any Codex version" in live.content.decode()
    assert client.post(edit_url("platform/ci", "profile"), typed).status_code == 302
    assert draft_team(owner, "platform/ci").profiles == {
        "lab": {"model": "lab-codex", "model_provider": "azure-lab"}
    }
    # Someone without that draft is not offered it.
    html = client_for(world.ids["people"]["admin"]).get(CI).content.decode()
    assert 'value="azure-lab"' not in html


def test_mcp_servers_are_rows_added_with_a_button_and_removed_with_a_tick(world: World) -> None:
    owner = world.ids["people"]["owner"]
    client = client_for(owner)
    empty_row = {
        "mcp-TOTAL_FORMS": "1",
        "mcp-INITIAL_FORMS": "0",
        "mcp-0-transport": "command",
        "mcp-0-enabled": "on",
    }
    # "Add a row" answers the form with one more row, and saves nothing.
    more = client.post(
        edit_url("platform/ci", "mcp"), empty_row | {"action": "add-row"}, HTTP_HX_REQUEST="true"
    )
    assert more.status_code == 200
    fragment = more.content.decode()
    assert 'name="mcp-1-name"' in fragment and "<html" not in fragment
    plain = client.post(edit_url("platform/ci", "mcp"), empty_row | {"action": "add-row"})
    assert 'name="mcp-1-name"' in plain.content.decode() and "<html" in plain.content.decode()
    assert draft_of(owner) is None
    response = client.post(
        edit_url("platform/ci", "mcp"),
        {
            "mcp-TOTAL_FORMS": "2",
            "mcp-INITIAL_FORMS": "0",
            "mcp-0-name": "github",
            "mcp-0-transport": "command",
            "mcp-0-target": "github-mcp",
            "mcp-0-args": "--read-only\n--toolsets repos",
            "mcp-0-env_vars": "GITHUB_TOKEN",
            "mcp-0-enabled": "on",
            "mcp-1-name": "docs",
            "mcp-1-transport": "url",
            "mcp-1-target": "https://docs.example.com/mcp",
            "mcp-1-bearer_token_env_var": "DOCS_TOKEN",
        },
    )
    assert response.status_code == 302, response.content.decode()
    assert draft_team(owner, "platform/ci").mcp_servers == {
        "github": {
            "command": "github-mcp",
            "args": ["--read-only", "--toolsets repos"],
            "env_vars": ["GITHUB_TOKEN"],
        },
        "docs": {
            "url": "https://docs.example.com/mcp",
            "bearer_token_env_var": "DOCS_TOKEN",
            "enabled": False,
        },
    }
    html = client.get(CI).content.decode()
    assert 'name="mcp-1-name" value="github"' in html or 'value="github"' in html
    rows = {
        "mcp-TOTAL_FORMS": "2",
        "mcp-INITIAL_FORMS": "2",
        "mcp-0-original": "docs",
        "mcp-0-name": "docs",
        "mcp-0-transport": "url",
        "mcp-0-target": "https://docs.example.com/mcp",
        "mcp-0-bearer_token_env_var": "DOCS_TOKEN",
        "mcp-0-DELETE": "on",
        "mcp-1-original": "github",
        "mcp-1-name": "github",
        "mcp-1-transport": "command",
        "mcp-1-target": "github-mcp",
        "mcp-1-args": "--read-only",
        "mcp-1-enabled": "on",
    }
    assert client.post(edit_url("platform/ci", "mcp"), rows).status_code == 302
    # The row's other keys (env_vars emptied here) follow the row; the removed row is gone.
    assert draft_team(owner, "platform/ci").mcp_servers == {
        "github": {"command": "github-mcp", "args": ["--read-only"]}
    }


def test_an_mcp_server_with_a_credential_in_its_url_is_refused_beside_the_row(
    world: World,
) -> None:
    owner = world.ids["people"]["owner"]
    response = client_for(owner).post(
        edit_url("platform/ci", "mcp"),
        {
            "mcp-TOTAL_FORMS": "1",
            "mcp-INITIAL_FORMS": "0",
            "mcp-0-name": "docs",
            "mcp-0-transport": "url",
            "mcp-0-target": "https://user:secret@docs.example.com/mcp",
        },
    )
    assert response.status_code == 400
    assert "credentials" in errors_beside(response.content.decode(), "id_mcp-0-target")
    assert draft_of(owner) is None


def test_prefix_rules_are_rows(world: World) -> None:
    owner = world.ids["people"]["owner"]
    client = client_for(owner)
    response = client.post(
        edit_url("platform", "rules"),
        {
            "rules-TOTAL_FORMS": "2",
            "rules-INITIAL_FORMS": "0",
            "rules-0-pattern": "git push|reset",
            "rules-0-decision": "forbidden",
            "rules-0-justification": "CI owns the branches",
            "rules-1-pattern": "",
            "rules-1-decision": "prompt",
        },
    )
    assert response.status_code == 302, response.content.decode()
    assert draft_team(owner, "platform").requirements == {
        "rules": {
            "prefix_rules": [
                {
                    "pattern": [{"token": "git"}, {"any_of": ["push", "reset"]}],
                    "decision": "forbidden",
                    "justification": "CI owns the branches",
                }
            ]
        }
    }
    html = client.get("/orgs/acme/teams/platform/").content.decode()
    assert 'value="git push|reset"' in html


def test_the_node_is_edited_as_toml(world: World) -> None:
    owner = world.ids["people"]["owner"]
    client = client_for(owner)
    html = client.get(CI).content.decode()
    assert "model_provider = &quot;azure-eng&quot;" in html  # the node's own tables
    toml = """
[config]
model = "gpt-5.5"
model_provider = "azure-eng"
web_search = "disabled"
[requirements.features]
[mcp_servers.docs]
url = "https://docs.example.com/mcp"
"""
    response = client.post(edit_url("platform/ci", "toml"), {"node-toml": toml})
    assert response.status_code == 302, response.content.decode()
    node = draft_team(owner, "platform/ci")
    assert node.config == {
        "model": "gpt-5.5",
        "model_provider": "azure-eng",
        "web_search": "disabled",
    }
    assert node.mcp_servers == {"docs": {"url": "https://docs.example.com/mcp"}}


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("[config\nmodel = 1", "is not valid TOML"),
        ("teams = 1", "teams: is not a section of a node"),
        ('[config]\nmodel = 5\nmodel_provider = "azure-eng"', "config.model: must be a string"),
    ],
)
def test_bad_toml_is_refused_beside_the_textarea_and_keeps_the_text(
    world: World, toml: str, says: str
) -> None:
    owner = world.ids["people"]["owner"]
    response = client_for(owner).post(edit_url("platform/ci", "toml"), {"node-toml": toml})
    assert response.status_code == 400
    html = response.content.decode()
    assert says in errors_beside(html, "id_node-toml")
    assert draft_of(owner) is None


# --- live validation --------------------------------------------------------------------------


def test_live_validation_answers_each_fields_findings_and_writes_nothing(world: World) -> None:
    owner = world.ids["people"]["owner"]
    response = client_for(owner).post(
        validate_url("platform/ci", "config"),
        config_post(model="gpt-4o-mini", web_search="live"),
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    model = errors_beside(html, "id_config-model")
    assert "gpt-4o-mini" in model
    assert "web search is not available" in errors_beside(html, "id_config-web_search")
    assert 'id="id_config-model-errors" class="field-errors" hx-swap-oob="true"' in html
    assert errors_beside(html, "id_config-sandbox_mode") == ""
    assert "nothing is saved yet" in html
    assert not ChangeSet.objects.filter(author=owner).exists()


def test_live_validation_checks_every_codex_version_set_of_the_window(world: World) -> None:
    acme = world.ids["people"]["acme"]
    wanted = document.to_dict(org_policy(acme))
    wanted["codex"] = {"min_version": "0.125.0", "max_version": "0.169.0"}
    policy_apply(organization=acme, wanted=document.from_dict(wanted), actor=OPERATOR)
    owner = world.ids["people"]["owner"]
    response = client_for(owner).post(
        validate_url("platform/ci", "requirements"),
        {
            "requirements-allowed_sandbox_modes": ["read-only"],
            "requirements-allow_login_shell": "false",
        },
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert "Checked for each Codex version set of the window" in html
    assert "Codex 0.125.0 \N{EN DASH} 0.130.x" in html and "Codex 0.169.0" in html
    # A requirement older versions ignore is named with those versions, at its field.
    beside = errors_beside(html, "id_requirements-allow_login_shell")
    assert "is ignored by Codex 0.125.0 up to 0.146.0" in beside
    # The versions that ignore it list it; the others have nothing of their own.
    assert re.search(r"Codex 0.125.0 \N{EN DASH} 0.130.x</th><td>\s*<p class=\"error\">", html)
    assert not ChangeSet.objects.filter(author=owner).exists()


def test_live_validation_of_a_clean_form_has_no_findings(world: World) -> None:
    response = client_for(world.ids["people"]["admin"]).post(
        validate_url("platform/ci", "config"), config_post(), HTTP_HX_REQUEST="true"
    )
    assert "No findings for any Codex version of the window" in response.content.decode()


# --- files, published, diff -------------------------------------------------------------------

WINDOWED = """
[codex]
min_version = "0.125.0"
max_version = "0.169.0"
[config]
model = "gpt-5.5"
model_provider = "openai"
[teams.platform]
[teams."platform/ci".profiles.deep]
model_reasoning_effort = "high"
"""


def test_each_file_set_is_labelled_with_the_codex_versions_it_serves(
    cast: dict[str, Any],
) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(WINDOWED), actor=OPERATOR)
    html = client_for(cast["admin"]).get(CI).content.decode()
    # Before 0.134 a profile is a table of config.toml, from 0.134 on a file of its own.
    assert "Unpublished files for Codex 0.125.0 \N{EN DASH} 0.133.x" in html
    assert "Unpublished files for Codex 0.134.0" in html
    assert html.count("<summary>Unpublished files for Codex") == 2
    assert "profiles/deep.config.toml" in html
    assert "Not published yet" in html


def test_the_diff_shows_what_publishing_would_change_per_version_set(world: World) -> None:
    acme = world.ids["people"]["acme"]
    wanted = document.to_dict(org_policy(acme))
    wanted["teams"]["platform/ci"]["config"]["model"] = "gpt-5.5"
    policy_apply(organization=acme, wanted=document.from_dict(wanted), actor=OPERATOR)
    html = client_for(world.ids["people"]["admin"]).get(CI).content.decode()
    assert '<span class="del">-model = &quot;codex-ci&quot;</span>' in html
    assert '<span class="add">+model = &quot;gpt-5.5&quot;</span>' in html
    assert "revision 1/config.toml" in html and "unpublished/config.toml" in html


def test_after_a_rollback_the_revision_label_and_the_files_are_the_same_release(
    world: World,
) -> None:
    acme = world.ids["people"]["acme"]
    wanted = document.to_dict(org_policy(acme))
    wanted["teams"]["platform/ci"]["config"]["model"] = "gpt-5.5"
    policy_apply(organization=acme, wanted=document.from_dict(wanted), actor=OPERATOR)
    publish(acme)
    release_rollback(organization=acme, team_path="platform/ci", to_revision=1, actor=OPERATOR)
    assert (
        Release.objects.get(organization=acme, team_path="platform/ci", current=True).revision == 3
    )
    html = client_for(world.ids["people"]["admin"]).get(CI).content.decode()
    published = html.split('id="published-heading"', 1)[1].split('id="diff-heading"', 1)[0]
    assert "Revision 3, published" in published
    assert "revision 3" in published and "revision 2" not in published
    assert "team acme/platform/ci, revision 3." in published  # the files' own header
    assert "model = &quot;codex-ci&quot;" in published  # revision 1's content
    assert "gpt-5.5" not in published


# --- devices, children, scale ---------------------------------------------------------------


def test_child_teams_are_listed_and_the_root_page_lists_the_top_level(world: World) -> None:
    client = client_for(world.ids["people"]["admin"])
    html = client.get("/orgs/acme/teams/platform/").content.decode()
    assert 'href="/orgs/acme/teams/platform/ci/"' in html
    root = client.get(ROOT).content.decode()
    assert 'href="/orgs/acme/teams/platform/"' in root and 'href="/orgs/acme/teams/batch/"' in root
    assert 'href="/orgs/acme/teams/platform/ci/"' not in root
    assert "Codex support window" in root


def test_the_root_node_is_edited_from_its_page(world: World) -> None:
    owner = world.ids["people"]["owner"]
    client = client_for(owner)
    response = client.post(
        edit_url("", "config"),
        {
            "config-model": "gpt-5.5",
            "config-model_provider": "openai",
            "config-model_verbosity": "low",
        },
    )
    assert response.status_code == 302 and response["Location"] == f"{ROOT}#edit-config"
    draft = draft_of(owner)
    assert draft is not None
    assert document.parse(draft.document).root.config["model_verbosity"] == "low"


def siblings(org: Any, count: int) -> None:
    wanted = document.to_dict(org_policy(org))
    for n in range(count):
        wanted["teams"][f"platform/ci/t{n:03}"] = {"name": f"T{n}"}
    policy_apply(organization=org, wanted=document.from_dict(wanted), actor=OPERATOR)


def test_the_page_costs_the_same_with_10_or_200_teams(
    world: World, django_assert_max_num_queries: Any
) -> None:
    acme = world.ids["people"]["acme"]
    client = client_for(world.ids["people"]["admin"])
    siblings(acme, 10)
    client.get(CI)  # sessions and caches warm
    with django_assert_max_num_queries(20) as few:
        assert client.get(CI).status_code == 200
    siblings(acme, 200)
    assert Team.objects.filter(organization=acme).count() > 200
    with django_assert_max_num_queries(20) as many:
        assert client.get(CI).status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)
    html = client.get(CI).content.decode()
    assert "All teams below platform/ci, in the team tree" in html  # 200 children, 50 shown


def test_root_page_query_count_is_pinned(world: World, django_assert_max_num_queries: Any) -> None:
    client = client_for(world.ids["people"]["admin"])
    client.get(ROOT)
    with django_assert_max_num_queries(16):
        assert client.get(ROOT).status_code == 200


# --- the forms and the schema -----------------------------------------------------------------


def test_every_key_of_the_schema_has_a_form_or_is_edited_as_toml() -> None:
    shown = team_forms.schema_keys_shown()
    for section, keys in (
        ("requirements", schema.REQUIREMENT_KEYS),
        ("config", schema.CONFIG_KEYS),
    ):
        assert shown[section] | set(team_forms.TOML_ONLY[section]) == set(keys)
        assert shown[section] <= set(keys)
    assert shown["profiles"] == set(schema.PROFILE_KEYS)


GRANULAR = {
    "granular": {
        "sandbox_approval": True,
        "rules": True,
        "mcp_elicitations": False,
        "skill_approval": False,
        "request_permissions": False,
    }
}


def test_a_granular_approval_policy_survives_saving_the_form_untouched() -> None:
    """The form cannot show a granular policy: the field is read-only and the value is kept,
    whatever is posted for it, while the other fields save as usual."""
    current = {"allowed_approval_policies": ["on-request", GRANULAR]}
    data = {"r-allowed_approval_policies": ["never"], "r-allow_remote_control": "false"}
    form = team_forms.RequirementsForm(data, current=current, endpoints=[], prefix="r")
    assert form.is_valid(), form.errors
    assert form.fields["allowed_approval_policies"].disabled
    assert form.section_values(current) == {
        "allowed_approval_policies": ["on-request", GRANULAR],
        "allow_remote_control": False,
    }
    config = {"approval_policy": GRANULAR, "model": "gpt-5.5"}
    posted = {"c-approval_policy": "", "c-model": "gpt-5.5-mini"}
    config_form = team_forms.ConfigForm(posted, current=config, endpoints=[], prefix="c")
    assert config_form.is_valid(), config_form.errors
    assert config_form.section_values(config) == {
        "approval_policy": GRANULAR,
        "model": "gpt-5.5-mini",
    }


def test_invisible_characters_in_files_and_diffs_show_as_named_markers(world: World) -> None:
    # A zero-width joiner is allowed in free text (Persian and emoji need it) and invisible.
    acme = Organization.objects.get(slug="acme")
    text = document.dump(org_policy(acme)) + (
        '[teams."platform/ci".requirements]\n'
        'additional_developer_instructions = "Be brief.\u200dAlways."\n'
    )
    policy_apply(organization=acme, wanted=document.parse(text), actor=OPERATOR)
    html = client_for(world.ids["people"]["admin"]).get(CI).content.decode()
    marker = '<span class="hidden-char" title="U+200D ZERO WIDTH JOINER">&lang;U+200D&rang;</span>'
    # In the effective policy, the unpublished file and its diff.
    assert html.count(f"Be brief.{marker}Always.") == 3
    assert "\u200d" not in html
