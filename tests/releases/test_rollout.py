"""Rollback to an earlier release, and staged rollout: promote to everyone or abort back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from policyhub.accounts.models import Organization
from policyhub.actors import Actor
from policyhub.audit.models import AuditEvent
from policyhub.errors import ApplicationError
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.releases import signing
from policyhub.releases.models import Release
from policyhub.releases.selectors import release_for_device, rollout_includes
from policyhub.releases.services.keys import signing_key_rotate
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.rollback import release_rollback
from policyhub.releases.services.rollout import (
    release_rollout_abort,
    release_rollout_promote,
    release_rollout_start,
)
from policyhub.releases.services.runs import publish_run_request
from policyhub.rendering.render import render_team, retitle
from tests.conftest import BASE, OPERATOR, acting, make_policy

POLICY = """
[config]
model = "gpt-5.5"
model_provider = "openai"
[teams.platform]
[teams."platform/ci".config]
model = "codex-ci"
model_provider = "azure-eng"
web_search = "disabled"
"""
CHANGED = POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"')
TEAM = "platform/ci"
DEVICES = [f"device-{n:05d}" for n in range(10_000)]


def publish(org: Organization, actor: Any, text: str, base: str = BASE) -> None:
    actor = actor if isinstance(actor, Actor) else acting(actor)
    policy_apply(organization=org, wanted=make_policy(text, base=base), actor=actor)
    run = publish_run_request(organization=org, actor=actor)
    done = publish_run_execute(run_id=run.pk)
    assert done is not None and done.status == "succeeded"


@pytest.fixture
def two_revisions(cast: dict[str, Any]) -> dict[str, Any]:
    """platform/ci at r1 (POLICY) and r2 (CHANGED); r2 is current."""
    publish(cast["acme"], cast["admin"], POLICY)
    publish(cast["acme"], cast["admin"], CHANGED)
    return cast


def release(cast: dict[str, Any], revision: int) -> Release:
    return Release.objects.get(organization=cast["acme"], team_path=TEAM, revision=revision)


def served(cast: dict[str, Any], devices: list[str]) -> dict[str, int]:
    """Device id -> revision served."""
    out = {}
    for device in devices:
        found = release_for_device(organization=cast["acme"], team_path=TEAM, device_id=device)
        assert found is not None
        out[device] = found.revision
    return out


def verifies(release: Release) -> bool:
    return signing.verify(
        release.signing_key.public_key, release.manifest.encode(), release.signature
    )


def body(text: str) -> str:
    return text.split("\n", 2)[2]


# --- rollback -------------------------------------------------------------------------------------


def test_rollback_is_a_new_signed_revision_with_the_old_content(
    two_revisions: dict[str, Any],
) -> None:
    cast = two_revisions
    signing_key_rotate(
        organization=cast["acme"], actor=acting(cast["owner"])
    )  # signed with the new key
    r1, r2 = release(cast, 1), release(cast, 2)
    r3 = release_rollback(
        organization=cast["acme"],
        team_path=TEAM,
        to_revision=1,
        actor=acting(cast["admin"]),
        reason="ci",
    )
    r1.refresh_from_db()
    r2.refresh_from_db()
    assert (r3.revision, r3.current, r2.current, r1.current) == (3, True, False, False)
    assert r3.previous == r2 and r3.publish_run is None and r3.created_by == cast["admin"]
    assert r3.content_digest == r1.content_digest != r2.content_digest
    assert {n: body(t) for n, t in r3.files.items()} == {n: body(t) for n, t in r1.files.items()}
    assert all("revision 3." in text for text in r3.files.values())
    assert r3.hashes == {
        name: hashlib.sha256(text.encode()).hexdigest() for name, text in r3.files.items()
    }
    assert set(r3.hashes.values()).isdisjoint(r1.hashes.values())
    assert r3.signing_key.status == "active" and r3.signing_key != r1.signing_key
    assert verifies(r3) and verifies(r1)
    manifest = json.loads(r3.manifest)
    assert (manifest["team"], manifest["revision"], manifest["files"]) == (TEAM, 3, r3.hashes)
    # The set's own digest is signed; the release's covers every set and its Codex versions.
    assert manifest["content_digest"] == json.loads(r1.manifest)["content_digest"]
    assert r3.content_digest == r1.content_digest and r3.codex == r1.codex
    assert manifest["key_id"] == r3.signing_key.key_id
    # Exactly the bytes a fresh render of the old policy at revision 3 would give.
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    rendered = render_team(org_policy(cast["acme"]), TEAM, revision="3")
    assert {n: d.decode() for n, d in rendered.files.items()} == r3.files
    # So publishing the policy that matches the rolled-back content creates nothing.
    run = publish_run_request(organization=cast["acme"], actor=acting(cast["admin"]))
    done = publish_run_execute(run_id=run.pk)
    assert done is not None and done.releases_created == 0


def test_rollback_refuses_unknown_revisions_and_the_current_content(
    two_revisions: dict[str, Any],
) -> None:
    cast = two_revisions
    for team, revision in ((TEAM, 9), (TEAM, 0), ("nowhere", 1)):
        with pytest.raises(ApplicationError, match="has no revision"):
            release_rollback(
                organization=cast["acme"],
                team_path=team,
                to_revision=revision,
                actor=acting(cast["admin"]),
            )
    with pytest.raises(ApplicationError, match="nothing to roll back"):
        release_rollback(organization=cast["acme"], team_path=TEAM, to_revision=2, actor=OPERATOR)
    release_rollback(organization=cast["acme"], team_path=TEAM, to_revision=1, actor=OPERATOR)
    # r3 carries r1's content now: rolling back to r1 again has nothing to do.
    with pytest.raises(ApplicationError, match="nothing to roll back"):
        release_rollback(organization=cast["acme"], team_path=TEAM, to_revision=1, actor=OPERATOR)
    assert Release.objects.filter(organization=cast["acme"], team_path=TEAM).count() == 3


def test_retitle_refuses_a_file_whose_body_was_changed() -> None:
    rendered = render_team(make_policy(POLICY), TEAM, revision="1")
    data = rendered.files["config.toml"]
    assert retitle(data, team=f"acme/{TEAM}", revision="1") == data
    with pytest.raises(ApplicationError, match="does not match"):
        retitle(data.replace(b"codex-ci", b"gpt-5.5"), team=f"acme/{TEAM}", revision="2")
    with pytest.raises(ApplicationError, match="header"):
        retitle(b'model = "x"\n', team=f"acme/{TEAM}", revision="2")
    with pytest.raises(ApplicationError, match="revision"):
        retitle(data, team=f"acme/{TEAM}", revision="2\nmodel = 1")


# --- staged rollout -------------------------------------------------------------------------------


def test_a_thirty_percent_rollout_is_stable_and_close_to_thirty_percent(
    two_revisions: dict[str, Any],
) -> None:
    cast = two_revisions
    r2 = release_rollout_start(
        organization=cast["acme"], team_path=TEAM, percent=30, actor=acting(cast["admin"])
    )
    assert (r2.revision, r2.rollout_percent, r2.previous_id) == (2, 30, release(cast, 1).pk)
    inside = {d for d in DEVICES if rollout_includes(release_id=r2.pk, device_id=d, percent=30)}
    # The documented rule, computed here another way: the first 8 bytes of
    # sha256("<release id>:<device id>") as a big-endian number, modulo 100, below the percentage.
    assert inside == {
        d
        for d in DEVICES
        if int(hashlib.sha256(f"{r2.pk}:{d}".encode()).hexdigest()[:16], 16) % 100 < 30
    }
    assert abs(len(inside) / len(DEVICES) - 0.30) <= 0.02
    # What devices are served agrees with that split, call after call.
    sample = DEVICES[:1_000]
    first = served(cast, sample)
    assert first == {d: 2 if d in inside else 1 for d in sample}
    assert served(cast, sample) == first
    # Pure in (release, device): another process, with its own hash seed, draws the same.
    script = (
        "import django, sys; django.setup(); "
        "from policyhub.releases.selectors import rollout_includes as r; "
        f"print(' '.join(d for d in sys.argv[1:] if r(release_id={r2.pk}, device_id=d, percent=30)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "random", "DJANGO_SETTINGS_MODULE": "policyhub.settings"}
    out = subprocess.run(
        [sys.executable, "-c", script, *DEVICES],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(out.stdout.split()) == inside
    # Another release draws anew.
    other = {d for d in DEVICES if rollout_includes(release_id=r2.pk + 1, device_id=d, percent=30)}
    assert 0.05 < len(inside & other) / len(DEVICES) < 0.13  # ~0.09 when independent
    # Widening keeps every device that already had the release.
    release_rollout_start(organization=cast["acme"], team_path=TEAM, percent=60, actor=OPERATOR)
    wider = served(cast, sample)
    assert all(wider[d] == 2 for d in sample if d in inside)
    assert 0.55 < sum(r == 2 for r in wider.values()) / len(sample) < 0.65


def test_promote_serves_everyone_the_new_release(two_revisions: dict[str, Any]) -> None:
    cast = two_revisions
    release_rollout_start(organization=cast["acme"], team_path=TEAM, percent=30, actor=OPERATOR)
    promoted = release_rollout_promote(
        organization=cast["acme"], team_path=TEAM, actor=acting(cast["admin"])
    )
    assert (promoted.revision, promoted.rollout_percent, promoted.current) == (2, 100, True)
    assert set(served(cast, DEVICES[:300]).values()) == {2}
    with pytest.raises(ApplicationError, match="not in a staged rollout"):
        release_rollout_promote(organization=cast["acme"], team_path=TEAM, actor=OPERATOR)


def test_abort_serves_everyone_the_previous_release_and_keeps_the_aborted_one(
    two_revisions: dict[str, Any],
) -> None:
    cast = two_revisions
    release_rollout_start(organization=cast["acme"], team_path=TEAM, percent=30, actor=OPERATOR)
    restored = release_rollout_abort(
        organization=cast["acme"], team_path=TEAM, actor=acting(cast["admin"])
    )
    aborted = release(cast, 2)
    assert (restored.revision, restored.current, restored.rollout_percent) == (1, True, 100)
    assert not aborted.current and aborted.aborted_at is not None and verifies(aborted)
    assert set(served(cast, DEVICES[:300]).values()) == {1}
    with pytest.raises(ApplicationError, match="not in a staged rollout"):
        release_rollout_abort(organization=cast["acme"], team_path=TEAM, actor=OPERATOR)
    # The next release falls back past the aborted one, to r1.
    release_rollback(organization=cast["acme"], team_path=TEAM, to_revision=2, actor=OPERATOR)
    r3 = release_rollout_start(
        organization=cast["acme"], team_path=TEAM, percent=10, actor=OPERATOR
    )
    assert (r3.revision, r3.content_digest, r3.previous) == (3, aborted.content_digest, restored)


def test_a_release_published_after_an_abort_falls_back_past_the_aborted_one(
    two_revisions: dict[str, Any],
) -> None:
    cast = two_revisions
    release_rollout_start(organization=cast["acme"], team_path=TEAM, percent=30, actor=OPERATOR)
    release_rollout_abort(organization=cast["acme"], team_path=TEAM, actor=OPERATOR)
    publish(cast["acme"], cast["admin"], POLICY + "[requirements]\nallow_login_shell = false\n")
    r3 = release_rollout_start(
        organization=cast["acme"], team_path=TEAM, percent=50, actor=OPERATOR
    )
    assert (r3.revision, r3.previous) == (3, release(cast, 1))


def test_a_rollout_needs_an_earlier_release_and_a_sensible_percentage(
    cast: dict[str, Any],
) -> None:
    publish(cast["acme"], cast["admin"], POLICY)
    with pytest.raises(ApplicationError, match="first release"):
        release_rollout_start(organization=cast["acme"], team_path=TEAM, percent=30, actor=OPERATOR)
    with pytest.raises(ApplicationError, match="no current release"):
        release_rollout_start(
            organization=cast["acme"], team_path="nowhere", percent=30, actor=OPERATOR
        )
    publish(cast["acme"], cast["admin"], CHANGED)
    for percent in (0, 100, 101, -5):
        with pytest.raises(ApplicationError, match="1 to 99"):
            release_rollout_start(
                organization=cast["acme"], team_path=TEAM, percent=percent, actor=OPERATOR
            )
    assert release(cast, 2).rollout_percent == 100
    assert not AuditEvent.objects.filter(action__startswith="release.rollout").exists()


def test_every_rollback_and_rollout_write_is_audited(two_revisions: dict[str, Any]) -> None:
    cast = two_revisions
    acme, admin = cast["acme"], acting(cast["admin"])
    release_rollback(organization=acme, team_path=TEAM, to_revision=1, actor=admin, reason="bad")
    release_rollback(organization=acme, team_path=TEAM, to_revision=2, actor=admin, reason="ok")
    release_rollout_start(organization=acme, team_path=TEAM, percent=30, actor=admin)
    release_rollout_promote(organization=acme, team_path=TEAM, actor=admin)
    release_rollback(organization=acme, team_path=TEAM, to_revision=1, actor=admin)
    release_rollout_start(organization=acme, team_path=TEAM, percent=20, actor=admin)
    release_rollout_abort(organization=acme, team_path=TEAM, actor=admin)
    events = [
        (e.action, e.object_key, e.reason)
        for e in AuditEvent.objects.filter(action__in=ROLLOUT_ACTIONS).order_by("id")
    ]
    assert events == [
        ("release.rollback", f"{TEAM} r3", "bad"),
        ("release.rollback", f"{TEAM} r4", "ok"),
        ("release.rollout_start", f"{TEAM} r4", ""),
        ("release.rollout_promote", f"{TEAM} r4", ""),
        ("release.rollback", f"{TEAM} r5", ""),
        ("release.rollout_start", f"{TEAM} r5", ""),
        ("release.rollout_abort", f"{TEAM} r5", ""),
    ]
    assert all(
        (e.actor, e.actor_kind, e.actor_label, e.organization)
        == (admin.user, "user", admin.label, acme)
        for e in AuditEvent.objects.filter(action__in=ROLLOUT_ACTIONS)
    )
    after = AuditEvent.objects.get(action="release.rollout_abort").after
    assert after is not None
    assert after["restored"]["revision"] == 4 and after["aborted"]["current"] is False


ROLLOUT_ACTIONS = [
    "release.rollback",
    "release.rollout_start",
    "release.rollout_promote",
    "release.rollout_abort",
]


def test_another_organisations_releases_are_untouched(two_revisions: dict[str, Any]) -> None:
    cast = two_revisions
    other_base = BASE.replace('slug = "acme"', 'slug = "other"')
    publish(cast["other"], cast["outsider"], POLICY, base=other_base)
    publish(cast["other"], cast["outsider"], CHANGED, base=other_base)
    theirs = list(Release.objects.filter(organization=cast["other"]).order_by("pk").values())
    release_rollback(organization=cast["acme"], team_path=TEAM, to_revision=1, actor=OPERATOR)
    release_rollout_start(organization=cast["acme"], team_path=TEAM, percent=30, actor=OPERATOR)
    release_rollout_abort(organization=cast["acme"], team_path=TEAM, actor=OPERATOR)
    assert (
        list(Release.objects.filter(organization=cast["other"]).order_by("pk").values()) == theirs
    )
    found = release_for_device(organization=cast["other"], team_path=TEAM, device_id="d")
    assert found is not None and (found.organization, found.revision) == (cast["other"], 2)
    assert not AuditEvent.objects.filter(
        organization=cast["other"], action__in=ROLLOUT_ACTIONS
    ).exists()
    assert release_for_device(organization=cast["acme"], team_path="nowhere", device_id="d") is None


# --- command line ---------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("release", *args, stdout=out)
    return out.getvalue()


def test_the_release_command_lists_rolls_back_and_stages(two_revisions: dict[str, Any]) -> None:
    org = ["--org", "acme", "--team", TEAM]
    assert run("rollback", *org, "--to", "1", "--as", "admin", "--reason", "x").startswith(
        f"{TEAM} r3 is current with the content of r1, signed with key "
    )
    assert run("rollout", *org, "--percent", "30") == (
        f"{TEAM} r3 reaches 30% of devices; the others stay on r2\n"
    )
    assert run("promote", *org) == f"{TEAM} r3 reaches every device\n"
    run("rollback", *org, "--to", "2")
    run("rollout", *org, "--percent", "5", "--as", "admin")
    assert run("abort", *org) == f"{TEAM} rollout aborted; r3 is current for every device\n"
    listing = run("list", "--org", "acme", "--team", TEAM).splitlines()
    assert [line.split()[:3] for line in listing] == [
        [TEAM, "r4", "aborted"],
        [TEAM, "r3", "current"],
        [TEAM, "r2", "superseded"],
        [TEAM, "r1", "superseded"],
    ]
    assert len(run("list", "--org", "acme").splitlines()) == 5  # and `platform` r1
    with pytest.raises(CommandError, match="has no revision 7"):
        run("rollback", *org, "--to", "7")
    with pytest.raises(CommandError, match="no active user"):
        run("promote", *org, "--as", "nobody")
    with pytest.raises(CommandError, match="no organisation"):
        run("list", "--org", "nowhere")


def current_revision(cast: dict[str, Any], team: str = TEAM) -> int:
    return Release.objects.get(organization=cast["acme"], team_path=team, current=True).revision


def test_a_rollback_survives_a_publish_caused_by_another_team(
    two_revisions: dict[str, Any],
) -> None:
    cast = two_revisions
    release_rollback(
        organization=cast["acme"], team_path=TEAM, to_revision=1, actor=acting(cast["admin"])
    )
    assert current_revision(cast) == 3
    # Only a new sibling team appears; platform/ci's policy still says what r2 said.
    publish(
        cast["acme"],
        cast["admin"],
        CHANGED + "[teams.other]\n",
    )
    assert current_revision(cast) == 3
    # Once platform/ci's own policy changes again, it is released again.
    publish(
        cast["acme"],
        cast["admin"],
        CHANGED.replace(
            'web_search = "disabled"', 'web_search = "disabled"\nmodel_reasoning_effort = "high"'
        ),
    )
    assert current_revision(cast) == 4


def test_an_aborted_rollout_is_not_released_again_by_an_unrelated_publish(
    two_revisions: dict[str, Any],
) -> None:
    cast = two_revisions
    release_rollout_start(
        organization=cast["acme"], team_path=TEAM, percent=30, actor=acting(cast["admin"])
    )
    restored = release_rollout_abort(
        organization=cast["acme"], team_path=TEAM, actor=acting(cast["admin"])
    )
    assert restored.revision == 1
    publish(
        cast["acme"],
        cast["admin"],
        CHANGED + "[teams.other]\n",
    )
    assert current_revision(cast) == 1
