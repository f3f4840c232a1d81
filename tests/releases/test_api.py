"""The releases API through API tokens on the real database: publish runs started and followed to
their end (the Celery task runs in-process at commit), releases with their files and diffs,
rollback, staged rollouts and signing keys; who may do what, and lists whose cost does not grow
with their length."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create
from policyhub.audit.models import AuditEvent
from policyhub.celery import app as celery_app
from policyhub.policies.models import PolicyNode
from policyhub.policies.services import policy_apply
from policyhub.releases import signing
from policyhub.releases.models import PublishRun, Release, SigningKey
from providers.codex_versions import NEWEST_MEASURED, version_text
from tests.conftest import THREE_TEAMS, acting, make_policy

ORG = "/api/v1/orgs/acme"
TEAM = "platform/ci"
# Codex 0.125 to 0.169: platform/ci's profile is a table before 0.134 and a file from it on, so
# its releases carry two file sets.
WINDOW = '[codex]\nmin_version = "0.125.0"\nmax_version = "0.169.0"\n'
POLICY = (
    WINDOW + THREE_TEAMS + '[teams."platform/ci".profiles.deep]\nmodel_reasoning_effort = "high"\n'
)
CHANGED = POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"')
# The window narrowed to 0.134 on: one file set is enough again.
NARROWED = CHANGED.replace('min_version = "0.125.0"', 'min_version = "0.134.0"')


def client_for(user: Any, organization: Any, role: str = Role.ADMIN) -> APIClient:
    _, secret = api_token_create(actor=acting(user), organization=organization, name="t", role=role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture(autouse=True)
def worker_in_process() -> Iterator[None]:
    """A publish run's task runs in this process when its request commits, as a worker would."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


@pytest.fixture
def acme(cast: dict[str, Any]) -> dict[str, Any]:
    return {
        **cast,
        "admin_api": client_for(cast["admin"], cast["acme"]),
        "auditor_api": client_for(cast["auditor"], cast["acme"], Role.AUDITOR),
        "outsider_api": client_for(cast["outsider"], cast["other"]),
    }


@pytest.fixture
def publish(
    acme: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> Callable[[str], dict[str, Any]]:
    """Apply a policy to acme, publish it through the API and follow the run to its end."""

    def run(text: str) -> dict[str, Any]:
        policy_apply(
            organization=acme["acme"], wanted=make_policy(text), actor=acting(acme["admin"])
        )
        with django_capture_on_commit_callbacks(execute=True):
            started = acme["admin_api"].post(f"{ORG}/publish-runs")
        assert started.status_code == 202, started.json()
        done = acme["admin_api"].get(started["Location"])
        assert done.json()["status"] == "succeeded", done.json()
        return dict(done.json())

    return run


@pytest.fixture
def published(acme: dict[str, Any], publish: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """platform/ci at r1 (POLICY) and r2 (CHANGED); the other teams at r1."""
    publish(POLICY)
    publish(CHANGED)
    return acme


def release_id(revision: int, team: str = TEAM) -> int:
    return Release.objects.get(team_path=team, revision=revision).pk


# --- publish runs ---------------------------------------------------------------------------


def test_a_publish_run_is_started_and_followed_to_its_end(
    acme: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    api = acme["admin_api"]
    policy_apply(organization=acme["acme"], wanted=make_policy(POLICY), actor=acting(acme["admin"]))
    with django_capture_on_commit_callbacks(execute=True) as handed_over:
        started = api.post(f"{ORG}/publish-runs")
        # Answered before any worker had it: the run waits.
        assert started.status_code == 202, started.json()
        assert started.json()["status"] == "pending"
        assert started.json()["started_at"] is None
    assert len(handed_over) == 1
    run = started.json()
    assert started["Location"] == run["url"] and run["url"].endswith(f"/publish-runs/{run['id']}")
    assert run["requested_by"].startswith("admin@example.com (API token")

    done = api.get(started["Location"]).json()
    assert done["status"] == "succeeded"
    assert (done["teams"], done["teams_rendered"], done["releases_created"]) == (3, 3, 3)
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"]
    assert (done["error"], done["refusals"]) == ("", [])
    assert [(r["team"], r["revision"]) for r in done["releases"]] == [
        ("batch", 1),
        ("platform", 1),
        (TEAM, 1),
    ]
    made = api.get(done["releases_url"]).json()["results"]
    assert sorted(r["team"] for r in made) == ["batch", "platform", TEAM]


def test_a_failed_run_says_why(
    acme: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    policy_apply(organization=acme["acme"], wanted=make_policy(POLICY), actor=acting(acme["admin"]))
    # Break the stored policy behind the services' back, as a bad manual edit could.
    PolicyNode.objects.filter(team__path="batch").update(config={"sandbox_mode": "full-access"})
    with pytest.raises(Exception, match="error"), django_capture_on_commit_callbacks(execute=True):
        started = acme["admin_api"].post(f"{ORG}/publish-runs")
    run_id = PublishRun.objects.get().pk
    failed = acme["admin_api"].get(f"{ORG}/publish-runs/{run_id}").json()
    assert failed["status"] == "failed" and "error" in failed["error"]
    assert (failed["releases_created"], failed["releases"], failed["refusals"]) == (0, [], [])
    assert started.status_code == 202


def test_publish_runs_are_listed_newest_first_and_filtered(
    published: dict[str, Any], publish: Callable[[str], dict[str, Any]]
) -> None:
    api = published["admin_api"]
    unchanged = publish(CHANGED)
    assert unchanged["releases_created"] == 0
    runs = api.get(f"{ORG}/publish-runs").json()
    ids = [run["id"] for run in runs["results"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3 and runs["next"] is None
    first = api.get(f"{ORG}/publish-runs", {"page_size": 2}).json()
    rest = api.get(first["next"]).json()
    assert [r["id"] for r in first["results"] + rest["results"]] == ids
    assert len(api.get(f"{ORG}/publish-runs", {"status": "succeeded"}).json()["results"]) == 3
    assert api.get(f"{ORG}/publish-runs", {"status": "pending"}).json()["results"] == []
    bad = api.get(f"{ORG}/publish-runs", {"status": "done"})
    assert bad.status_code == 400 and "status" in bad.json()["errors"]
    assert api.get(f"{ORG}/publish-runs/{2**31 + 5}").status_code == 404


# --- releases -------------------------------------------------------------------------------


def test_releases_are_listed_newest_first_and_filtered_in_sql(published: dict[str, Any]) -> None:
    api = published["admin_api"]
    listed = api.get(f"{ORG}/releases").json()["results"]
    assert [(r["team"], r["revision"]) for r in listed] == [
        (TEAM, 2),
        (TEAM, 1),
        ("platform", 1),
        ("batch", 1),
    ]
    team = api.get(f"{ORG}/releases", {"team": TEAM}).json()["results"]
    assert [(r["revision"], r["state"], r["previous_revision"]) for r in team] == [
        (2, "current", 1),
        (1, "superseded", None),
    ]
    current = api.get(f"{ORG}/releases", {"team": TEAM, "current": "true"}).json()["results"]
    assert [r["revision"] for r in current] == [2]
    old = api.get(f"{ORG}/releases", {"current": "false"}).json()["results"]
    assert [(r["team"], r["revision"]) for r in old] == [(TEAM, 1)]
    # A team path is matched exactly: its parent's releases are not its own.
    assert [
        r["team"] for r in api.get(f"{ORG}/releases", {"team": "platform"}).json()["results"]
    ] == ["platform"]
    for query, field in (
        ({"current": "maybe"}, "current"),
        ({"publish_run": "1.5"}, "publish_run"),
        ({"publish_run": str(2**31)}, "publish_run"),
        ({"team": "ci\x00"}, "team"),
        ({"team": "t" * 1025}, "team"),
    ):
        refused = api.get(f"{ORG}/releases", query)
        assert refused.status_code == 400, (query, refused.json())
        assert field in refused.json()["errors"]


def test_a_release_shows_its_metadata_and_the_codex_versions_of_each_file_set(
    published: dict[str, Any],
) -> None:
    api = published["admin_api"]
    shown = api.get(f"{ORG}/releases/{release_id(2)}").json()
    release = Release.objects.get(pk=release_id(2))
    key = SigningKey.objects.get(status="active")
    assert shown["team"] == TEAM and shown["revision"] == 2
    assert (shown["state"], shown["current"], shown["rollout_percent"]) == ("current", True, 100)
    assert shown["previous_revision"] == 1
    assert shown["content_digest"] == release.content_digest
    assert shown["signing_key_id"] == key.key_id
    assert shown["publish_run"] == release.publish_run_id and shown["aborted_at"] is None
    window = ["0.125.0", "0.169.0"]
    measured = version_text(NEWEST_MEASURED)
    assert shown["codex_sets"] == [
        {
            "versions": [["0.134.0", None]],
            "native_channel_from": "0.166.0",
            "window": window,
            "measured_until": measured,
        },
        {
            "versions": [["0.125.0", "0.134.0"]],
            "native_channel_from": None,
            "window": window,
            "measured_until": measured,
        },
    ]
    assert "files" not in shown and "manifest" not in shown
    for unknown in (release_id(2) + 1000, 10**30):
        assert api.get(f"{ORG}/releases/{unknown}").status_code == 404


def test_a_release_lists_every_file_of_every_set_as_signed(published: dict[str, Any]) -> None:
    api = published["admin_api"]
    answer = api.get(f"{ORG}/releases/{release_id(1)}/files").json()
    key = SigningKey.objects.get(status="active")
    assert (answer["team"], answer["revision"], answer["signing_key_id"]) == (TEAM, 1, key.key_id)
    newer, older = answer["sets"]
    assert newer["versions"] == [["0.134.0", None]] and older["versions"] == [
        ["0.125.0", "0.134.0"]
    ]
    for file_set in answer["sets"]:
        assert signing.verify(key.public_key, file_set["manifest"].encode(), file_set["signature"])
        names = [f["name"] for f in file_set["files"]]
        assert names == sorted(names) and "config.toml" in names
        for file in file_set["files"]:
            assert "revision 1." in file["text"]
            assert file["sha256"] == hashlib.sha256(file["text"].encode()).hexdigest()
    # The profile is its own file from 0.134 on, a table of config.toml before.
    assert any("deep" in f["name"] for f in newer["files"])
    assert not any("deep" in f["name"] for f in older["files"])
    assert api.get(f"{ORG}/releases/{release_id(2) + 1000}/files").status_code == 404


def test_any_two_revisions_are_compared_per_codex_versions_and_file(
    published: dict[str, Any], publish: Callable[[str], dict[str, Any]]
) -> None:
    api = published["admin_api"]
    diff = api.get(f"{ORG}/releases/diff", {"team": TEAM, "from": 1, "to": 2}).json()
    assert (diff["team"], diff["from_revision"], diff["to_revision"]) == (TEAM, 1, 2)
    assert [d["versions"] for d in diff["versions"]] == [
        [["0.125.0", "0.134.0"]],
        [["0.134.0", None]],
    ]
    for compared in diff["versions"]:
        config = next(f for f in compared["files"] if f["name"] == "config.toml")
        assert config["status"] == "changed"
        assert config["diff"].startswith("--- r1/config.toml\n+++ r2/config.toml\n")
        assert (
            '-model = "codex-ci"\n' in config["diff"] and '+model = "gpt-5.5"\n' in config["diff"]
        )

    # The window narrows: r3 has one set; the versions only r2 served compare with nothing.
    publish(NARROWED)
    narrowed = api.get(f"{ORG}/releases/diff", {"team": TEAM, "from": 2, "to": 3}).json()
    dropped, kept = narrowed["versions"]
    assert dropped["versions"] == [["0.125.0", "0.134.0"]]
    assert {f["status"] for f in dropped["files"]} == {"removed"}
    assert dropped["files"][0]["diff"].splitlines()[1] == "+++ /dev/null"
    assert kept["versions"] == [["0.134.0", None]]
    same = api.get(f"{ORG}/releases/diff", {"team": TEAM, "from": 2, "to": 2}).json()
    assert {f["status"] for d in same["versions"] for f in d["files"]} == {"unchanged"}
    assert all(f["diff"] == "" for d in same["versions"] for f in d["files"])


def test_a_diff_needs_its_parameters_and_known_revisions(published: dict[str, Any]) -> None:
    api = published["admin_api"]
    missing = api.get(f"{ORG}/releases/diff", {"team": TEAM})
    assert missing.status_code == 400
    assert set(missing.json()["errors"]) == {"from", "to"}
    for query, field in (
        ({"team": TEAM, "from": 0, "to": 2}, "from"),
        ({"team": TEAM, "from": 1, "to": "two"}, "to"),
        ({"team": TEAM, "from": 1, "to": 2**31}, "to"),
        ({"team": "", "from": 1, "to": 2}, "team"),
    ):
        refused = api.get(f"{ORG}/releases/diff", query)
        assert refused.status_code == 400 and field in refused.json()["errors"], query
    for query in ({"team": TEAM, "from": 1, "to": 9}, {"team": "nope", "from": 1, "to": 1}):
        unknown = api.get(f"{ORG}/releases/diff", query)
        assert unknown.status_code == 404 and "has no release" in unknown.json()["detail"]


# --- rollback and rollouts ------------------------------------------------------------------


def test_a_team_is_rolled_back_to_an_earlier_revision(published: dict[str, Any]) -> None:
    api = published["admin_api"]
    body = {"team": TEAM, "to_revision": 1, "reason": "codex-ci misbehaves"}
    rolled = api.post(f"{ORG}/releases/rollback", body, format="json")
    assert rolled.status_code == 201, rolled.json()
    shown = rolled.json()
    assert (shown["revision"], shown["state"], shown["previous_revision"]) == (3, "current", 2)
    assert shown["publish_run"] is None
    assert shown["content_digest"] == Release.objects.get(team_path=TEAM, revision=1).content_digest
    assert AuditEvent.objects.get(action="release.rollback").reason == "codex-ci misbehaves"

    again = api.post(f"{ORG}/releases/rollback", body, format="json")
    assert again.status_code == 400 and "to_revision" in again.json()["errors"]
    unknown = api.post(f"{ORG}/releases/rollback", {"team": TEAM, "to_revision": 7}, format="json")
    assert unknown.status_code == 400 and "to_revision" in unknown.json()["errors"]
    for bad, field in (
        ({"team": TEAM, "to_revision": "one"}, "to_revision"),
        ({"team": TEAM, "to_revision": 0}, "to_revision"),
        ({"team": TEAM, "to_revision": 2**31}, "to_revision"),
        ({"to_revision": 1}, "team"),
        ({"team": TEAM, "to_revision": 1, "reason": "a\x00b"}, "reason"),
    ):
        refused = api.post(f"{ORG}/releases/rollback", bad, format="json")
        assert refused.status_code == 400 and field in refused.json()["errors"], bad
    assert Release.objects.filter(team_path=TEAM).count() == 3


def test_a_staged_rollout_is_started_widened_promoted_and_aborted(
    published: dict[str, Any],
) -> None:
    api = published["admin_api"]

    def post(action: str, body: dict[str, Any]) -> Any:
        return api.post(f"{ORG}/rollouts/{action}", body, format="json")

    started = post("start", {"team": TEAM, "percent": 30})
    assert started.status_code == 200, started.json()
    assert (started.json()["revision"], started.json()["rollout_percent"]) == (2, 30)
    assert started.json()["previous_revision"] == 1
    widened = post("promote", {"team": TEAM, "percent": 60})
    assert widened.status_code == 200 and widened.json()["rollout_percent"] == 60
    narrower = post("promote", {"team": TEAM, "percent": 50})
    assert narrower.status_code == 400 and "percent" in narrower.json()["errors"]
    promoted = post("promote", {"team": TEAM})
    assert promoted.status_code == 200 and promoted.json()["rollout_percent"] == 100
    done = post("promote", {"team": TEAM})
    assert done.status_code == 400 and "not in a staged rollout" in done.json()["detail"]

    assert post("start", {"team": TEAM, "percent": 20}).status_code == 200
    aborted = post("abort", {"team": TEAM})
    assert aborted.status_code == 200, aborted.json()
    assert (aborted.json()["revision"], aborted.json()["state"]) == (1, "current")
    assert aborted.json()["rollout_percent"] == 100
    states = api.get(f"{ORG}/releases", {"team": TEAM}).json()["results"]
    assert [(r["revision"], r["state"]) for r in states] == [(2, "aborted"), (1, "current")]
    assert states[0]["aborted_at"] is not None


def test_rollout_refusals_name_the_field(published: dict[str, Any]) -> None:
    api = published["admin_api"]
    for action, body, field in (
        ("start", {"team": TEAM, "percent": 0}, "percent"),
        ("start", {"team": TEAM, "percent": 101}, "percent"),
        ("start", {"team": TEAM, "percent": "half"}, "percent"),
        ("start", {"team": TEAM}, "percent"),
        ("start", {"team": TEAM, "percent": 100}, "percent"),  # that is promoting
        ("start", {"team": "nope", "percent": 10}, "team"),
        ("start", {"team": "batch", "percent": 10}, "team"),  # nothing to fall back to
        ("promote", {"team": TEAM, "percent": 2**40}, "percent"),
        ("abort", {}, "team"),
        ("abort", {"team": ["platform"]}, "team"),
    ):
        refused = api.post(f"{ORG}/rollouts/{action}", body, format="json")
        assert refused.status_code == 400, (action, body, refused.json())
        assert field in refused.json()["errors"], (action, body, refused.json())
    assert Release.objects.get(team_path=TEAM, current=True).rollout_percent == 100


# --- signing keys ---------------------------------------------------------------------------


def test_signing_keys_are_listed_and_rotated_without_private_material(
    published: dict[str, Any],
) -> None:
    api = published["admin_api"]
    (first,) = api.get(f"{ORG}/signing-keys").json()["results"]
    assert first["status"] == "active" and first["endorsed_by"] is None
    assert set(first) == {
        "key_id",
        "public_key",
        "status",
        "created_at",
        "retired_at",
        "revoked_at",
        "revocation_reason",
        "endorsed_by",
        "endorsement",
    }
    rotated = api.post(f"{ORG}/signing-keys/rotate")
    assert rotated.status_code == 201, rotated.json()
    new = rotated.json()
    assert new["status"] == "active" and new["endorsed_by"] == first["key_id"]
    assert signing.verify(
        first["public_key"],
        signing.endorsement_message(new["key_id"], new["public_key"]),
        new["endorsement"],
    )
    listed = api.get(f"{ORG}/signing-keys").json()["results"]
    assert [(k["key_id"], k["status"]) for k in listed] == [
        (new["key_id"], "active"),
        (first["key_id"], "retired"),
    ]
    retired = api.get(f"{ORG}/signing-keys", {"status": "retired"}).json()["results"]
    assert [k["key_id"] for k in retired] == [first["key_id"]]
    assert api.get(f"{ORG}/signing-keys", {"status": "lost"}).status_code == 400


def test_a_compromised_key_is_revoked_and_what_it_signed_signed_again(
    published: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    api = published["admin_api"]
    (first,) = api.get(f"{ORG}/signing-keys").json()["results"]
    second = api.post(f"{ORG}/signing-keys/rotate").json()
    revoke = f"{ORG}/signing-keys/{first['key_id']}/revoke"
    missing = api.post(revoke, {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["errors"]
    blank = api.post(revoke, {"reason": "  "}, format="json")
    assert blank.status_code == 400 and "reason" in blank.json()["errors"]
    unknown = api.post(f"{ORG}/signing-keys/0123456789abcdef/revoke", {"reason": "x"})
    assert unknown.status_code == 404
    # Only the outsider's own organisation, where acme's key is not found.
    outsider = published["outsider_api"].post(
        f"/api/v1/orgs/other/signing-keys/{first['key_id']}/revoke", {"reason": "x"}
    )
    assert outsider.status_code == 404
    refused = published["auditor_api"].post(revoke, {"reason": "x"}, format="json")
    assert refused.status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        done = api.post(revoke, {"reason": "private key in a public gist"}, format="json")
    assert done.status_code == 200, done.json()
    answer = done.json()
    assert answer["revoked"]["key_id"] == first["key_id"]
    assert answer["revoked"]["status"] == "revoked" and answer["revoked"]["revoked_at"]
    assert answer["revoked"]["revocation_reason"] == "private key in a public gist"
    assert answer["active"]["key_id"] == second["key_id"]
    assert (answer["rotated"], answer["reenrolment_needed"]) == (False, False)
    assert answer["teams_to_resign"] == 3  # every team was published with the first key
    current = Release.objects.filter(current=True)
    assert {r.signing_key.key_id for r in current} == {second["key_id"]}
    assert Release.objects.get(team_path=TEAM, current=True).revision == 3
    listed = api.get(f"{ORG}/signing-keys", {"status": "revoked"}).json()["results"]
    assert [k["key_id"] for k in listed] == [first["key_id"]]
    again = api.post(revoke, {"reason": "again"}, format="json")
    assert again.status_code == 400 and "key_id" in again.json()["errors"]


def test_revoking_the_active_key_through_the_api_says_machines_must_enrol_again(
    published: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    api = published["admin_api"]
    (only,) = api.get(f"{ORG}/signing-keys").json()["results"]
    with django_capture_on_commit_callbacks(execute=True):
        done = api.post(
            f"{ORG}/signing-keys/{only['key_id']}/revoke", {"reason": "leaked"}, format="json"
        )
    answer = done.json()
    assert (answer["rotated"], answer["reenrolment_needed"]) == (True, True)
    assert answer["active"]["status"] == "active" and answer["active"]["endorsed_by"] is None
    assert answer["active"]["key_id"] != only["key_id"]


# --- who may -------------------------------------------------------------------------------


WRITES = [
    ("publish-runs", {}),
    ("releases/rollback", {"team": TEAM, "to_revision": 1}),
    ("rollouts/start", {"team": TEAM, "percent": 30}),
    ("rollouts/promote", {"team": TEAM}),
    ("rollouts/abort", {"team": TEAM}),
    ("signing-keys/rotate", {}),
]


def test_an_auditor_reads_but_changes_nothing(published: dict[str, Any]) -> None:
    api = published["auditor_api"]
    assert api.get(f"{ORG}/releases").status_code == 200
    assert api.get(f"{ORG}/publish-runs").status_code == 200
    before = (PublishRun.objects.count(), Release.objects.count(), SigningKey.objects.count())
    for path, body in WRITES:
        refused = api.post(f"{ORG}/{path}", body, format="json")
        assert refused.status_code == 403, (path, refused.json())
    after = (PublishRun.objects.count(), Release.objects.count(), SigningKey.objects.count())
    assert after == before
    assert Release.objects.get(team_path=TEAM, current=True).revision == 2


def test_an_outsider_learns_nothing(published: dict[str, Any]) -> None:
    api = published["outsider_api"]
    run = PublishRun.objects.filter(organization=published["acme"]).first()
    assert run is not None
    for path in (
        "publish-runs",
        f"publish-runs/{run.pk}",
        "releases",
        f"releases/{release_id(1)}",
        f"releases/{release_id(1)}/files",
        f"releases/diff?team={TEAM}&from=1&to=2",
        "signing-keys",
    ):
        assert api.get(f"{ORG}/{path}").status_code == 404, path
    for path, body in WRITES:
        assert api.post(f"{ORG}/{path}", body, format="json").status_code == 404, path
    # Nor through its own organisation: acme's objects are not found there.
    assert api.get(f"/api/v1/orgs/other/releases/{release_id(1)}").status_code == 404
    assert api.get(f"/api/v1/orgs/other/publish-runs/{run.pk}").status_code == 404
    assert api.get("/api/v1/orgs/other/releases").json()["results"] == []


# --- cost -----------------------------------------------------------------------------------


def queries_of(api: APIClient, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        answer = api.get(path)
    assert answer.status_code == 200
    return len(queries)


def test_lists_cost_the_same_whatever_their_length(
    acme: dict[str, Any], publish: Callable[[str], dict[str, Any]]
) -> None:
    api = acme["admin_api"]
    publish(POLICY)
    paths = (f"{ORG}/releases", f"{ORG}/publish-runs", f"{ORG}/signing-keys")
    api.get(paths[0])  # the token's last use is recorded once a minute: not in the counts
    small = {path: queries_of(api, path) for path in paths}
    many = "".join(f"[teams.t{n}]\n" for n in range(30))
    publish(POLICY + many)
    publish(CHANGED + many)
    api.post(f"{ORG}/signing-keys/rotate")
    assert Release.objects.count() > 30 and PublishRun.objects.count() == 3
    assert {path: queries_of(api, path) for path in paths} == small
