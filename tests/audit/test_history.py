"""History: a team's policy and release as of any moment, replayed from the audit trail, checked
against the truth recorded live while a varied sequence of changes was made; the timeline of a
team's releases with the changes behind each; their API and page."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from policyhub.accounts.models import Role
from policyhub.accounts.services import api_token_create, membership_grant
from policyhub.audit.history import Line, node_undone, organization_undone
from policyhub.history.selectors import (
    CHANGES_SHOWN,
    NotThen,
    policy_as_of,
    release_as_of,
    team_releases,
    timeline_changes,
)
from policyhub.policies import document
from policyhub.policies.domain import OrgPolicy
from policyhub.policies.selectors import team_policy
from policyhub.policies.services import policy_apply, team_move
from policyhub.releases.models import Release
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.rollout import (
    release_rollout_abort,
    release_rollout_promote,
    release_rollout_start,
)
from policyhub.releases.services.runs import publish_run_request
from policyhub.teams.models import Team
from tests.conftest import BASE, OPERATOR, acting, person

START = tomllib.loads(
    BASE
    + """
[codex]
min_version = "0.125.0"
max_version = "0.169.0"
[requirements]
allowed_sandbox_modes = ["read-only", "workspace-write"]
[config]
model = "gpt-5.5"
model_provider = "openai"
[profiles.deep]
model_reasoning_effort = "high"
[teams.platform]
name = "Platform"
[teams.platform.mcp_servers.docs]
url = "https://docs.example.com/mcp"
[teams."platform/ci".config]
model = "codex-ci"
model_provider = "azure-eng"
web_search = "disabled"
[teams."platform/ci".profiles.fast]
model_reasoning_effort = "low"
[teams."platform/legacy".config]
sandbox_mode = "read-only"
[teams.batch.config]
model = "openai.gpt-oss-120b"
model_provider = "bedrock"
web_search = "disabled"
"""
)


@dataclass(frozen=True)
class Snapshot:
    """The live truth right after a step: every team (by id) at its path, the policy each one
    sees, the organisation's own, and each path's current release."""

    step: str
    moment: Any
    teams: dict[int, str]
    policies: dict[int, OrgPolicy]
    root: OrgPolicy
    releases: dict[str, tuple[int, int, int | None]]


class Story:
    """Changes made through the real services, a snapshot of the truth after each."""

    def __init__(self, acme: Any) -> None:
        self.acme = acme
        self.doc: dict[str, Any] = copy.deepcopy(START)
        self.snapshots: list[Snapshot] = []
        self.apply("start")

    def apply(self, step: str, change: Callable[[dict[str, Any]], None] | None = None) -> None:
        if change is not None:
            change(self.doc)
        policy_apply(organization=self.acme, wanted=document.from_dict(self.doc), actor=OPERATOR)
        self.snap(step)

    def move(self, path: str, parent: str | None) -> None:
        team = Team.objects.get(organization=self.acme, path=path)
        moved = team_move(team=team, parent_path=parent, actor=OPERATOR)
        teams = self.doc["teams"]
        for old in sorted(p for p in list(teams) if p == path or p.startswith(f"{path}/")):
            teams[moved.path + old[len(path) :]] = teams.pop(old)
        self.snap(f"move {path} to {moved.path}")

    def publish(self) -> None:
        run = publish_run_request(organization=self.acme, actor=OPERATOR)
        done = publish_run_execute(run_id=run.pk)
        assert done is not None and done.status == "succeeded", done and done.error
        self.snap("publish")

    def snap(self, step: str) -> None:
        self.acme.refresh_from_db()  # its name and Codex window are part of the policy
        teams = dict(
            Team.objects.filter(organization=self.acme).values_list("pk", "path").order_by("pk")
        )
        policies = {}
        for pk, path in teams.items():
            found = team_policy(self.acme, path)
            assert found is not None
            policies[pk] = found
        root = team_policy(self.acme, "")
        assert root is not None
        releases = {
            r.team_path: (
                r.revision,
                r.rollout_percent,
                r.previous.revision if r.previous and r.rollout_percent < 100 else None,
            )
            for r in Release.objects.filter(organization=self.acme, current=True).select_related(
                "previous"
            )
        }
        self.snapshots.append(Snapshot(step, timezone.now(), teams, policies, root, releases))


def set_in(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        table = doc
        for key in keys[:-1]:
            table = table.setdefault(key, {})
        if value is None:
            table.pop(keys[-1])
        else:
            table[keys[-1]] = value

    return change


def each(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        for one in changes:
            one(doc)

    return change


@pytest.fixture
def story(cast: dict[str, Any]) -> Story:
    """Every kind of change the policy knows, with publishes, rollouts and a rollback between."""
    told = Story(cast["acme"])
    told.publish()
    # Keys of the root and of a team; profiles and MCP servers created, changed and deleted.
    told.apply(
        "keys",
        each(
            set_in("requirements", "allowed_sandbox_modes", value=["read-only"]),
            set_in("config", "approval_policy", value="on-request"),
            set_in("teams", "platform/ci", "config", "model", value="gpt-5.5"),
        ),
    )
    told.apply(
        "profiles and MCP servers",
        each(
            set_in("profiles", "deep", value=None),
            set_in(
                "teams", "platform", "profiles", "review", value={"model_reasoning_effort": "high"}
            ),
            set_in(
                "teams", "platform/ci", "profiles", "fast", "model_reasoning_effort", value="medium"
            ),
            set_in(
                "teams", "platform/ci", "mcp_servers", "tracker", value={"command": "tracker-mcp"}
            ),
            set_in(
                "teams",
                "platform",
                "mcp_servers",
                "docs",
                "url",
                value="https://docs.example.com/v2",
            ),
        ),
    )
    told.publish()
    # Providers (created, changed, deleted), the Codex window and the organisation's name.
    told.apply(
        "providers",
        each(
            set_in("providers", "oci", value=None),
            set_in("providers", "bedrock", "region", value="us-east-1"),
            set_in(
                "providers",
                "bedrock-eu",
                value={"kind": "amazon-bedrock", "aws_profile": "eu", "region": "eu-west-1"},
            ),
            set_in("providers", "azure-eng", "deployments", value=["gpt-5.5", "codex-ci", "o4"]),
            set_in("codex", "min_version", value="0.140.0"),
            set_in("organization", "name", value="Acme Corporation"),
        ),
    )
    ci = Team.objects.get(organization=cast["acme"], path="platform/ci")
    release_rollout_start(organization=cast["acme"], team_path=ci.path, percent=30, actor=OPERATOR)
    told.snap("rollout at 30")
    release_rollout_promote(
        organization=cast["acme"], team_path=ci.path, percent=60, actor=OPERATOR
    )
    told.snap("rollout at 60")
    told.publish()  # platform/ci's next revision replaces one still at 60 %
    release_rollout_start(organization=cast["acme"], team_path=ci.path, percent=40, actor=OPERATOR)
    told.snap("rollout at 40")
    release_rollout_abort(organization=cast["acme"], team_path=ci.path, actor=OPERATOR)
    told.snap("rollout aborted")
    # New teams, then a subtree moved, renames.
    told.apply(
        "new teams",
        each(
            set_in("teams", "platform/web", value={"name": "Web", "config": {"model": "o4-mini"}}),
            set_in(
                "teams",
                "platform/web/ui",
                value={"requirements": {"allowed_sandbox_modes": ["read-only"]}},
            ),
        ),
    )
    told.move("platform/web", None)
    told.publish()
    told.apply(
        "renames",
        each(
            set_in("teams", "batch", "name", value="Batch jobs"),
            set_in("teams", "web/ui", "name", value="UI"),
            set_in("teams", "web/ui", "config", value={"sandbox_mode": "read-only"}),
        ),
    )
    # Deleted; one path taken again by a new team; the moved subtree moved again, its old top
    # path taken by a new team too.
    told.apply(
        "deletions",
        each(set_in("teams", "batch", value=None), set_in("teams", "platform/legacy", value=None)),
    )
    told.apply(
        "batch again",
        set_in(
            "teams",
            "batch",
            value={"config": {"model": "openai.gpt-oss-120b", "model_provider": "bedrock-eu"}},
        ),
    )
    told.move("web", "batch")
    told.apply(
        "web again",
        each(
            set_in("teams", "web", value={"name": "Web (new)"}),
            set_in("teams", "batch/web/ui", "config", "model", value="gpt-5.5"),
            set_in("requirements", "allowed_sandbox_modes", value=["read-only", "workspace-write"]),
        ),
    )
    told.publish()
    release_rollback(
        organization=cast["acme"], team_path="platform/ci", to_revision=1, actor=OPERATOR
    )
    told.snap("rollback")
    told.apply("one more key", set_in("teams", "platform/ci", "config", "model", value="codex-ci"))
    told.publish()
    return told


# --- the policy as of a moment, against the truth ----------------------------------------------


def test_the_policy_as_of_every_moment_is_the_live_policy_then_for_every_team(
    story: Story,
) -> None:
    acme = story.acme
    every_path = {path for snap in story.snapshots for path in snap.teams.values()}
    assert {"platform/web", "web", "batch/web", "batch/web/ui", "web/ui"} <= every_path
    for snap in story.snapshots:
        assert policy_as_of(acme, snap.moment).policy == snap.root, snap.step
        for pk, path in snap.teams.items():
            then = policy_as_of(acme, snap.moment, path, path_is_then=True)
            assert (then.path, then.policy) == (path, snap.policies[pk]), (snap.step, path)
        for path in every_path - set(snap.teams.values()):
            with pytest.raises(NotThen, match=f"no team {path} in acme"):
                policy_as_of(acme, snap.moment, path, path_is_then=True)


def test_a_team_named_by_its_path_now_is_followed_back_through_moves(story: Story) -> None:
    acme, last = story.acme, story.snapshots[-1]
    assert last.teams  # the teams now, by id
    for pk, path_now in last.teams.items():
        for snap in story.snapshots:
            if pk in snap.teams:
                then = policy_as_of(acme, snap.moment, path_now)
                assert then.path == snap.teams[pk], (snap.step, path_now)
                assert then.path_now == path_now
                assert then.policy == snap.policies[pk], (snap.step, path_now)
            else:
                # Not there yet, or another team was at its path then (web, batch).
                with pytest.raises(NotThen, match="it came at"):
                    policy_as_of(acme, snap.moment, path_now)


def test_a_deleted_team_is_found_by_its_last_path(story: Story) -> None:
    acme = story.acme
    legacy = next(pk for pk, path in story.snapshots[0].teams.items() if path == "platform/legacy")
    seen = [snap for snap in story.snapshots if legacy in snap.teams]
    assert seen and len(seen) < len(story.snapshots)
    for snap in seen:
        then = policy_as_of(acme, snap.moment, "platform/legacy")
        assert then.path_now is None
        assert then.policy == snap.policies[legacy]
    # The re-created batch is the team at "batch" now: the first batch is not it.
    first_batch = policy_as_of(acme, story.snapshots[0].moment, "batch", path_is_then=True)
    assert first_batch.path_now is None
    with pytest.raises(NotThen, match=r"there was no team batch in acme at .*: it came at"):
        policy_as_of(acme, story.snapshots[0].moment, "batch")


def test_moments_outside_the_organisations_life_are_refused_by_field(story: Story) -> None:
    acme = story.acme
    with pytest.raises(NotThen, match="in the future") as future:
        policy_as_of(acme, timezone.now() + timedelta(minutes=5), "platform")
    assert [issue.path for issue in future.value.issues] == ["at"]
    with pytest.raises(NotThen, match="organisation acme was created later"):
        policy_as_of(acme, acme.created_at - timedelta(seconds=1))
    with pytest.raises(NotThen, match="no team nowhere in acme") as unknown:
        policy_as_of(acme, story.snapshots[-1].moment, "nowhere")
    assert [issue.path for issue in unknown.value.issues] == ["path"]


def test_replay_reads_only_events_after_the_moment(
    story: Story, django_assert_max_num_queries: Any
) -> None:
    """The newest moment costs a handful of queries, and each read of the trail is bounded below
    by the moment's position (never the whole trail)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    acme, last = story.acme, story.snapshots[-1]
    with CaptureQueriesContext(connection) as queries:
        then = policy_as_of(acme, last.moment, "batch/web/ui")
    assert then.policy == last.policies[Team.objects.get(path="batch/web/ui").pk]
    trail_reads = [q["sql"] for q in queries.captured_queries if '"audit_auditevent"' in q["sql"]]
    assert len(queries.captured_queries) <= 14
    # The moment's position, then reads after it.
    assert "created_at" in trail_reads[0]
    assert all('"id" >' in sql for sql in trail_reads[1:]), trail_reads


def test_the_undo_of_each_kind_of_line() -> None:
    """The plan lines as policy_apply records them, undone one by one."""

    def event(action: str, key: str, before: Any = None) -> Line:
        return Line(0, f"policy.{action}", key, before, timezone.now())

    node = {"name": "CI", "config": {"model": "b"}, "profiles": {"fast": {"x": 1}}}
    assert node_undone(
        node,
        [
            event("change", "team p name", "Old"),
            event("change", "team p config.model", "a"),
            event("change", "team p config.sandbox_mode"),
            event("create", "team p profile fast"),
            event("delete", "team p mcp server docs", {"command": "d"}),
            event("change", "team p mcp server docs command", "e"),
        ],
    ) == {
        "name": "Old",
        "requirements": {},
        "config": {"model": "a"},
        "profiles": {},
        "mcp_servers": {"docs": {"command": "d"}},
    }
    state = {
        "name": "New",
        "providers": {"x": {"kind": "openai", "region": "b"}},
        "codex": {"min_version": "0.169.0", "max_version": "0.169.0", "managed_pins": ["a"]},
        "root": {"requirements": {}, "config": {}, "profiles": {}, "mcp_servers": {}},
    }
    assert organization_undone(
        state,
        [
            event("change", "organization name", "Old"),
            event("create", "provider x"),
            event("change", "provider x region", "a"),
            event("change", "codex managed_pins"),
            event("change", "organization requirements.allowed_sandbox_modes", ["read-only"]),
        ],
    ) == {
        "name": "Old",
        "providers": {},
        "codex": {"min_version": "0.169.0", "max_version": "0.169.0"},
        "root": {
            "requirements": {"allowed_sandbox_modes": ["read-only"]},
            "config": {},
            "profiles": {},
            "mcp_servers": {},
        },
    }


# --- the release then -------------------------------------------------------------------------


def test_the_release_as_of_every_moment_is_the_one_current_then(story: Story) -> None:
    acme = story.acme
    paths = {path for snap in story.snapshots for path in snap.releases}
    for snap in story.snapshots:
        for path in paths:
            found = release_as_of(acme, path, snap.moment)
            got = (
                (
                    found.release.revision,
                    found.rollout_percent,
                    found.previous.revision if found.previous else None,
                )
                if found
                else None
            )
            assert got == snap.releases.get(path), (snap.step, path)
    steps = [snap.step for snap in story.snapshots]
    assert {"rollout at 30", "rollout at 60", "rollout aborted", "rollback"} <= set(steps)


# --- the timeline -------------------------------------------------------------------------------


def test_the_timeline_names_the_changes_behind_each_release(story: Story) -> None:
    acme = story.acme
    releases = list(team_releases(acme, "platform/ci"))
    entries = {
        entry.release.revision: entry for entry in timeline_changes(acme, "platform/ci", releases)
    }
    revisions = sorted(entries)
    assert revisions == list(range(1, len(revisions) + 1))
    keys = {r: [event.object_key for event in entries[r].changes] for r in revisions}
    # The first release: the team's creation and everything above it.
    assert "team platform/ci" in keys[1] and "team platform" in keys[1]
    assert "provider openai" in keys[1]
    # The second: the keys and profiles changed before it, root and team, not batch's.
    assert {
        "team platform/ci config.model",
        "organization requirements.allowed_sandbox_modes",
        "team platform profile review",
        "team platform/ci mcp server tracker",
        "team platform mcp server docs url",
    } <= set(keys[2])
    assert not any(key.startswith("team batch") for r in revisions for key in keys[r])
    # Provider and window changes lie behind the next publish of the team.
    assert "provider oci" in keys[3] and "codex min_version" in keys[3]
    rollback = next(entry for entry in entries.values() if entry.rollback_of is not None)
    assert rollback.rollback_of == 1 and rollback.changes == []
    newest = entries[revisions[-1]]
    assert [event.object_key for event in newest.changes] == ["team platform/ci config.model"]
    assert all(not entry.more for entry in entries.values())
    for entry in entries.values():
        assert [e.id for e in entry.changes] == sorted((e.id for e in entry.changes), reverse=True)


def test_the_timeline_shows_the_moves_of_a_moved_team_and_caps_each_release(
    cast: dict[str, Any],
) -> None:
    acme = cast["acme"]
    story = Story(acme)
    many = {f"k{n}": {"command": f"tool-{n}"} for n in range(CHANGES_SHOWN + 3)}
    story.apply("many", set_in("teams", "platform/ci", "mcp_servers", value=many))
    story.move("platform/ci", None)
    story.publish()
    [entry] = timeline_changes(acme, "ci", list(team_releases(acme, "ci")))
    assert len(entry.changes) == CHANGES_SHOWN and entry.more
    assert entry.changes[0].action == "policy.move"
    assert entry.changes[0].after == {"path": "ci"}


# --- the API and the page ---------------------------------------------------------------------


def api_for(user: Any, acme: Any, role: str) -> APIClient:
    _, secret = api_token_create(actor=acting(user), organization=acme, name="history", role=role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_the_as_of_api_answers_policy_files_and_release(story: Story, cast: dict[str, Any]) -> None:
    acme = story.acme
    viewer = person("viewer")
    membership_grant(actor=OPERATOR, organization=acme, user=viewer, role=Role.VIEWER)
    api = api_for(viewer, acme, Role.VIEWER)
    snap = next(s for s in story.snapshots if s.step == "rollout at 60")
    url = reverse("team-as-of", kwargs={"slug": "acme", "path": "platform/ci"})
    answer = api.get(url, {"at": snap.moment.isoformat()})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["path_then"] == body["path_now"] == "platform/ci"
    assert body["effective"]["config"]["model"] == "gpt-5.5"
    assert body["effective"]["provenance"]["config"]["model"] == "platform/ci"
    assert body["chain"] == ["acme (organisation)", "platform", "platform/ci"]
    assert body["codex_window"] == ["0.140.0", "0.169.0"]
    names = {f["name"] for s in body["files"] for f in s["files"]}
    assert {"requirements.toml", "config.toml"} <= names
    assert body["release"]["revision"] == 2 and body["release"]["rollout_percent"] == 60
    assert body["release"]["previous_revision"] == 1
    # A path then, and a moment that is refused by field.
    moved = api.get(
        reverse("team-as-of", kwargs={"slug": "acme", "path": "platform/web/ui"}),
        {
            "at": next(s for s in story.snapshots if s.step == "new teams").moment.isoformat(),
            "path_is": "then",
        },
    )
    assert moved.status_code == 200 and moved.json()["path_now"] == "batch/web/ui"
    early = api.get(
        reverse("team-as-of", kwargs={"slug": "acme", "path": "web"}),
        {"at": story.snapshots[0].moment.isoformat()},
    )
    assert early.status_code == 400
    assert "it came at" in early.json()["errors"]["at"][0]
    assert api.get(url, {"at": "yesterday"}).json()["errors"].keys() == {"at"}


def test_the_timeline_api_pages_releases_for_auditors(story: Story, cast: dict[str, Any]) -> None:
    api = api_for(cast["auditor"], story.acme, Role.AUDITOR)
    url = reverse("team-timeline", kwargs={"slug": "acme", "path": "platform/ci"})
    first = api.get(url, {"page_size": 2})
    assert first.status_code == 200, first.content
    body = first.json()
    newest = Release.objects.filter(team_path="platform/ci").order_by("-revision")[0].revision
    assert [e["revision"] for e in body["results"]] == [newest, newest - 1]
    assert body["results"][0]["changes"][0]["object_key"] == "team platform/ci config.model"
    assert body["results"][1]["rollback_of"] == 1
    rest = api.get(body["next"]).json()
    assert [e["revision"] for e in rest["results"]] == [newest - 2, newest - 3]
    gone = api.get(reverse("team-timeline", kwargs={"slug": "acme", "path": "no/such"}))
    assert gone.status_code == 404


def test_the_history_page_shows_the_policy_then_and_the_timeline(
    story: Story, cast: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    client = Client()
    client.force_login(cast["auditor"])
    snap = next(s for s in story.snapshots if s.step == "rollout at 30")
    url = reverse("team-history", kwargs={"slug": "acme", "path": "platform/ci"})
    at = timezone.localtime(snap.moment, timezone.get_fixed_timezone(0)).strftime(
        "%Y-%m-%dT%H:%M:%S.%f"
    )
    with django_assert_max_num_queries(40):
        answer = client.get(url, {"at": at})
    assert answer.status_code == 200
    text = answer.content.decode()
    assert "History of platform/ci" in text
    assert "<code>gpt-5.5</code>" in text  # config.model then
    assert "Revision 2" in text and "30&nbsp;%" in text
    assert "config.toml" in text
    assert "team platform/ci config.model" in text  # the timeline, for an auditor
    assert (
        "<code>[&quot;read-only&quot;, &quot;workspace-write&quot;]</code> → "
        "<code>[&quot;read-only&quot;]</code>"
    ) in text
    assert "rollback to the files of revision 1" in text
    bad = client.get(url, {"at": "2000-01-01T00:00"}).content.decode()
    assert "was created later" in bad
    # Who may not read the audit trail sees the releases, not who changed what.
    viewer = person("viewer")
    membership_grant(actor=OPERATOR, organization=story.acme, user=viewer, role=Role.VIEWER)
    client.force_login(viewer)
    seen = client.get(url, {"at": at}).content.decode()
    assert "<code>gpt-5.5</code>" in seen and "Made by" in seen
    assert "team platform/ci config.model" not in seen


def test_the_team_page_links_its_history(story: Story, cast: dict[str, Any]) -> None:
    client = Client()
    client.force_login(cast["admin"])
    text = client.get(
        reverse("team", kwargs={"slug": "acme", "path": "platform/ci"})
    ).content.decode()
    assert reverse("team-history", kwargs={"slug": "acme", "path": "platform/ci"}) in text


def test_the_release_diff_page_compares_any_two_revisions_file_by_file_per_codex_set(
    story: Story, cast: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revision 1 has two file sets (profile tables before Codex 0.134, profile files from it);
    revision 3 was made for a narrower window. Every file of every set shows under the versions
    it serves, even for revisions older than the selects offer."""
    from policyhub.releases.selectors import file_sets, release_of_team_with_files
    from policyhub.web.labels import codex_label
    from policyhub.web.views import releases as release_pages

    monkeypatch.setattr(release_pages, "DIFF_CHOICES", 2)
    client = Client()
    client.force_login(cast["auditor"])
    url = reverse("web-team-releases", kwargs={"slug": "acme", "path": "platform/ci"})
    text = client.get(url, {"old": "1", "new": "3"}).content.decode()
    assert "From revision 1 to revision 3." in text
    diff = text.split("From revision 1 to revision 3.", 1)[1]
    for label in ("Codex 0.125.0 \N{EN DASH} 0.133.x", "Codex 0.134.0 \N{EN DASH} 0.139.x"):
        assert f"<h3>{label}</h3>" in diff
    assert "<h3>Codex 0.140.0 and later</h3>" in diff
    for revision in (1, 3):
        release = release_of_team_with_files(story.acme, "platform/ci", revision)
        assert release is not None
        sets = file_sets(release)
        assert len(sets) == (2 if revision == 1 else 1)
        for stored in sets:
            assert codex_label(stored.spans)
            for name in stored.files:
                assert f"<code>{name}</code>" in diff, (revision, name)
    assert "profile" in diff and "fast" in diff
    refused = client.get(url, {"old": "99", "new": "3"}).content.decode()
    assert "Select a valid choice" in refused
