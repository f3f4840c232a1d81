"""Revoking a compromised signing key, on the real database: the key, its successor and who
endorses it, the signed revocation list and self-revocations, every served release signed again
by the active key (staged rollouts included) with the same files, the audit trail, and the
command line. The re-signing task runs in-process at commit, as a worker would."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from policyhub.audit.models import AuditEvent
from policyhub.celery import app as celery_app
from policyhub.errors import ApplicationError
from policyhub.policies.services import policy_apply
from policyhub.releases import signing
from policyhub.releases.models import Release, RevocationList, SigningKey
from policyhub.releases.selectors import release_for_device, releases_to_resign
from policyhub.releases.services.keys import signing_key_rotate
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.resign import releases_resign
from policyhub.releases.services.revocation import signing_key_revoke
from policyhub.releases.services.rollout import release_rollout_start
from policyhub.releases.services.runs import publish_run_request
from policyhub.releases.tasks import KEY_REVOCATION, releases_resign_recover_task
from tests.conftest import THREE_TEAMS, acting, make_policy

pytestmark = [pytest.mark.django_db(transaction=True)]

TEAM = "platform/ci"
# Two file sets for platform/ci (its profile is a table before Codex 0.134, a file from it on),
# so re-signing must carry every set of a release.
WINDOW = '[codex]\nmin_version = "0.125.0"\nmax_version = "0.169.0"\n'
POLICY = (
    WINDOW + THREE_TEAMS + '[teams."platform/ci".profiles.deep]\nmodel_reasoning_effort = "high"\n'
)
CHANGED = POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"')
DEVICES = [f"00000000-0000-4000-8000-{n:012d}" for n in range(200)]


@pytest.fixture(autouse=True)
def worker_in_process() -> Iterator[None]:
    """The re-signing task runs in this process when the revocation commits."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = eager


def publish(cast: dict[str, Any], text: str) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(text), actor=acting(cast["admin"]))
    run = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
    # The worker ran it in this process at the commit (or, inside a test's transaction, here).
    publish_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error


def key(key_id: str) -> SigningKey:
    return SigningKey.objects.get(key_id=key_id)


def active(cast: dict[str, Any]) -> SigningKey:
    return SigningKey.objects.get(organization=cast["acme"], status="active")


def current(cast: dict[str, Any], team: str = TEAM) -> Release:
    return Release.objects.get(organization=cast["acme"], team_path=team, current=True)


def verifies(release: Release | Any) -> bool:
    signer = release.signing_key if isinstance(release, Release) else release.release.signing_key
    return signing.verify(signer.public_key, release.manifest.encode(), release.signature)


def bodies(release: Release) -> list[dict[str, str]]:
    """Every file set's files without their header lines (which name the revision)."""
    sets = [release.files, *(v.files for v in release.variants.order_by("id"))]
    return [{name: text.split("\n", 2)[2] for name, text in files.items()} for files in sets]


def event_after(event: AuditEvent) -> dict[str, Any]:
    return dict(event.after or {})


def revoke(cast: dict[str, Any], key_id: str, reason: str = "laptop stolen") -> Any:
    return signing_key_revoke(
        actor=acting(cast["owner"]), organization=cast["acme"], key_id=key_id, reason=reason
    )


@pytest.fixture
def rotated(cast: dict[str, Any]) -> dict[str, Any]:
    """Every team published with a first key, which was then rotated: platform/ci republished
    with the second. Returns the cast with `first` and `second` (the active key)."""
    publish(cast, POLICY)
    first = active(cast)
    second = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    publish(cast, CHANGED)
    return {**cast, "first": first, "second": second}


# --- the key and the list -------------------------------------------------------------------


def test_a_retired_key_is_revoked_with_its_list_and_its_own_signature(
    rotated: dict[str, Any],
) -> None:
    cast, first, second = rotated, rotated["first"], rotated["second"]
    done = revoke(cast, first.key_id)
    first.refresh_from_db()
    assert (first.status, first.revocation_reason) == ("revoked", "laptop stolen")
    assert first.revoked_at is not None and first.retired_at is not None
    assert (done.rotated, done.reenrolment_needed, done.active) == (False, False, second)
    assert active(cast) == second
    # The key's own signature over its revocation: it proves itself.
    assert signing.verify(
        first.public_key,
        signing.self_revocation_message("acme", first.key_id, first.revoked_at),
        first.self_revocation,
    )
    # The list, signed by the active key, names it.
    listed = RevocationList.objects.get(organization=cast["acme"])
    assert listed.signing_key == second
    assert signing.verify(second.public_key, listed.statement.encode(), listed.signature)
    statement = json.loads(listed.statement)
    assert statement == {
        "purpose": "policyhub-key-revocations",
        "organization": "acme",
        "revoked": [{"key_id": first.key_id, "revoked_at": signing.timestamp(first.revoked_at)}],
        "issued_at": signing.timestamp(listed.issued_at),
    }
    assert signing.canonical_json(statement).decode() == listed.statement
    event = AuditEvent.objects.get(action="signing_key.revoke")
    assert (event.object_key, event.reason, event.actor_label) == (
        first.key_id,
        "laptop stolen",
        "owner@example.com",
    )
    assert event.before == {"key_id": first.key_id, "status": "retired"}
    assert (
        event_after(event)["active_key"] == second.key_id
        and event_after(event)["status"] == "revoked"
    )


def test_each_revocation_issues_a_newer_list_naming_every_revoked_key(
    rotated: dict[str, Any],
) -> None:
    cast = rotated
    revoke(cast, rotated["first"].key_id)
    earlier = RevocationList.objects.get(organization=cast["acme"])
    done = revoke(cast, rotated["second"].key_id, "leaked in a build log")
    later = RevocationList.objects.get(organization=cast["acme"])
    assert later.pk == earlier.pk and later.issued_at > earlier.issued_at
    assert later.signing_key == done.active  # the key made when the active one went
    names = [entry["key_id"] for entry in json.loads(later.statement)["revoked"]]
    assert names == [rotated["first"].key_id, rotated["second"].key_id]
    assert signing.verify(done.active.public_key, later.statement.encode(), later.signature)


def test_revoking_the_active_key_endorses_its_successor_by_the_newest_retired_key(
    rotated: dict[str, Any],
) -> None:
    cast, first, second = rotated, rotated["first"], rotated["second"]
    third = signing_key_rotate(organization=cast["acme"], actor=acting(cast["owner"]))
    done = revoke(cast, third.key_id)
    new = done.active
    assert done.rotated and not done.reenrolment_needed
    assert new.status == "active" and new.key_id not in (first.key_id, second.key_id, third.key_id)
    # Not the revoked key: the newest retired one, whose signature over the new key verifies.
    assert new.endorsed_by == second
    assert signing.verify(
        second.public_key, signing.endorsement_message(new.key_id, new.public_key), new.endorsement
    )
    assert not signing.verify(
        third.public_key, signing.endorsement_message(new.key_id, new.public_key), new.endorsement
    )
    rotation = AuditEvent.objects.get(action="signing_key.rotate", object_key=new.key_id)
    assert event_after(rotation)["endorsed_by"] == second.key_id
    assert rotation.before == {"key_id": third.key_id, "status": "revoked"}


def test_revoking_the_only_key_leaves_its_successor_unendorsed(cast: dict[str, Any]) -> None:
    publish(cast, POLICY)
    only = active(cast)
    done = revoke(cast, only.key_id)
    assert done.rotated and done.reenrolment_needed
    assert done.active.endorsed_by is None and done.active.endorsement == ""


def test_a_revocation_is_refused_naming_the_field(rotated: dict[str, Any]) -> None:
    cast = rotated
    for key_id, reason, field in (
        ("0123456789abcdef", "lost", "key_id"),
        (rotated["first"].key_id, "   ", "reason"),
        (rotated["first"].key_id, "x" * 2001, "reason"),
        (rotated["first"].key_id, "bell\x07", "reason"),
    ):
        with pytest.raises(ApplicationError) as refused:
            revoke(cast, key_id, reason)
        assert [issue.path for issue in refused.value.issues] == [field], (key_id, reason)
    revoke(cast, rotated["first"].key_id)
    with pytest.raises(ApplicationError, match="already revoked") as again:
        revoke(cast, rotated["first"].key_id)
    assert [issue.path for issue in again.value.issues] == ["key_id"]
    # Another organisation's key is not this one's to revoke.
    theirs = signing_key_rotate(organization=cast["other"], actor=acting(cast["outsider"]))
    with pytest.raises(ApplicationError, match="has no signing key"):
        revoke(cast, theirs.key_id)
    assert key(theirs.key_id).status == "active"
    assert AuditEvent.objects.filter(action="signing_key.revoke").count() == 1


# --- re-signing -----------------------------------------------------------------------------


def test_every_release_the_revoked_key_signed_is_signed_again_with_the_same_files(
    rotated: dict[str, Any],
) -> None:
    cast, first, second = rotated, rotated["first"], rotated["second"]
    old = {team: current(cast, team) for team in ("platform", "batch", TEAM)}
    assert {t: r.signing_key for t, r in old.items()} == {
        "platform": first,
        "batch": first,
        TEAM: second,
    }
    done = revoke(cast, first.key_id)
    assert done.teams_to_resign == 2
    for team in ("platform", "batch"):
        new = current(cast, team)
        assert (new.revision, new.signing_key) == (old[team].revision + 1, second)
        assert new.previous == old[team] and new.publish_run is None
        assert new.content_digest == old[team].content_digest and bodies(new) == bodies(old[team])
        assert all(f"revision {new.revision}." in text for text in new.files.values())
        assert verifies(new) and all(verifies(v) for v in new.variants.all())
        manifest = json.loads(new.manifest)
        assert (manifest["key_id"], manifest["revision"]) == (second.key_id, new.revision)
        # What machines are served is the new release, signed by the active key.
        served = json.loads(new.agent_body)
        assert (served["key_id"], served["revision"]) == (second.key_id, new.revision)
        event = AuditEvent.objects.get(
            action="release.resign", object_key=f"{team} r{new.revision}"
        )
        assert dict(event.before or {})["signing_key"] == first.key_id
        assert event_after(event)["signing_key"] == second.key_id
        assert event_after(event)["content_of"] == old[team].revision
        assert event.actor_label == "owner@example.com"
    # platform/ci was signed by the active key: untouched.
    assert current(cast) == old[TEAM]
    assert not releases_to_resign().exists()
    # Nothing left: running again stores nothing.
    count = Release.objects.count()
    assert releases_resign(organization_id=cast["acme"].pk, actor=KEY_REVOCATION).releases == 0
    assert Release.objects.count() == count


def test_every_file_set_of_a_release_is_signed_again(rotated: dict[str, Any]) -> None:
    cast = rotated
    old = current(cast)
    assert old.variants.count() == 1  # the profile as a table for Codex before 0.134
    done = revoke(cast, rotated["second"].key_id)
    new = current(cast)
    assert new.signing_key == done.active and new.revision == old.revision + 1
    assert [v.codex for v in new.variants.order_by("id")] == [
        v.codex for v in old.variants.order_by("id")
    ]
    assert new.codex == old.codex and bodies(new) == bodies(old)
    assert all(verifies(v) for v in new.variants.all())
    for variant in new.variants.all():
        body = json.loads(variant.agent_body)
        assert body["key_id"] == done.active.key_id and body["revision"] == new.revision
        measurement = json.loads(body["measurement"])
        assert signing.verify(
            done.active.public_key, body["measurement"].encode(), body["measurement_signature"]
        )
        assert measurement["measured_until"] == variant.codex["measured_until"]


def test_a_staged_rollout_keeps_its_share_and_no_device_gets_a_revoked_keys_release(
    rotated: dict[str, Any],
) -> None:
    """platform/ci: r1 (first key) serves the devices outside a 30% rollout of r2 (second key);
    the first key is revoked. Every device is then served a release signed by the active key,
    never a lower revision than before, and the rollout keeps its share."""
    cast, first = rotated, rotated["first"]
    release_rollout_start(
        organization=cast["acme"], team_path=TEAM, percent=30, actor=acting(cast["admin"])
    )
    before = {
        device: release_for_device(organization=cast["acme"], team_path=TEAM, device_id=device)
        for device in DEVICES
    }
    assert {r.signing_key for r in before.values() if r} == {first, rotated["second"]}
    revoke(cast, first.key_id)
    new = current(cast)
    stand_in = new.previous
    assert stand_in is not None and not stand_in.current and stand_in.aborted_at is None
    assert (stand_in.revision, new.revision, new.rollout_percent) == (3, 4, 30)
    assert stand_in.content_digest == Release.objects.get(team_path=TEAM, revision=1).content_digest
    assert new.content_digest == Release.objects.get(team_path=TEAM, revision=2).content_digest
    after = {
        device: release_for_device(organization=cast["acme"], team_path=TEAM, device_id=device)
        for device in DEVICES
    }
    assert {r.signing_key for r in after.values() if r} == {rotated["second"]}
    assert all(after[d].revision > before[d].revision for d in DEVICES)  # type: ignore[union-attr]
    shares = sum(1 for r in after.values() if r == new) / len(DEVICES)
    assert 0.15 < shares < 0.45
    keys = {
        e.object_key: event_after(e)["content_of"]
        for e in AuditEvent.objects.filter(action="release.resign")
    }
    assert keys[f"{TEAM} r3"] == 1 and keys[f"{TEAM} r4"] == 2


def test_a_rollout_is_refused_when_the_other_devices_would_get_a_revoked_keys_release(
    rotated: dict[str, Any],
) -> None:
    cast = rotated
    revoke(cast, rotated["first"].key_id)  # platform's r1 is re-signed as r2; r1 is its previous
    with pytest.raises(ApplicationError, match="revoked key"):
        release_rollout_start(
            organization=cast["acme"], team_path="platform", percent=20, actor=acting(cast["admin"])
        )


@pytest.mark.django_db(transaction=False)
def test_a_lost_resign_task_is_picked_up_by_the_recovery_sweep(
    rotated: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    """Inside this test's transaction the revocation never commits, so its task is never handed
    over: as if the broker had been down. The sweep finds the organisation and re-signs."""
    cast = rotated
    revoke(cast, rotated["first"].key_id)
    assert releases_to_resign().filter(organization=cast["acme"]).count() == 2
    with django_capture_on_commit_callbacks(execute=True) as handed_over:
        assert releases_resign_recover_task() == [cast["acme"].pk]
    assert len(handed_over) == 1
    assert not releases_to_resign().exists()
    events = AuditEvent.objects.filter(action="release.resign")
    assert {e.actor_label for e in events} == {"system:key-revocation"} and events.count() == 2
    assert releases_resign_recover_task() == []


# --- the command line -----------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("signing_key", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_command_revokes_and_says_what_machines_need(rotated: dict[str, Any]) -> None:
    cast, first, second = rotated, rotated["first"], rotated["second"]
    said = run("revoke", "--org", "acme", first.key_id, "--reason", "key file copied")
    assert f"revoked key {first.key_id}" in said
    assert "2 team(s) served a release signed by a revoked key" in said
    assert f"{first.key_id}  revoked " in said and f"{second.key_id}  active " in said
    assert key(first.key_id).revocation_reason == "key file copied"
    with pytest.raises(CommandError, match="already revoked"):
        run("revoke", "--org", "acme", first.key_id, "--reason", "again")
    with pytest.raises(CommandError, match="the reason for the revocation is refused"):
        run("revoke", "--org", "acme", second.key_id, "--reason", "")
    # The active key, with no retired key left to vouch for its successor: enrol again.
    said = run("revoke", "--org", "acme", second.key_id, "--reason", "leaked")
    new = active(cast)
    assert f"new active key {new.key_id}, endorsed by no key" in said
    assert "every machine must be enrolled again" in said
    # Every team: platform and batch were re-signed by the second key a moment ago.
    assert "3 team(s) served a release signed by a revoked key" in said


def test_the_command_names_the_endorsing_key_of_the_successor(rotated: dict[str, Any]) -> None:
    cast = rotated
    said = run("revoke", "--org", "acme", rotated["second"].key_id, "--reason", "leaked")
    new = active(cast)
    assert f"new active key {new.key_id}, endorsed by retired key {rotated['first'].key_id}" in said
    assert "machines that trusted only revoked keys must be enrolled again" in said


def test_revocation_times_are_stated_in_utc(rotated: dict[str, Any]) -> None:
    revoke(rotated, rotated["first"].key_id)
    stated = json.loads(RevocationList.objects.get().statement)["revoked"][0]["revoked_at"]
    assert (
        stated.endswith("Z")
        and datetime.fromisoformat(stated) == key(rotated["first"].key_id).revoked_at
    )
