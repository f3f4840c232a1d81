"""Policy as code against the database: plan, apply all or nothing, audit in the same transaction."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import ProtectedError

from policyhub.accounts.models import Membership, Role
from policyhub.accounts.services import membership_grant
from policyhub.audit import services as audit_services
from policyhub.audit.models import AuditEvent
from policyhub.errors import ApplicationError
from policyhub.policies import document
from policyhub.policies import services as policy_services
from policyhub.policies.domain import OrgPolicy
from policyhub.policies.models import McpServer, PolicyNode, Profile, ProviderEndpoint
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.teams.models import Team
from policyhub.teams.services import team_create, team_create_many, team_delete, team_rename
from tests.conftest import BASE, OPERATOR, acting, make_policy

WANTED = """
[config]
model = "gpt-5.5"
model_provider = "openai"
[teams.platform]
name = "Platform"
[teams."platform/ci".config]
model = "codex-ci"
model_provider = "azure-eng"
web_search = "disabled"
[teams."platform/ci".profiles.azure-ci]
model = "gpt-5.5"
[teams."platform/ci".mcp_servers.docs]
command = "docs-mcp"
"""


def apply(cast: dict[str, Any], text: str, **kw: Any) -> list[document.Change]:
    return policy_apply(
        organization=cast["acme"], wanted=make_policy(text), actor=acting(cast["admin"]), **kw
    )


def test_apply_stores_the_whole_policy_and_export_returns_it(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    assert org_policy(cast["acme"]) == make_policy(WANTED)
    assert Team.objects.get(organization=cast["acme"], path="platform/ci").parent.path == "platform"  # type: ignore[union-attr]
    assert document.parse(document.dump(org_policy(cast["acme"]))) == make_policy(WANTED)


def test_reapplying_the_same_policy_changes_nothing(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    events = AuditEvent.objects.count()
    assert apply(cast, WANTED) == []
    assert AuditEvent.objects.count() == events


def test_dry_run_plans_but_stores_nothing(cast: dict[str, Any]) -> None:
    changes = apply(cast, WANTED, dry_run=True)
    assert "+ team platform/ci" in [str(c) for c in changes]
    assert not Team.objects.filter(organization=cast["acme"]).exists()
    assert not ProviderEndpoint.objects.exists()


def test_plan_lists_changes_and_deletions_and_apply_performs_them(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    smaller = WANTED.replace('model = "codex-ci"', 'model = "gpt-5.5"').split(
        '[teams."platform/ci".profiles'
    )[0]
    lines = [str(c) for c in apply(cast, smaller)]
    assert "~ team platform/ci config.model: 'codex-ci' -> 'gpt-5.5'" in lines
    assert "- team platform/ci profile azure-ci" in lines
    assert "- team platform/ci mcp server docs" in lines
    assert not Profile.objects.exists() and not McpServer.objects.exists()


def test_deleting_a_parent_team_deletes_its_subtree(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    lines = [
        str(c) for c in apply(cast, '[config]\nmodel = "gpt-5.5"\nmodel_provider = "openai"\n')
    ]
    assert "- team platform" in lines and "- team platform/ci" in lines
    assert not Team.objects.filter(organization=cast["acme"]).exists()
    assert PolicyNode.objects.filter(organization=cast["acme"]).count() == 1


def test_an_invalid_policy_is_refused_whole_and_nothing_is_stored(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    before = (document.dump(org_policy(cast["acme"])), AuditEvent.objects.count())
    broken = (
        WANTED + '[teams.new]\nname = "New"\n[teams.new.config]\nsandbox_mode = "full-access"\n'
    )
    with pytest.raises(ApplicationError) as caught:
        apply(cast, broken)
    assert [i.path for i in caught.value.issues] == ["config.sandbox_mode"]
    assert caught.value.issues[0].node == "new"
    assert (document.dump(org_policy(cast["acme"])), AuditEvent.objects.count()) == before


def test_every_change_writes_an_audit_event_with_actor_before_and_after(
    cast: dict[str, Any],
) -> None:
    apply(cast, WANTED)
    apply(cast, WANTED.replace('model = "codex-ci"', 'model = "gpt-5.5"'), reason="new CI model")
    event = AuditEvent.objects.filter(object_key="team platform/ci config.model").latest("id")
    assert (event.actor, event.before, event.after, event.reason) == (
        cast["admin"],
        "codex-ci",
        "gpt-5.5",
        "new CI model",
    )
    assert event.organization == cast["acme"]


def test_a_document_for_another_organisation_is_refused(cast: dict[str, Any]) -> None:
    with pytest.raises(ApplicationError, match="'other'"):
        policy_apply(
            organization=cast["acme"], wanted=for_other(WANTED), actor=acting(cast["outsider"])
        )
    assert not AuditEvent.objects.filter(
        organization=cast["acme"], action__startswith="policy"
    ).exists()


def test_applying_to_one_organisation_never_touches_another(cast: dict[str, Any]) -> None:
    policy_apply(
        organization=cast["other"], wanted=for_other(WANTED), actor=acting(cast["outsider"])
    )
    apply(cast, '[config]\nmodel = "x"\n')
    assert set(org_policy(cast["other"]).teams) == {"platform", "platform/ci"}
    assert org_policy(cast["acme"]).teams == {}


def for_other(text: str) -> OrgPolicy:
    return replace(make_policy(text), slug="other", name="Other")


def snapshot(cast: dict[str, Any]) -> tuple[str, int, int]:
    """What an apply that is refused or fails must leave exactly as it was."""
    return (
        document.dump(org_policy(cast["acme"])),
        AuditEvent.objects.count(),
        Membership.objects.count(),
    )


def grant_team_editor(cast: dict[str, Any], username: str, path: str) -> Membership:
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw")
    return membership_grant(
        organization=cast["acme"],
        user=user,
        role=Role.TEAM_EDITOR,
        team_path=path,
        actor=acting(cast["owner"]),
    )


ROOT_ONLY = '[config]\nmodel = "gpt-5.5"\nmodel_provider = "openai"\n'


def test_deleting_a_team_that_scopes_team_editors_is_refused_and_nothing_is_stored(
    cast: dict[str, Any],
) -> None:
    apply(cast, WANTED)
    grant_team_editor(cast, "bob", "platform/ci")
    grant_team_editor(cast, "alice", "platform/ci")
    before = snapshot(cast)
    for dry_run in (True, False):
        with pytest.raises(ApplicationError) as caught:
            apply(cast, ROOT_ONLY, dry_run=dry_run)
        assert "platform/ci" in caught.value.message
        assert "alice, bob" in caught.value.message
        assert "reassign or remove these team editors first" in caught.value.message
        [issue] = caught.value.issues
        assert issue.path == "teams.platform/ci"
        assert "alice, bob (deleted with team platform)" in issue.message
    assert snapshot(cast) == before
    assert set(
        Membership.objects.filter(team__path="platform/ci").values_list("user__username", flat=True)
    ) == {"alice", "bob"}


def test_a_team_editor_needs_a_team_of_the_same_organisation(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    user = cast["auditor"]
    for organization, role, scope in [
        (cast["acme"], Role.TEAM_EDITOR, None),
        (cast["acme"], Role.VIEWER, "platform"),
        (cast["other"], Role.TEAM_EDITOR, "platform"),
    ]:
        with pytest.raises(ApplicationError) as caught:
            membership_grant(
                organization=organization,
                user=user,
                role=role,
                team_path=scope,
                actor=OPERATOR,
            )
        assert [i.path for i in caught.value.issues] == ["team"]
    assert Membership.objects.get(organization=cast["acme"], user=user).role == Role.AUDITOR


def test_deleting_a_team_is_allowed_once_its_editors_are_reassigned(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    editor = grant_team_editor(cast, "alice", "platform/ci")
    membership_grant(
        organization=cast["acme"], user=editor.user, role=Role.VIEWER, actor=acting(cast["owner"])
    )
    assert "- team platform/ci" in [str(c) for c in apply(cast, ROOT_ONLY)]
    assert Membership.objects.get(user=editor.user).role == Role.VIEWER


def test_team_delete_refuses_while_an_editor_is_scoped_below_the_team(
    cast: dict[str, Any],
) -> None:
    apply(cast, WANTED)
    grant_team_editor(cast, "alice", "platform/ci")
    platform = Team.objects.get(organization=cast["acme"], path="platform")
    with pytest.raises(ApplicationError) as caught:
        team_delete(team=platform, actor=OPERATOR)
    assert [i.path for i in caught.value.issues] == ["teams.platform/ci"]
    assert Team.objects.filter(organization=cast["acme"]).count() == 2


def test_deleting_a_scoped_team_outside_the_services_is_protected(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    grant_team_editor(cast, "alice", "platform/ci")
    with pytest.raises(ProtectedError):
        Team.objects.filter(organization=cast["acme"], path="platform").delete()
    assert Membership.objects.filter(user__username="alice").exists()


def test_a_deleted_team_keeps_its_whole_content_in_the_plan_and_the_audit_trail(
    cast: dict[str, Any],
) -> None:
    apply(cast, WANTED)
    changes = {c.object: c for c in apply(cast, ROOT_ONLY, reason="teams gone")}
    ci = {
        "name": "ci",
        "config": {"model": "codex-ci", "model_provider": "azure-eng", "web_search": "disabled"},
        "profiles": {"azure-ci": {"model": "gpt-5.5"}},
        "mcp_servers": {"docs": {"command": "docs-mcp"}},
    }
    assert changes["team platform/ci"].before == ci
    assert changes["team platform"].before == {"name": "Platform"}
    event = AuditEvent.objects.get(action="policy.delete", object_key="team platform/ci")
    assert (event.before, event.after, event.reason) == (ci, None, "teams gone")


def test_deleted_providers_profiles_and_mcp_servers_keep_their_content_in_the_audit_trail(
    cast: dict[str, Any],
) -> None:
    apply(cast, WANTED)
    smaller = WANTED.split('[teams."platform/ci".profiles')[0]
    without_bedrock = BASE.replace(
        '[providers.bedrock]\nkind = "amazon-bedrock"\naws_profile = "batch"\nregion = "us-west-2"\n',
        "",
    )
    assert without_bedrock != BASE
    policy_apply(
        organization=cast["acme"],
        wanted=make_policy(smaller, base=without_bedrock),
        actor=acting(cast["admin"]),
    )
    deleted = {e.object_key: e.before for e in AuditEvent.objects.filter(action="policy.delete")}
    assert deleted == {
        "provider bedrock": {
            "kind": "amazon-bedrock",
            "provider_id": "amazon-bedrock",
            "aws_profile": "batch",
            "region": "us-west-2",
            "capabilities": {},
        },
        "team platform/ci profile azure-ci": {"model": "gpt-5.5"},
        "team platform/ci mcp server docs": {"command": "docs-mcp"},
    }


def test_a_team_path_at_the_depth_and_length_limits_is_applied_and_audited(
    cast: dict[str, Any],
) -> None:
    slugs = [f"{level:02d}" + "a" * 61 for level in range(document.MAX_TEAM_DEPTH)]
    paths = ["/".join(slugs[: depth + 1]) for depth in range(len(slugs))]
    deepest = paths[-1]
    assert len(deepest) == 16 * 63 + 15
    text = ROOT_ONLY + "".join(f'[teams."{p}"]\nname = "Level {i}"\n' for i, p in enumerate(paths))
    text += f'[teams."{deepest}".config]\nweb_search = "disabled"\n'
    apply(cast, text)
    key = f"team {deepest} config.web_search"
    assert len(key) > 1024
    assert AuditEvent.objects.get(object_key=key).after == "disabled"
    apply(cast, ROOT_ONLY)
    gone = AuditEvent.objects.get(action="policy.delete", object_key=f"team {deepest}")
    assert gone.before == {"name": "Level 15", "config": {"web_search": "disabled"}}
    assert not Team.objects.filter(organization=cast["acme"]).exists()


def test_an_unsaved_audit_event_prints_without_a_time() -> None:
    event = AuditEvent(actor_label="admin", action="policy.create", object_type="team")
    event.object_key = "team platform"
    assert str(event) == "(unsaved) admin policy.create team team platform"


def test_a_failure_after_the_first_writes_rolls_back_everything(
    cast: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(cast, WANTED)
    edited = (
        WANTED.replace('name = "Platform"', 'name = "Platform engineering"')
        .replace('model = "codex-ci"', 'model = "gpt-5.5"')
        .split('[teams."platform/ci".mcp_servers')[0]
        + '[teams.data]\nname = "Data"\n'
    )
    before = snapshot(cast)
    # Every input that reaches the writes is valid by then, so no real input fails half-way;
    # crashing our own audit writer simulates what one would (a lost connection, a bug) after
    # the rows, and the first audit events, were written. The real writer runs before that.
    real, written = audit_services.audit_record_many, []

    def crash_after_two(events: list[AuditEvent]) -> list[AuditEvent]:
        written.extend(real(events[:2]))
        raise RuntimeError("simulated crash half-way through the audit events")

    monkeypatch.setattr(policy_services, "audit_record_many", crash_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        apply(cast, edited)
    assert len(written) == 2 and all(event.pk for event in written)
    assert snapshot(cast) == before
    assert org_policy(cast["acme"]) == make_policy(WANTED)


def test_team_writes_derive_the_path_and_are_full_cleaned(cast: dict[str, Any]) -> None:
    top = team_create(organization=cast["acme"], parent=None, slug="platform", name="Platform")
    child = team_create(organization=cast["acme"], parent=top, slug="ci", name="CI")
    assert (child.path, child.parent) == ("platform/ci", top)
    with pytest.raises(ValidationError):
        team_create(organization=cast["acme"], parent=top, slug="Not A Slug", name="x")
    with pytest.raises(ValidationError):
        team_rename(team=child, name="x" * 201)
    with pytest.raises(ApplicationError, match="another organisation"):
        team_create(organization=cast["other"], parent=top, slug="ci", name="CI")
    with pytest.raises(ApplicationError) as taken:
        team_create(organization=cast["acme"], parent=top, slug="ci", name="CI again")
    assert [(i.path, i.message) for i in taken.value.issues] == [("slug", "'ci' is taken here")]
    with pytest.raises(ApplicationError) as orphan:  # all or none: "a" is not made either
        team_create_many(organization=cast["acme"], teams=[(None, "a", "A"), ("nowhere", "b", "B")])
    assert [i.path for i in orphan.value.issues] == ["parent"]
    assert not Team.objects.filter(organization=cast["acme"], path="a").exists()


def test_renaming_a_team_keeps_its_row_and_its_editors(cast: dict[str, Any]) -> None:
    apply(cast, WANTED)
    editor = grant_team_editor(cast, "alice", "platform/ci")
    team_id = Team.objects.get(organization=cast["acme"], path="platform/ci").pk
    lines = [str(c) for c in apply(cast, WANTED + '[teams."platform/ci"]\nname = "CI"\n')]
    assert lines == ["~ team platform/ci name: 'ci' -> 'CI'"]
    assert Team.objects.get(pk=team_id).name == "CI"
    editor.refresh_from_db()
    assert editor.team_id == team_id
