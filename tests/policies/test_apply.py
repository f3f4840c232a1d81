"""Policy as code against the database: plan, apply all or nothing, audit in the same transaction."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from policyhub.audit.models import AuditEvent
from policyhub.errors import ApplicationError
from policyhub.policies import document
from policyhub.policies.domain import OrgPolicy
from policyhub.policies.models import McpServer, PolicyNode, Profile, ProviderEndpoint
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from policyhub.teams.models import Team
from tests.conftest import make_policy

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
        organization=cast["acme"], wanted=make_policy(text), actor=cast["admin"], **kw
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
        policy_apply(organization=cast["acme"], wanted=for_other(WANTED), actor=cast["outsider"])
    assert not AuditEvent.objects.filter(
        organization=cast["acme"], action__startswith="policy"
    ).exists()


def test_applying_to_one_organisation_never_touches_another(cast: dict[str, Any]) -> None:
    policy_apply(organization=cast["other"], wanted=for_other(WANTED), actor=cast["outsider"])
    apply(cast, '[config]\nmodel = "x"\n')
    assert set(org_policy(cast["other"]).teams) == {"platform", "platform/ci"}
    assert org_policy(cast["acme"]).teams == {}


def for_other(text: str) -> OrgPolicy:
    return replace(make_policy(text), slug="other", name="Other")
