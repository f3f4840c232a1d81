"""Publishing: signed, immutable releases for exactly the changed teams, or none at all."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from policyhub.audit.models import AuditEvent
from policyhub.policies.models import ProviderEndpoint
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.releases import signing
from policyhub.releases.models import PublishRun, Release, SigningKey
from policyhub.releases.services.keys import signing_key_rotate
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.runs import publish_run_request
from policyhub.rendering.render import render_release
from tests.conftest import OPERATOR, THREE_TEAMS, acting, make_policy

POLICY = THREE_TEAMS


def apply(cast: dict[str, Any], text: str) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(text), actor=acting(cast["admin"]))


def publish(cast: dict[str, Any]) -> PublishRun:
    run = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
    done = publish_run_execute(run_id=run.pk)
    assert done is not None
    return done


def revisions(cast: dict[str, Any]) -> dict[str, int]:
    return {
        r.team_path: r.revision
        for r in Release.objects.filter(organization=cast["acme"], current=True)
    }


def verifies(release: Release) -> bool:
    return signing.verify(
        release.signing_key.public_key, release.manifest.encode(), release.signature
    )


def test_first_publish_signs_one_release_per_team(cast: dict[str, Any]) -> None:
    apply(cast, POLICY)
    run = publish(cast)
    assert (run.status, run.teams_rendered, run.releases_created) == ("succeeded", 3, 3)
    assert revisions(cast) == {"batch": 1, "platform": 1, "platform/ci": 1}
    for release in Release.objects.all():
        assert verifies(release)
        manifest = json.loads(release.manifest)
        assert manifest["files"] == release.hashes
        assert (manifest["team"], manifest["revision"]) == (release.team_path, release.revision)
        assert f"revision {release.revision}." in release.files["config.toml"]


def test_releases_and_their_audit_events_are_stored_in_one_statement_each(
    cast: dict[str, Any],
) -> None:
    apply(cast, POLICY)
    with CaptureQueriesContext(connection) as queries:
        publish(cast)
    inserts = [q["sql"] for q in queries if q["sql"].startswith("INSERT INTO")]
    releases = [sql for sql in inserts if sql.startswith('INSERT INTO "releases_release" ')]
    events = [
        sql
        for sql in inserts
        if sql.startswith('INSERT INTO "audit_auditevent" ') and "release.publish" in sql
    ]
    assert len(releases) == 1 and len(events) == 1
    # Plain rows: the array form (UNNEST) escapes every body's quotes in Python, twice as slow.
    assert "UNNEST" not in releases[0] and " VALUES " in releases[0]
    assert AuditEvent.objects.filter(action="release.publish").count() == 3


def test_publishing_again_without_a_change_creates_nothing(cast: dict[str, Any]) -> None:
    apply(cast, POLICY)
    publish(cast)
    events = AuditEvent.objects.filter(action="release.publish").count()
    run = publish(cast)
    assert (run.status, run.releases_created) == ("succeeded", 0)
    assert Release.objects.count() == 3
    assert AuditEvent.objects.filter(action="release.publish").count() == events


def test_only_teams_whose_files_changed_get_a_new_revision(cast: dict[str, Any]) -> None:
    apply(cast, POLICY)
    publish(cast)
    apply(cast, POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"'))
    assert publish(cast).releases_created == 1
    assert revisions(cast) == {"batch": 1, "platform": 1, "platform/ci": 2}
    # A change at the root reaches the whole tree.
    apply(
        cast,
        POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"')
        + "[requirements]\nallow_login_shell = false\n",
    )
    assert publish(cast).releases_created == 3
    assert revisions(cast) == {"batch": 2, "platform": 2, "platform/ci": 3}
    assert Release.objects.filter(team_path="platform/ci").count() == 3


def test_a_publish_renders_only_the_teams_whose_inputs_changed(cast: dict[str, Any]) -> None:
    apply(cast, POLICY)
    run = publish(cast)
    assert (run.teams, run.teams_rendered, run.releases_created) == (3, 3, 3)
    run = publish(cast)
    assert (run.teams, run.teams_rendered, run.releases_created) == (3, 0, 0)
    # A node: the team and the teams below it.
    text = POLICY.replace("[teams.platform]", '[teams.platform.config]\nmodel = "gpt-5.5-mini"')
    apply(cast, text)
    run = publish(cast)
    assert (run.teams_rendered, run.releases_created) == (2, 1)  # platform/ci sets its own model
    # An endpoint: the teams that name it (platform/ci names azure-eng), not the others.
    endpoint = ProviderEndpoint.objects.get(organization=cast["acme"], name="azure-eng")
    endpoint.settings = {**endpoint.settings, "env_key": "AZURE_OPENAI_ENG_KEY"}
    endpoint.save()
    run = publish(cast)
    assert (run.teams_rendered, run.releases_created) == (1, 1)
    assert revisions(cast) == {"batch": 1, "platform": 2, "platform/ci": 2}
    # The Codex window: every team.
    apply(cast, text + '[codex]\nmin_version = "0.160.0"\nmax_version = "0.169.0"\n')
    assert publish(cast).teams_rendered == 3


def test_incremental_publishes_store_what_full_renders_make(cast: dict[str, Any]) -> None:
    """Edits of every kind, each published: after each, every team's current release holds what
    rendering the whole stored policy from scratch gives."""
    edits = [
        POLICY,
        POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"'),
        POLICY + '[teams."platform/ci/nightly".config]\nmodel = "gpt-5.5"\n',
        POLICY.replace("[teams.batch.config]", '[teams."platform/batch".config]'),
        POLICY + "[requirements]\nallow_login_shell = false\n",
        POLICY.replace('model_provider = "bedrock"', 'model_provider = "openai"\n'),
        POLICY + '[teams.platform.profiles.fast]\nmodel_reasoning_effort = "low"\n',
    ]
    for text in edits:
        apply(cast, text)
        run = publish(cast)
        policy = org_policy(cast["acme"])
        stored = {
            r.team_path: r.content_digest
            for r in Release.objects.filter(organization=cast["acme"], current=True)
            if r.team_path in policy.teams
        }
        full = {
            path: render_release(policy, path, revision="1").content_digest for path in policy.teams
        }
        assert stored == full, text
        assert run.teams == len(policy.teams)


def test_a_rollback_is_kept_by_publishes_that_skip_the_team_and_left_by_a_change(
    cast: dict[str, Any],
) -> None:
    apply(cast, POLICY)
    publish(cast)
    edited = POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"')
    apply(cast, edited)
    publish(cast)
    release_rollback(
        organization=cast["acme"], team_path="platform/ci", to_revision=1, actor=OPERATOR
    )
    rolled_back = Release.objects.get(team_path="platform/ci", current=True)
    # Its inputs render to what it last got from a publish: left out, the rollback stays.
    run = publish(cast)
    assert (run.teams_rendered, run.releases_created) == (0, 0)
    assert Release.objects.get(team_path="platform/ci", current=True).pk == rolled_back.pk
    # Its inputs change: rendered, and released over the rollback.
    apply(
        cast,
        edited.replace(
            'model_provider = "azure-eng"',
            'model_provider = "azure-eng"\nmodel_reasoning_effort = "low"',
        ),
    )
    run = publish(cast)
    assert (run.teams_rendered, run.releases_created) == (1, 1)
    assert revisions(cast)["platform/ci"] == 4


def test_an_invalid_policy_fails_the_run_and_stores_nothing(cast: dict[str, Any]) -> None:
    apply(cast, POLICY)
    # Break the stored policy behind the services' back, as a bad migration or manual edit could.
    from policyhub.policies.models import PolicyNode

    PolicyNode.objects.filter(team__path="batch").update(config={"sandbox_mode": "full-access"})
    run = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
    with pytest.raises(Exception, match="error"):
        publish_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "error" in run.error and run.finished_at is not None
    assert not Release.objects.exists()


def test_a_run_is_claimed_once(cast: dict[str, Any]) -> None:
    apply(cast, POLICY)
    run = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
    assert publish_run_execute(run_id=run.pk) is not None
    assert publish_run_execute(run_id=run.pk) is None
    assert Release.objects.count() == 3


def test_a_running_run_is_taken_up_again_only_under_its_own_claim(cast: dict[str, Any]) -> None:
    """A worker that lost the database mid-publish, and could not hand the run back, resumes
    it by its claim (the attempt number); nobody else may before the lease runs out."""
    apply(cast, POLICY)
    run = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
    # As the interrupted worker left it: claimed (attempt 1), running, lease still valid.
    PublishRun.objects.filter(pk=run.pk).update(
        status="running", attempts=1, lease_expires_at=timezone.now() + timedelta(minutes=10)
    )
    assert publish_run_execute(run_id=run.pk) is None
    assert publish_run_execute(run_id=run.pk, claim=2) is None
    done = publish_run_execute(run_id=run.pk, claim=1)
    assert done is not None and (done.status, done.attempts) == ("succeeded", 2)
    assert publish_run_execute(run_id=run.pk, claim=1) is None  # finished: nothing to resume
    assert Release.objects.count() == 3


def test_rotation_keeps_old_releases_verifiable_and_signs_new_ones_with_the_new_key(
    cast: dict[str, Any],
) -> None:
    apply(cast, POLICY)
    publish(cast)
    old = SigningKey.objects.get(status="active")
    new = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    old.refresh_from_db()
    assert (old.status, new.status) == ("retired", "active") and old.key_id != new.key_id
    apply(cast, POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"'))
    publish(cast)
    latest = Release.objects.get(team_path="platform/ci", current=True)
    assert latest.signing_key == new and verifies(latest)
    assert all(verifies(r) for r in Release.objects.filter(signing_key=old))
    tampered = latest.manifest.replace('"revision":2', '"revision":3')
    assert tampered != latest.manifest
    assert not signing.verify(new.public_key, tampered.encode(), latest.signature)
    assert not signing.verify(old.public_key, latest.manifest.encode(), latest.signature)


def test_private_keys_are_stored_encrypted(cast: dict[str, Any]) -> None:
    key = signing_key_rotate(organization=cast["acme"], actor=OPERATOR)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stored = bytes(key.private_key_encrypted)
    assert len(stored) > 32
    with pytest.raises(ValueError):
        Ed25519PrivateKey.from_private_bytes(stored)


def test_organisations_publish_independently(cast: dict[str, Any]) -> None:
    apply(cast, POLICY)
    publish(cast)
    assert not Release.objects.filter(organization=cast["other"]).exists()
    assert not SigningKey.objects.filter(organization=cast["other"]).exists()


def test_every_beat_entry_names_a_registered_task() -> None:
    from django.conf import settings

    from policyhub.celery import app

    app.loader.import_default_modules()
    names = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert names == {
        "policyhub.releases.tasks.publish_due_change_sets_task",
        "policyhub.releases.tasks.publish_runs_recover_task",
        "policyhub.releases.tasks.releases_resign_recover_task",
    }
    assert names <= set(app.tasks)


def test_a_release_carries_the_provenance_of_every_value(cast: dict[str, Any]) -> None:
    apply(cast, POLICY)
    publish(cast)
    release = Release.objects.get(team_path="platform/ci", current=True)
    assert release.provenance["config"]["model"] == "platform/ci"
    assert release.provenance["config"]["model_provider"] == "platform/ci"
    platform = Release.objects.get(team_path="platform", current=True)
    assert platform.provenance["config"]["model"] == "acme (organisation)"
    assert platform.provenance["config"]["forced_login_method"] == "endpoint openai (derived)"
