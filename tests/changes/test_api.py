"""The policy document and change sets through the API: export, plan and apply with If-Match;
proposing, reading, diffing, reviewing and scheduling change sets, through API tokens on the
real database."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from policyhub.accounts.models import Role
from policyhub.accounts.services import (
    api_token_create,
    membership_grant,
    organization_settings_update,
)
from policyhub.audit.models import AuditEvent
from policyhub.changes.models import ChangeSet
from policyhub.policies import document
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from tests.conftest import BASE, OPERATOR, THREE_TEAMS, acting, make_policy, person

ORG = "/api/v1/orgs/acme"
CI_EDIT = BASE + THREE_TEAMS.replace('model = "codex-ci"', 'model = "gpt-5.5"')
BATCH_EDIT = BASE + THREE_TEAMS + "[teams.batch.requirements]\nallow_login_shell = false\n"
WINDOW = '\n[codex]\nmin_version = "0.125.0"\nmax_version = "0.169.0"\n'


def client_for(user: Any, organization: Any, role: str = Role.ADMIN) -> APIClient:
    _, secret = api_token_create(actor=acting(user), organization=organization, name="t", role=role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def acme(cast: dict[str, Any]) -> dict[str, Any]:
    """acme with three teams live; an editor of team platform; a token per role."""
    policy_apply(organization=cast["acme"], wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    editor = person("editor")
    membership_grant(
        actor=OPERATOR,
        organization=cast["acme"],
        user=editor,
        role=Role.TEAM_EDITOR,
        team_path="platform",
    )
    return {
        **cast,
        "admin_api": client_for(cast["admin"], cast["acme"]),
        "owner_api": client_for(cast["owner"], cast["acme"], Role.OWNER),
        "auditor_api": client_for(cast["auditor"], cast["acme"], Role.AUDITOR),
        "editor_api": client_for(editor, cast["acme"], Role.TEAM_EDITOR),
        "outsider_api": client_for(cast["outsider"], cast["other"], Role.OWNER),
    }


def requiring_approval(acme: dict[str, Any]) -> None:
    acme["acme"] = organization_settings_update(
        organization=acme["acme"], actor=OPERATOR, requires_approval=True
    )


def propose(api: APIClient, text: str = CI_EDIT, **body: Any) -> Any:
    return api.post(
        f"{ORG}/change-sets", {"document": text, "reason": "CI on gpt-5.5", **body}, format="json"
    )


# --- the policy document ------------------------------------------------------------------------


def test_export_is_the_live_document_with_its_digest_and_etag(acme: dict[str, Any]) -> None:
    read = acme["auditor_api"].get(f"{ORG}/policy")
    assert read.status_code == 200
    body = read.json()
    assert document.parse(body["document"]) == org_policy(acme["acme"])
    assert body["digest"] == hashlib.sha256(body["document"].encode()).hexdigest()
    assert read["ETag"] == acme["admin_api"].get(f"{ORG}/policy")["ETag"]


def test_plan_shows_each_change_and_the_findings_and_writes_nothing(acme: dict[str, Any]) -> None:
    events = AuditEvent.objects.count()
    broken = CI_EDIT.replace('model_provider = "bedrock"', 'model_provider = "nowhere"')
    planned = acme["auditor_api"].post(f"{ORG}/policy/plan", {"document": broken}, format="json")
    assert planned.status_code == 200, planned.json()
    body = planned.json()
    assert {
        "action": "change",
        "object": "team platform/ci",
        "key": "config.model",
        "before": "codex-ci",
        "after": "gpt-5.5",
        "text": "~ team platform/ci config.model: 'codex-ci' -> 'gpt-5.5'",
    } in body["changes"]
    [error] = body["errors"]
    assert (error["path"], error["node"]) == ("teams.batch.config.model_provider", "batch")
    assert org_policy(acme["acme"]) == make_policy(THREE_TEAMS)
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[[[ not toml", "document"),
        (BASE + "[teams.batch]\nnope = 1\n", "teams.batch.nope"),
        (BASE.replace('slug = "acme"', 'slug = "other"'), "organization.slug"),
    ],
)
def test_a_document_with_errors_is_a_400_naming_the_field(
    acme: dict[str, Any], text: str, path: str
) -> None:
    for api, url, headers in (
        (acme["auditor_api"], f"{ORG}/policy/plan", {}),
        (acme["admin_api"], f"{ORG}/policy/apply", {"HTTP_IF_MATCH": "*"}),
        (acme["admin_api"], f"{ORG}/change-sets", {}),
    ):
        refused = api.post(url, {"document": text}, format="json", **headers)
        assert refused.status_code == 400, (url, refused.json())
        assert path in refused.json()["errors"], (url, refused.json())
    assert org_policy(acme["acme"]) == make_policy(THREE_TEAMS)
    assert not ChangeSet.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "document"),
        ({"document": 7}, "document"),
        ({"document": "x\x00"}, "document"),
        ({"document": CI_EDIT, "reason": "r" * 2001}, "reason"),
    ],
)
def test_malformed_input_is_a_400_naming_the_field(
    acme: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    refused = acme["admin_api"].post(f"{ORG}/policy/apply", body, format="json", HTTP_IF_MATCH="*")
    assert refused.status_code == 400
    assert field in refused.json()["errors"]


def test_apply_names_the_export_it_was_edited_from(acme: dict[str, Any]) -> None:
    api = acme["admin_api"]
    etag = api.get(f"{ORG}/policy")["ETag"]
    renamed = CI_EDIT.replace('name = "Acme"', 'name = "Acme Corp"', 1)
    missing = api.post(f"{ORG}/policy/apply", {"document": renamed}, format="json")
    assert missing.status_code == 428
    assert org_policy(acme["acme"]) == make_policy(THREE_TEAMS)
    applied = api.post(
        f"{ORG}/policy/apply",
        {"document": renamed, "reason": "CI on gpt-5.5"},
        format="json",
        HTTP_IF_MATCH=etag,
    )
    assert applied.status_code == 200, applied.json()
    assert [c["text"] for c in applied.json()["changes"]] == [
        "~ organization name: 'Acme' -> 'Acme Corp'",
        "~ team platform/ci config.model: 'codex-ci' -> 'gpt-5.5'",
    ]
    export = api.get(f"{ORG}/policy")
    assert applied.json()["digest"] == export.json()["digest"]
    assert export["ETag"] != etag
    assert AuditEvent.objects.filter(action="policy.change", reason="CI on gpt-5.5").exists()


def test_two_clients_applying_from_one_export_one_wins(acme: dict[str, Any]) -> None:
    """Two people edit the same export: the second apply is refused instead of undoing the
    first, and the live policy is the first one's document."""
    etag = acme["admin_api"].get(f"{ORG}/policy")["ETag"]
    assert acme["owner_api"].get(f"{ORG}/policy")["ETag"] == etag
    first = acme["admin_api"].post(
        f"{ORG}/policy/apply", {"document": CI_EDIT}, format="json", HTTP_IF_MATCH=etag
    )
    second = acme["owner_api"].post(
        f"{ORG}/policy/apply", {"document": BATCH_EDIT}, format="json", HTTP_IF_MATCH=etag
    )
    assert (first.status_code, second.status_code) == (200, 412)
    assert org_policy(acme["acme"]) == document.parse(CI_EDIT)


@pytest.mark.django_db(transaction=True)
def test_two_clients_applying_at_once_one_wins(cast: dict[str, Any]) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    clients = [client_for(cast["admin"], cast["acme"]), client_for(cast["owner"], cast["acme"])]
    texts = [CI_EDIT, BATCH_EDIT]
    etag = clients[0].get(f"{ORG}/policy")["ETag"]
    barrier, answers = threading.Barrier(2), {}

    def apply(index: int) -> None:
        barrier.wait()
        answers[index] = clients[index].post(
            f"{ORG}/policy/apply", {"document": texts[index]}, format="json", HTTP_IF_MATCH=etag
        )
        connections.close_all()

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answer.status_code for answer in answers.values()) == [200, 412]
    winner = next(i for i, answer in answers.items() if answer.status_code == 200)
    assert org_policy(cast["acme"]) == document.parse(texts[winner])


def test_apply_is_refused_where_approval_is_required(acme: dict[str, Any]) -> None:
    requiring_approval(acme)
    refused = acme["admin_api"].post(
        f"{ORG}/policy/apply", {"document": CI_EDIT}, format="json", HTTP_IF_MATCH="*"
    )
    assert refused.status_code == 400
    assert "organization.requires_approval" in refused.json()["errors"]
    assert org_policy(acme["acme"]) == make_policy(THREE_TEAMS)


def test_a_team_editor_changes_only_their_subtree(acme: dict[str, Any]) -> None:
    api = acme["editor_api"]
    for url in (f"{ORG}/policy/apply", f"{ORG}/change-sets"):
        refused = api.post(url, {"document": BATCH_EDIT}, format="json", HTTP_IF_MATCH="*")
        assert refused.status_code == 403, refused.json()
        assert "teams.batch" in refused.json()["errors"]
    assert org_policy(acme["acme"]) == make_policy(THREE_TEAMS)
    assert not ChangeSet.objects.exists()
    applied = api.post(
        f"{ORG}/policy/apply", {"document": CI_EDIT}, format="json", HTTP_IF_MATCH="*"
    )
    assert applied.status_code == 200, applied.json()


def test_readers_may_not_write(acme: dict[str, Any]) -> None:
    api = acme["auditor_api"]
    change_set = propose(acme["admin_api"]).json()["id"]
    for url in (
        f"{ORG}/policy/apply",
        f"{ORG}/change-sets",
        f"{ORG}/change-sets/{change_set}/submit",
        f"{ORG}/change-sets/{change_set}/approve",
        f"{ORG}/change-sets/{change_set}/reject",
        f"{ORG}/change-sets/{change_set}/schedule",
    ):
        refused = api.post(url, {"document": CI_EDIT, "reason": "no"}, format="json")
        assert refused.status_code == 403, url
    assert ChangeSet.objects.get().status == "draft"


def test_outsiders_learn_nothing(acme: dict[str, Any]) -> None:
    api = acme["outsider_api"]
    change_set = propose(acme["admin_api"]).json()["id"]
    reads = ["policy", "change-sets", *(f"change-sets/{change_set}/{x}" for x in ("plan", "diff"))]
    for path in [*reads, f"change-sets/{change_set}"]:
        assert api.get(f"{ORG}/{path}").status_code == 404, path
    for path in ("policy/plan", "policy/apply", "change-sets", f"change-sets/{change_set}/submit"):
        assert api.post(f"{ORG}/{path}", {"document": CI_EDIT}, format="json").status_code == 404
    assert APIClient().get(f"{ORG}/policy").status_code == 401
    # Nor does acme's change set show under another organisation's name.
    assert api.get(f"/api/v1/orgs/other/change-sets/{change_set}").status_code == 404


# --- change sets --------------------------------------------------------------------------------


def test_a_change_set_from_proposal_to_approval(acme: dict[str, Any]) -> None:
    requiring_approval(acme)
    made = propose(acme["admin_api"], submit=True, title="CI model")
    assert made.status_code == 201, made.json()
    shown = made.json()
    assert (shown["status"], shown["title"], shown["stale"]) == ("submitted", "CI model", False)
    assert shown["author"].startswith("admin@example.com (API token")
    assert made["Location"].endswith(f"{ORG}/change-sets/{shown['id']}")
    url = f"{ORG}/change-sets/{shown['id']}"

    read = acme["auditor_api"].get(url)
    assert read.json() == shown
    assert read["ETag"] == made["ETag"]
    assert acme["auditor_api"].get(f"{url}/plan").json() == {
        "plan": ["~ team platform/ci config.model: 'codex-ci' -> 'gpt-5.5'"]
    }
    etag = read["ETag"]
    own = acme["admin_api"].post(f"{url}/approve", {}, format="json", HTTP_IF_MATCH=etag)
    assert own.status_code == 400
    assert "actor" in own.json()["errors"]
    # An approval names the version read: what is approved is what was reviewed.
    unnamed = acme["owner_api"].post(f"{url}/approve", {"reason": "fine"}, format="json")
    assert unnamed.status_code == 428
    any_version = acme["owner_api"].post(
        f"{url}/approve", {"reason": "fine"}, format="json", HTTP_IF_MATCH="*"
    )
    assert any_version.status_code == 412
    approved = acme["owner_api"].post(
        f"{url}/approve", {"reason": "fine"}, format="json", HTTP_IF_MATCH=etag
    )
    assert approved.status_code == 200, approved.json()
    assert (approved.json()["status"], approved.json()["decision_reason"]) == ("approved", "fine")
    assert approved["ETag"] != read["ETag"]
    assert org_policy(acme["acme"]) == make_policy(THREE_TEAMS)


def test_a_draft_is_submitted_later(acme: dict[str, Any]) -> None:
    requiring_approval(acme)
    draft = propose(acme["editor_api"]).json()
    assert draft["status"] == "draft"
    url = f"{ORG}/change-sets/{draft['id']}/submit"
    later = (timezone.now() + timedelta(days=1)).isoformat()
    # Scheduling is publishing, which an editor may not ask for.
    assert acme["editor_api"].post(url, {"publish_at": later}, format="json").status_code == 403
    submitted = acme["editor_api"].post(url, {}, format="json")
    assert submitted.status_code == 200, submitted.json()
    assert submitted.json()["status"] == "submitted"
    again = acme["editor_api"].post(url, {}, format="json")
    assert again.status_code == 400
    assert "status" in again.json()["errors"]


def test_a_refused_submit_leaves_no_draft(acme: dict[str, Any]) -> None:
    broken = CI_EDIT.replace('model_provider = "bedrock"', 'model_provider = "nowhere"')
    refused = propose(acme["admin_api"], broken, submit=True)
    assert refused.status_code == 400
    assert list(refused.json()["errors"]) == ["teams.batch.config.model_provider"]
    assert not ChangeSet.objects.exists()


def test_a_rejection_says_why(acme: dict[str, Any]) -> None:
    requiring_approval(acme)
    change_set = propose(acme["admin_api"], submit=True).json()["id"]
    url = f"{ORG}/change-sets/{change_set}"
    for body in ({}, {"reason": ""}):
        refused = acme["owner_api"].post(f"{url}/reject", body, format="json")
        assert refused.status_code == 400
        assert "reason" in refused.json()["errors"]
    rejected = acme["owner_api"].post(f"{url}/reject", {"reason": "not now"}, format="json")
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["stale"]) == ("rejected", None)
    gone = acme["owner_api"].get(f"{url}/diff")
    assert gone.status_code == 400
    assert "status" in gone.json()["errors"]


def test_a_change_set_goes_stale_when_the_live_policy_moves_on(acme: dict[str, Any]) -> None:
    change_set = propose(acme["admin_api"]).json()["id"]
    policy_apply(organization=acme["acme"], wanted=document.parse(BATCH_EDIT), actor=OPERATOR)
    shown = acme["admin_api"].get(f"{ORG}/change-sets/{change_set}").json()
    assert shown["stale"] is True
    assert acme["admin_api"].get(f"{ORG}/change-sets/{change_set}/diff").json()["stale"] is True


def test_the_diff_shows_each_affected_team_a_page_at_a_time(acme: dict[str, Any]) -> None:
    root_edit = CI_EDIT.replace('[config]\nmodel = "gpt-5.5"', '[config]\nmodel = "o3"')
    url = f"{ORG}/change-sets/{propose(acme['admin_api'], root_edit).json()['id']}/diff"
    api = acme["auditor_api"]
    whole = api.get(url).json()
    assert whole["next"] is None
    assert [t["team"] for t in whole["results"]] == ["platform", "platform/ci"]
    [ci] = [t for t in whole["results"] if t["team"] == "platform/ci"]
    assert [f["name"] for f in ci["files"]] == ["config.toml"]
    assert '-model = "codex-ci"' in ci["files"][0]["diff"]
    assert '+model = "gpt-5.5"' in ci["files"][0]["diff"]

    seen, page = [], api.get(url, {"page_size": 1}).json()
    pages = 1
    while page["next"]:
        seen += [t["team"] for t in page["results"]]
        page, pages = api.get(page["next"]).json(), pages + 1
    seen += [t["team"] for t in page["results"]]
    # One team looked at per page: batch (unaffected), platform, platform/ci.
    assert (seen, pages) == (["platform", "platform/ci"], 3)

    one = api.get(url, {"team": "platform/ci"}).json()
    assert [t["team"] for t in one["results"]] == ["platform/ci"]
    broken = CI_EDIT.replace('model_provider = "bedrock"', 'model_provider = "nowhere"')
    url = f"{ORG}/change-sets/{propose(acme['admin_api'], broken).json()['id']}/diff"
    [batch] = api.get(url, {"team": "batch"}).json()["results"]
    assert batch["files"] == []
    assert [e["path"] for e in batch["errors"]] == ["teams.batch.config.model_provider"]
    unknown = api.get(url, {"team": "nowhere"})
    assert unknown.status_code == 400
    assert "team" in unknown.json()["errors"]
    for query, field in (
        ({"codex_version": "latest"}, "codex_version"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 2**40}, "page_size"),
    ):
        refused = api.get(url, query)
        assert refused.status_code == 400
        assert field in refused.json()["errors"]


def test_the_diff_for_a_codex_version_is_the_file_set_it_would_receive(
    acme: dict[str, Any],
) -> None:
    policy_apply(
        organization=acme["acme"], wanted=make_policy(THREE_TEAMS + WINDOW), actor=OPERATOR
    )
    profile = '[teams.batch.profiles.deep]\nmodel_reasoning_effort = "high"\n'
    made = propose(acme["admin_api"], BASE + THREE_TEAMS + WINDOW + profile)
    url = f"{ORG}/change-sets/{made.json()['id']}/diff"

    def files(version: str) -> list[str]:
        page = acme["admin_api"].get(url, {"codex_version": version}).json()
        assert page["codex_version"] == version
        [batch] = page["results"]
        return [f["name"] for f in batch["files"]]

    # Before 0.134 a profile is a table of config.toml; from 0.134 a file of its own. Below
    # the window a machine gets the oldest set, above it the newest.
    assert files("0.125.0") == files("0.1.0") == ["config.toml"]
    assert files("0.169.0") == files("9.0.0") == ["profiles/deep.config.toml"]


def test_the_diff_costs_the_same_whatever_the_number_of_teams(acme: dict[str, Any]) -> None:
    def queries(teams: int) -> int:
        extra = "".join(f"[teams.t{i:03}]\n" for i in range(teams))
        policy_apply(
            organization=acme["acme"], wanted=make_policy(THREE_TEAMS + extra), actor=OPERATOR
        )
        edit = CI_EDIT + extra
        ChangeSet.objects.all().delete()
        url = f"{ORG}/change-sets/{propose(acme['admin_api'], edit).json()['id']}/diff"
        with CaptureQueriesContext(connection) as captured:
            assert acme["admin_api"].get(url, {"page_size": 5}).status_code == 200
        return len(captured)

    assert queries(2) == queries(40)


def test_the_list_pages_newest_first_filters_by_state_and_costs_the_same(
    acme: dict[str, Any],
) -> None:
    def rows(count: int) -> None:
        ChangeSet.objects.bulk_create(
            ChangeSet(
                organization=acme["acme"],
                author_label="admin@example.com",
                status=("draft", "submitted")[i % 2],
                document=CI_EDIT,
                base_digest="0" * 64,
            )
            for i in range(count)
        )

    api = acme["auditor_api"]

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get(f"{ORG}/change-sets", {"page_size": 50}).status_code == 200
        return len(captured)

    rows(3)
    queries()  # the token's first use is noted once
    few = queries()
    rows(60)
    assert queries() == few
    listed = api.get(f"{ORG}/change-sets", {"status": "submitted", "page_size": 10}).json()
    assert len(listed["results"]) == 10
    assert {c["status"] for c in listed["results"]} == {"submitted"}
    ids = [c["id"] for c in listed["results"]]
    assert ids == sorted(ids, reverse=True)
    following = api.get(listed["next"]).json()["results"]
    assert following[0]["id"] < ids[-1]
    refused = api.get(f"{ORG}/change-sets", {"status": "lost"})
    assert refused.status_code == 400
    assert "status" in refused.json()["errors"]


def test_scheduling_names_the_version_read_and_takes_publish(acme: dict[str, Any]) -> None:
    requiring_approval(acme)
    change_set = propose(acme["editor_api"], submit=True).json()["id"]
    url = f"{ORG}/change-sets/{change_set}"
    etag = acme["admin_api"].get(url)["ETag"]
    when = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    body = {"publish_at": when.isoformat()}
    assert acme["admin_api"].post(f"{url}/schedule", body, format="json").status_code == 428
    editor = acme["editor_api"].post(f"{url}/schedule", body, format="json", HTTP_IF_MATCH=etag)
    assert editor.status_code == 403
    done = acme["admin_api"].post(f"{url}/schedule", body, format="json", HTTP_IF_MATCH=etag)
    assert done.status_code == 200, done.json()
    assert ChangeSet.objects.get().publish_at == when
    assert done["ETag"] == acme["admin_api"].get(url)["ETag"] != etag
    cleared = acme["owner_api"].post(
        f"{url}/schedule", {"publish_at": None}, format="json", HTTP_IF_MATCH=etag
    )
    assert cleared.status_code == 412
    assert ChangeSet.objects.get().publish_at == when
    event = AuditEvent.objects.get(action="change_set.schedule")
    assert (event.before, event.after) == (
        {"status": "submitted", "publish_at": None},
        {"status": "submitted", "publish_at": when.isoformat()},
    )
    for bad, field in (({}, "publish_at"), ({"publish_at": "soon"}, "publish_at")):
        refused = acme["admin_api"].post(
            f"{url}/schedule", bad, format="json", HTTP_IF_MATCH=done["ETag"]
        )
        assert refused.status_code == 400
        assert field in refused.json()["errors"]

    acme["owner_api"].post(f"{url}/reject", {"reason": "no"}, format="json")
    late = acme["admin_api"].post(
        f"{url}/schedule", {"publish_at": None}, format="json", HTTP_IF_MATCH="*"
    )
    assert late.status_code == 400
    assert "status" in late.json()["errors"]
