"""The policy API one object at a time: endpoints, teams, nodes and the Codex window, with their
ETags, through API tokens on the real database."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from tests.conftest import OPERATOR, acting, make_policy

ORG = "/api/v1/orgs/acme"
AZURE: dict[str, Any] = {
    "kind": "azure",
    "settings": {
        "resource_url": "https://acme-eng.openai.azure.com/openai",
        "api_version": "2025-04-01-preview",
        "env_key": "AZURE_OPENAI_API_KEY",
        "deployments": ["gpt-5.5"],
    },
}


def client_for(user: Any, organization: Any, role: str = Role.ADMIN) -> APIClient:
    _, secret = api_token_create(actor=acting(user), organization=organization, name="t", role=role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def acme(cast: dict[str, Any]) -> dict[str, Any]:
    policy_apply(
        organization=cast["acme"],
        wanted=make_policy('[teams.platform]\n[teams."platform/ci"]\n[teams.batch]\n'),
        actor=OPERATOR,
    )
    return {
        **cast,
        "admin_api": client_for(cast["admin"], cast["acme"]),
        "auditor_api": client_for(cast["auditor"], cast["acme"], Role.AUDITOR),
    }


def test_endpoint_lifecycle_with_etags(acme: dict[str, Any]) -> None:
    api = acme["admin_api"]
    created = api.post(f"{ORG}/endpoints", {"name": "azure-2", **AZURE}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["provider_id"] == "azure"
    read = api.get(f"{ORG}/endpoints/azure-2")
    etag = read["ETag"]
    assert read.json()["settings"]["deployments"] == ["gpt-5.5"]

    changed = {**AZURE, "settings": {**AZURE["settings"], "deployments": ["gpt-5.5", "o3"]}}
    missing = api.put(f"{ORG}/endpoints/azure-2", changed, format="json")
    assert missing.status_code == 428
    done = api.put(f"{ORG}/endpoints/azure-2", changed, format="json", HTTP_IF_MATCH=etag)
    assert done.status_code == 200, done.json()
    assert done["ETag"] != etag
    stale = api.put(f"{ORG}/endpoints/azure-2", AZURE, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert org_policy(acme["acme"]).endpoints["azure-2"].settings["deployments"] == [
        "gpt-5.5",
        "o3",
    ]
    gone = api.delete(f"{ORG}/endpoints/azure-2", HTTP_IF_MATCH=done["ETag"])
    assert gone.status_code == 204
    assert "azure-2" not in org_policy(acme["acme"]).endpoints


def test_endpoint_refusals_name_the_field(acme: dict[str, Any]) -> None:
    api = acme["admin_api"]
    bad_kind = api.post(f"{ORG}/endpoints", {"name": "x", "kind": "nope"}, format="json")
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()["errors"]
    bad_url = {**AZURE, "settings": {**AZURE["settings"], "resource_url": "ftp://x"}}
    refused = api.post(f"{ORG}/endpoints", {"name": "x", **bad_url}, format="json")
    assert refused.status_code == 400
    assert any(path.startswith("providers.x.resource_url") for path in refused.json()["errors"])
    clash = {**AZURE, "settings": {**AZURE["settings"], "kind": "openai"}}
    assert api.post(f"{ORG}/endpoints", {"name": "x", **clash}, format="json").status_code == 400
    assert "x" not in org_policy(acme["acme"]).endpoints


def test_roles_and_outsiders(acme: dict[str, Any]) -> None:
    auditor = acme["auditor_api"]
    assert auditor.get(f"{ORG}/endpoints").status_code == 200
    denied = auditor.post(f"{ORG}/endpoints", {"name": "x", **AZURE}, format="json")
    assert denied.status_code == 403
    outsider = client_for(acme["outsider"], acme["other"])
    assert outsider.get(f"{ORG}/endpoints").status_code == 404
    assert APIClient().get(f"{ORG}/endpoints").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_two_clients_with_one_etag_one_wins(cast: dict[str, Any]) -> None:
    """Both writers read the same version, then write at once: one 200, one 412, and the
    stored endpoint is the winner's."""
    policy_apply(organization=cast["acme"], wanted=make_policy(), actor=OPERATOR)
    clients = [client_for(cast["admin"], cast["acme"]), client_for(cast["owner"], cast["acme"])]
    etag = clients[0].get(f"{ORG}/endpoints/azure-eng")["ETag"]
    barrier, answers = threading.Barrier(2), {}

    def write(index: int) -> None:
        body = {**AZURE, "settings": {**AZURE["settings"], "deployments": [f"model-{index}"]}}
        barrier.wait()
        answers[index] = clients[index].put(
            f"{ORG}/endpoints/azure-eng", body, format="json", HTTP_IF_MATCH=etag
        )
        connections.close_all()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(answer.status_code for answer in answers.values())
    assert codes == [200, 412]
    winner = next(i for i, answer in answers.items() if answer.status_code == 200)
    stored = org_policy(cast["acme"]).endpoints["azure-eng"].settings["deployments"]
    assert stored == [f"model-{winner}"]


def test_team_tree(acme: dict[str, Any]) -> None:
    api = acme["admin_api"]
    made = api.post(f"{ORG}/teams", {"slug": "web", "name": "Web", "parent": "platform"})
    assert made.status_code == 201, made.json()
    assert made.json()["path"] == "platform/web"
    assert api.post(f"{ORG}/teams", {"slug": "web", "parent": "platform"}).status_code == 400
    assert api.post(f"{ORG}/teams", {"slug": "x", "parent": "nowhere"}).status_code == 400

    children = api.get(f"{ORG}/teams", {"parent": "platform"}).json()["results"]
    assert [t["path"] for t in children] == ["platform/ci", "platform/web"]
    assert [t["path"] for t in api.get(f"{ORG}/teams", {"top": "true"}).json()["results"]] == [
        "batch",
        "platform",
    ]

    platform = api.get(f"{ORG}/teams", {"path": "platform"}).json()["results"][0]
    url = f"{ORG}/teams/{platform['id']}"
    etag = api.get(url)["ETag"]
    renamed = api.patch(url, {"name": "Platform team"}, HTTP_IF_MATCH=etag)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Platform team"
    moved = api.patch(url, {"parent": "batch"}, HTTP_IF_MATCH=renamed["ETag"])
    assert moved.status_code == 200, moved.json()
    assert moved.json()["path"] == "batch/platform"
    assert set(org_policy(acme["acme"]).teams) == {
        "batch",
        "batch/platform",
        "batch/platform/ci",
        "batch/platform/web",
    }
    into_itself = api.patch(url, {"parent": "batch/platform/ci"}, HTTP_IF_MATCH=moved["ETag"])
    assert into_itself.status_code == 400 and "parent" in into_itself.json()["errors"]
    gone = api.delete(url, HTTP_IF_MATCH=moved["ETag"])
    assert gone.status_code == 204
    assert set(org_policy(acme["acme"]).teams) == {"batch"}


def test_team_list_pages_in_constant_queries(acme: dict[str, Any]) -> None:
    api = acme["admin_api"]

    def first_page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(f"{ORG}/teams", {"page_size": 5}).status_code == 200
        return len(queries)

    first_page_queries()  # the token's first use is recorded once
    small = first_page_queries()
    extra = "".join(f"[teams.t{i}]\n" for i in range(60))
    policy_apply(
        organization=acme["acme"],
        wanted=make_policy('[teams.platform]\n[teams."platform/ci"]\n[teams.batch]\n' + extra),
        actor=OPERATOR,
    )
    assert first_page_queries() == small
    page = api.get(f"{ORG}/teams", {"page_size": 5}).json()
    following = api.get(page["next"]).json()["results"]
    assert len(following) == 5 and following[0]["path"] > page["results"][-1]["path"]


def test_nodes_and_window(acme: dict[str, Any]) -> None:
    api = acme["admin_api"]
    root = api.get(f"{ORG}/node")
    body = {
        "requirements": {"allowed_sandbox_modes": ["read-only", "workspace-write"]},
        "config": {"model": "gpt-5.5", "model_provider": "openai"},
        "profiles": {},
        "mcp_servers": {},
    }
    put = api.put(f"{ORG}/node", body, format="json", HTTP_IF_MATCH=root["ETag"])
    assert put.status_code == 200, put.json()
    assert org_policy(acme["acme"]).root.requirements == body["requirements"]

    team = api.get(f"{ORG}/teams", {"path": "batch"}).json()["results"][0]
    node_url = f"{ORG}/teams/{team['id']}/node"
    etag = api.get(node_url)["ETag"]
    bad = api.patch(
        node_url, {"config": {"sandbox_mode": "everything"}}, format="json", HTTP_IF_MATCH=etag
    )
    assert bad.status_code == 400
    assert "teams.batch.config.sandbox_mode" in bad.json()["errors"], bad.json()
    good = api.patch(
        node_url, {"config": {"sandbox_mode": "read-only"}}, format="json", HTTP_IF_MATCH=etag
    )
    assert good.status_code == 200, good.json()
    assert org_policy(acme["acme"]).teams["batch"].node.config == {"sandbox_mode": "read-only"}

    window = api.get(f"{ORG}/codex-window")
    wanted = {**window.json(), "min_version": "0.130.0"}
    moved = api.put(f"{ORG}/codex-window", wanted, format="json", HTTP_IF_MATCH=window["ETag"])
    assert moved.status_code == 200, moved.json()
    acme["acme"].refresh_from_db()
    assert org_policy(acme["acme"]).codex.min_version == "0.130.0"
    assert (
        api.put(
            f"{ORG}/codex-window",
            {**wanted, "min_version": "not-a-version"},
            format="json",
            HTTP_IF_MATCH=moved["ETag"],
        ).status_code
        == 400
    )


def test_team_editor_token_stays_in_its_subtree(acme: dict[str, Any]) -> None:
    from policyhub.accounts.services import membership_grant
    from tests.conftest import person

    editor = person("editor")
    membership_grant(
        actor=OPERATOR,
        organization=acme["acme"],
        user=editor,
        role=Role.TEAM_EDITOR,
        team_path="platform",
    )
    api = client_for(editor, acme["acme"], Role.TEAM_EDITOR)
    assert api.post(f"{ORG}/teams", {"slug": "web", "parent": "platform"}).status_code == 201
    assert api.post(f"{ORG}/teams", {"slug": "web", "parent": "batch"}).status_code == 403
    root = api.get(f"{ORG}/node")
    body = {"config": {"model": "x"}}
    refused = api.patch(f"{ORG}/node", body, format="json", HTTP_IF_MATCH=root["ETag"])
    assert refused.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"name": "\xff\xfe"}',
        b'{"name": NaN}',
        b'{"name": "a", "name": "b"}',
        b"",
    ],
    ids=["deep", "bad-utf8", "nan", "duplicate-key", "empty"],
)
def test_malformed_bodies_are_400(acme: dict[str, Any], body: bytes) -> None:
    answer = acme["admin_api"].post(f"{ORG}/teams", body, content_type="application/json")
    assert answer.status_code == 400
    assert "detail" in answer.json()


def test_a_body_past_its_endpoints_bound_is_refused_unread_and_changes_nothing(
    acme: dict[str, Any], settings: Any
) -> None:
    api = acme["admin_api"]
    root = api.get(f"{ORG}/node")
    body = {"config": {"model": "m" * (settings.API_BODY_MAX_BYTES + 1)}}
    put = api.put(f"{ORG}/node", body, format="json", HTTP_IF_MATCH=root["ETag"])
    assert put.status_code == 413, put.content
    assert put.json() == {
        "detail": f"the request body may be at most {settings.API_BODY_MAX_BYTES:,} bytes"
    }
    assert api.get(f"{ORG}/node")["ETag"] == root["ETag"]
    # The whole-document endpoints take a whole organisation's document.
    document = (
        '[organization]\nslug = "acme"\nname = "Acme"\n[config]\nnotify = ["'
        + ("n" * 60_000 + '", "') * 40
        + 'x"]\n'
    )
    planned = api.post(f"{ORG}/policy/plan", {"document": document}, format="json")
    assert planned.status_code == 200, planned.content  # read whole, and judged for what it says
    assert {e["path"] for e in planned.json()["errors"]} == {
        f"config.notify[{n}]" for n in range(40)
    }


def test_the_node_api_refuses_past_a_bound_by_field_path(acme: dict[str, Any]) -> None:
    from policyhub.policies import limits

    api = acme["admin_api"]
    root = api.get(f"{ORG}/node")
    rule = {"pattern": [{"token": "ls"}], "decision": "allow"}
    body = {"requirements": {"rules": {"prefix_rules": [rule] * (limits.PREFIX_RULES + 1)}}}
    patch = api.patch(f"{ORG}/node", body, format="json", HTTP_IF_MATCH=root["ETag"])
    assert patch.status_code == 400, patch.content
    assert list(patch.json()["errors"]) == ["requirements.rules.prefix_rules"]
    assert api.get(f"{ORG}/node")["ETag"] == root["ETag"]
