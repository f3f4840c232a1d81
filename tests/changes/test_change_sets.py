"""Change sets: plan, preview, four-eyes review, and publishing them (also on a schedule)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from policyhub.accounts.models import Membership, Role
from policyhub.accounts.services import (
    membership_grant,
    membership_remove,
    organization_settings_update,
)
from policyhub.audit.models import AuditEvent
from policyhub.changes.models import ChangeSet
from policyhub.changes.selectors import change_set_preview
from policyhub.changes.services import (
    change_set_approve,
    change_set_create,
    change_set_reject,
    change_set_submit,
)
from policyhub.errors import ApplicationError, NotPermitted
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services.publishing import publish_run_execute
from policyhub.releases.services.runs import publish_run_request
from policyhub.releases.tasks import publish_due_change_sets_task
from tests.conftest import BASE, OPERATOR, THREE_TEAMS, acting, make_policy, person

POLICY = THREE_TEAMS
CI_EDIT = POLICY.replace('model = "codex-ci"', 'model = "gpt-5.5"')


@pytest.fixture
def live(cast: dict[str, Any]) -> dict[str, Any]:
    """acme with POLICY live and published once; approval required."""
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    publish(cast)
    cast["acme"] = organization_settings_update(
        organization=cast["acme"], actor=acting(cast["owner"]), requires_approval=True
    )
    return cast


def publish(cast: dict[str, Any], by: str = "admin") -> PublishRun:
    run = publish_run_request(organization=cast["acme"], actor=acting(cast[by]))
    done = publish_run_execute(run_id=run.pk)
    assert done is not None
    return done


def draft(cast: dict[str, Any], text: str = CI_EDIT, **kwargs: Any) -> ChangeSet:
    return change_set_create(
        organization=cast["acme"],
        document_text=BASE + text,
        actor=acting(cast["admin"]),
        reason="CI moves to gpt-5.5",
        **kwargs,
    )


def submitted(cast: dict[str, Any], text: str = CI_EDIT, **kwargs: Any) -> ChangeSet:
    return change_set_submit(change_set=draft(cast, text, **kwargs), actor=acting(cast["admin"]))


def revisions(cast: dict[str, Any]) -> dict[str, int]:
    return {r.team_path: r.revision for r in Release.objects.filter(current=True)}


def test_a_draft_records_the_plan_and_the_base_and_leaves_the_live_policy_alone(
    live: dict[str, Any],
) -> None:
    change_set = draft(live)
    assert change_set.status == "draft"
    assert change_set.plan == ["~ team platform/ci config.model: 'codex-ci' -> 'gpt-5.5'"]
    assert len(change_set.base_digest) == 64
    assert org_policy(live["acme"]) == make_policy(POLICY)
    assert AuditEvent.objects.filter(action="change_set.create").count() == 1


def test_create_refuses_invalid_documents_with_field_paths_and_documents_with_no_change(
    live: dict[str, Any],
) -> None:
    with pytest.raises(ApplicationError) as caught:
        draft(live, "[teams.batch]\nnope = 1\n")
    assert [i.path for i in caught.value.issues] == ["teams.batch.nope"]
    with pytest.raises(ApplicationError, match="matches the live policy"):
        draft(live, POLICY)
    assert not ChangeSet.objects.exists()


def test_four_eyes_a_submitted_change_waits_for_a_second_admin(live: dict[str, Any]) -> None:
    change_set = submitted(live)
    assert change_set.status == "submitted"
    assert publish(live).releases_created == 0
    assert org_policy(live["acme"]) == make_policy(POLICY)
    change_set = change_set_approve(change_set=change_set, actor=acting(live["owner"]))
    assert (change_set.status, change_set.decided_by) == ("approved", live["owner"])
    assert AuditEvent.objects.filter(action="change_set.approve", actor=live["owner"]).exists()


def test_the_author_can_never_approve_their_own_change(live: dict[str, Any]) -> None:
    change_set = submitted(live)
    with pytest.raises(ApplicationError, match="the author can never approve their own change"):
        change_set_approve(change_set=change_set, actor=acting(live["admin"]))
    change_set.refresh_from_db()
    assert change_set.status == "submitted"


@pytest.mark.parametrize("who", ["outsider", "auditor"])
def test_outsiders_and_auditors_cannot_approve_or_reject(live: dict[str, Any], who: str) -> None:
    change_set = submitted(live)
    with pytest.raises(ApplicationError, match="may not approve"):
        change_set_approve(change_set=change_set, actor=acting(live[who]))
    with pytest.raises(ApplicationError, match="may not reject"):
        change_set_reject(change_set=change_set, actor=acting(live[who]), reason="no")
    change_set.refresh_from_db()
    assert change_set.status == "submitted"


def test_a_rejection_needs_a_reason(live: dict[str, Any]) -> None:
    change_set = submitted(live)
    with pytest.raises(ApplicationError, match="needs a reason"):
        change_set_reject(change_set=change_set, actor=acting(live["owner"]), reason="  ")
    change_set = change_set_reject(
        change_set=change_set, actor=acting(live["owner"]), reason="CI stays on codex-ci"
    )
    assert (change_set.status, change_set.decision_reason) == ("rejected", "CI stays on codex-ci")
    with pytest.raises(ApplicationError, match="only a submitted one can be approved"):
        change_set_approve(change_set=change_set, actor=acting(live["owner"]))


def test_only_a_submitted_change_set_can_be_decided_and_only_a_draft_submitted(
    live: dict[str, Any],
) -> None:
    change_set = draft(live)
    with pytest.raises(ApplicationError, match="only a submitted one"):
        change_set_approve(change_set=change_set, actor=acting(live["owner"]))
    change_set_submit(change_set=change_set, actor=acting(live["admin"]))
    with pytest.raises(ApplicationError, match="only a draft one"):
        change_set_submit(change_set=change_set, actor=acting(live["admin"]))


def test_submitting_a_change_set_with_errors_is_blocked(live: dict[str, Any]) -> None:
    broken = CI_EDIT.replace('web_search = "disabled"', 'sandbox_mode = "full-access"', 1)
    change_set = draft(live, broken)
    with pytest.raises(ApplicationError, match="error") as caught:
        change_set_submit(change_set=change_set, actor=acting(live["admin"]))
    assert [(i.node, i.path) for i in caught.value.issues] == [
        ("platform/ci", "config.sandbox_mode")
    ]
    change_set.refresh_from_db()
    assert change_set.status == "draft"


def test_without_required_approval_submitting_approves_at_once(cast: dict[str, Any]) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    change_set = submitted(cast)
    assert (change_set.status, change_set.decided_by) == ("approved", None)
    assert change_set.decided_at is not None


def test_organisation_settings_are_for_owners_and_admins_and_audited(cast: dict[str, Any]) -> None:
    with pytest.raises(ApplicationError, match="may not change the organisation's settings"):
        organization_settings_update(
            organization=cast["acme"], actor=acting(cast["auditor"]), requires_approval=True
        )
    org = organization_settings_update(
        organization=cast["acme"], actor=acting(cast["admin"]), requires_approval=True
    )
    assert org.requires_approval
    event = AuditEvent.objects.get(action="organization.settings_update")
    assert (event.before, event.after) == (
        {"requires_approval": False},
        {"requires_approval": True},
    )


def test_preview_lists_exactly_the_affected_teams_with_a_diff_per_changed_file(
    live: dict[str, Any],
) -> None:
    preview = change_set_preview(draft(live))
    assert preview.team_paths == ["platform/ci"]
    assert not preview.stale
    (team,) = preview.teams
    assert [f.name for f in team.files] == ["config.toml"]
    diff = team.files[0].diff
    assert "--- live/platform/ci/config.toml" in diff
    assert "+++ proposed/platform/ci/config.toml" in diff
    assert '-model = "codex-ci"' in diff and '+model = "gpt-5.5"' in diff
    assert preview.plan == ["~ team platform/ci config.model: 'codex-ci' -> 'gpt-5.5'"]


def test_a_change_at_a_node_affects_its_whole_subtree(live: dict[str, Any]) -> None:
    at_platform = POLICY + '[teams.platform.config]\nmodel_reasoning_effort = "low"\n'
    assert change_set_preview(draft(live, at_platform)).team_paths == ["platform", "platform/ci"]
    at_root = POLICY + "[requirements]\nallow_login_shell = false\n"
    assert change_set_preview(draft(live, at_root)).team_paths == [
        "batch",
        "platform",
        "platform/ci",
    ]


def test_preview_shows_created_and_deleted_teams(live: dict[str, Any]) -> None:
    text = POLICY.replace("[teams.batch.config]", "[teams.research]\n[teams.gone.config]")
    text = text.replace("[teams.gone.config]", "[teams.batch2.config]")
    preview = change_set_preview(draft(live, text))
    assert preview.team_paths == ["batch", "batch2", "research"]
    batch = preview.teams[0]
    assert all(f.diff.splitlines()[1] == "+++ /dev/null" for f in batch.files)


def test_publish_applies_approved_change_sets_then_releases_exactly_the_affected_teams(
    live: dict[str, Any],
) -> None:
    change_set = change_set_approve(change_set=submitted(live), actor=acting(live["owner"]))
    run = publish(live)
    assert (run.status, run.releases_created, run.error) == ("succeeded", 1, "")
    assert revisions(live) == {"batch": 1, "platform": 1, "platform/ci": 2}
    assert org_policy(live["acme"]) == make_policy(CI_EDIT)
    change_set.refresh_from_db()
    assert (change_set.status, change_set.published_run) == ("published", run)
    event = AuditEvent.objects.get(action="policy.change", reason__startswith="change set")
    assert (event.actor, event.reason) == (
        live["admin"],
        f"change set {change_set.pk}: CI moves to gpt-5.5",
    )
    assert publish(live).releases_created == 0


def test_a_stale_change_set_is_refused_at_publish_instead_of_overwriting(
    live: dict[str, Any],
) -> None:
    first = submitted(live)
    second = submitted(
        live, POLICY.replace('model = "openai.gpt-oss-120b"', 'model = "openai.gpt-oss-20b"')
    )
    # Approved in the other order: the later-planned one goes first, the other is now stale.
    change_set_approve(change_set=second, actor=acting(live["owner"]))
    change_set_approve(change_set=first, actor=acting(live["owner"]))
    run = publish(live)
    assert run.status == "succeeded" and run.releases_created == 1
    assert f"change set {first.pk} is stale" in run.error and "re-plan it" in run.error
    first.refresh_from_db()
    second.refresh_from_db()
    assert (second.status, first.status) == ("published", "rejected")
    assert "re-plan it" in first.decision_reason
    assert org_policy(live["acme"]).teams["platform/ci"].node.config["model"] == "codex-ci"
    assert revisions(live) == {"batch": 2, "platform": 1, "platform/ci": 1}
    assert AuditEvent.objects.filter(action="change_set.refuse", object_key=str(first.pk)).exists()


def test_submit_refuses_a_change_set_planned_against_an_older_live_policy(
    live: dict[str, Any],
) -> None:
    change_set = draft(live)
    # Another change reaches the live policy meanwhile (approval switched off for it).
    owner = acting(live["owner"])
    organization_settings_update(organization=live["acme"], actor=owner, requires_approval=False)
    policy_apply(
        organization=live["acme"],
        wanted=make_policy(POLICY + "[requirements]\nallow_login_shell = false\n"),
        actor=owner,
    )
    organization_settings_update(organization=live["acme"], actor=owner, requires_approval=True)
    assert change_set_preview(change_set).stale
    with pytest.raises(ApplicationError, match="re-plan it"):
        change_set_submit(change_set=change_set, actor=acting(live["admin"]))


def test_a_scheduled_change_set_is_published_by_the_beat_once_due_and_not_before(
    live: dict[str, Any],
) -> None:
    change_set = submitted(live, publish_at=timezone.now() + timedelta(hours=1))
    change_set_approve(change_set=change_set, actor=acting(live["owner"]))
    assert publish_due_change_sets_task() == 0
    assert publish(live).releases_created == 0
    change_set.refresh_from_db()
    assert change_set.status == "approved"

    ChangeSet.objects.filter(pk=change_set.pk).update(
        publish_at=timezone.now() - timedelta(seconds=1)
    )
    assert publish_due_change_sets_task() == 1
    assert publish_due_change_sets_task() == 0  # a run is already waiting
    run = PublishRun.objects.get(status="pending")
    assert run.requested_by is None
    done = publish_run_execute(run_id=run.pk)
    assert done is not None and done.releases_created == 1
    change_set.refresh_from_db()
    assert (change_set.status, change_set.published_run_id) == ("published", run.pk)
    assert publish_due_change_sets_task() == 0


def test_scheduling_a_publish_takes_the_publish_permission(live: dict[str, Any]) -> None:
    """A team editor may propose changes to their team, not set them to go out on their own."""
    user = person("editor")
    membership_grant(
        actor=OPERATOR,
        organization=live["acme"],
        user=user,
        role=Role.TEAM_EDITOR,
        team_path="platform",
    )
    editor = acting(user)
    soon = timezone.now() + timedelta(hours=1)
    text = BASE + CI_EDIT
    with pytest.raises(NotPermitted, match="may not schedule a publish"):
        change_set_create(
            organization=live["acme"], document_text=text, actor=editor, publish_at=soon
        )
    change_set = change_set_create(organization=live["acme"], document_text=text, actor=editor)
    with pytest.raises(NotPermitted, match="may not schedule a publish"):
        change_set_submit(change_set=change_set, actor=editor, publish_at=soon)
    assert ChangeSet.objects.get(pk=change_set.pk).status == "draft"


def test_an_automatic_approval_goes_back_to_review_once_approval_is_required(
    cast: dict[str, Any],
) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    publish(cast)
    change_set = submitted(cast, publish_at=timezone.now() + timedelta(hours=1))
    assert change_set.status == "approved"
    cast["acme"] = organization_settings_update(
        organization=cast["acme"], actor=acting(cast["owner"]), requires_approval=True
    )
    ChangeSet.objects.filter(pk=change_set.pk).update(publish_at=timezone.now())
    assert publish(cast).releases_created == 0
    change_set.refresh_from_db()
    assert (change_set.status, change_set.decided_at) == ("submitted", None)
    assert org_policy(cast["acme"]) == make_policy(POLICY)
    event = AuditEvent.objects.filter(action="change_set.return").get()
    assert event.reason == "acme now requires approval"
    change_set_approve(change_set=change_set, actor=acting(cast["owner"]))
    assert publish(cast).releases_created == 1


def test_an_unreviewed_change_set_goes_out_only_while_its_author_may_make_it(
    cast: dict[str, Any],
) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    publish(cast)
    change_set = submitted(cast)
    assert change_set.status == "approved"
    membership_remove(
        actor=acting(cast["owner"]),
        membership=Membership.objects.get(organization=cast["acme"], user=cast["admin"]),
    )
    run = publish(cast, by="owner")
    change_set.refresh_from_db()
    assert change_set.status == "rejected"
    assert "its author may no longer make it" in change_set.decision_reason
    assert run.error == change_set.decision_reason
    assert org_policy(cast["acme"]) == make_policy(POLICY)


def test_an_unreviewed_change_set_of_an_editor_moved_to_another_team_is_refused(
    cast: dict[str, Any],
) -> None:
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    publish(cast)
    user = person("editor")
    grant = {"actor": OPERATOR, "organization": cast["acme"], "user": user}
    membership_grant(**grant, role=Role.TEAM_EDITOR, team_path="platform")
    change_set = change_set_create(
        organization=cast["acme"], document_text=BASE + CI_EDIT, actor=acting(user)
    )
    change_set = change_set_submit(change_set=change_set, actor=acting(user))
    assert change_set.status == "approved"
    membership_grant(**grant, role=Role.TEAM_EDITOR, team_path="batch")
    publish(cast)
    change_set.refresh_from_db()
    assert change_set.status == "rejected"
    assert "only for team batch" in change_set.decision_reason
    assert org_policy(cast["acme"]) == make_policy(POLICY)


def test_one_node_of_a_draft_reads_as_the_whole_document_reads_it() -> None:
    """`change_set_node_table` reads only a node's tables of a document `document.dump` wrote;
    for every node of the demo (the organisation's and each team's) it finds what parsing the
    whole document finds, and a document in another layout is parsed whole."""
    import tomllib

    from policyhub.changes.selectors import ROOT_SECTIONS, change_set_node_table
    from policyhub.policies import document
    from policyhub.policies.demo import ACME

    text = document.dump(document.parse(ACME.read_text()))
    whole = tomllib.loads(text)
    draft = ChangeSet(document=text)
    assert change_set_node_table(draft, "") == {k: whole[k] for k in ROOT_SECTIONS if k in whole}
    for path, table in whole["teams"].items():
        assert change_set_node_table(draft, path) == table, path
    assert change_set_node_table(draft, "no/such/team") is None
    # A multi-line string can hold a line that looks like a header: such a document is read whole.
    tricky = text + '\n[teams.batch.config.notes]\ntext = """\n[teams."platform/ci"]\n"""\n'
    assert (
        change_set_node_table(ChangeSet(document=tricky), "platform/ci")
        == whole["teams"]["platform/ci"]
    )
