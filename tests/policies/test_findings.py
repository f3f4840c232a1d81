"""Stored validation results: every write of the live policy keeps, per node, what validating it
found and which endpoints each team uses, so that pages never validate a whole policy."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from policyhub.policies.checks import findings_json
from policyhub.policies.models import TeamCheck, TeamEndpointUse
from policyhub.policies.selectors import (
    org_policy,
    team_check_counts,
    teams_checked,
    teams_in_state,
    teams_using_endpoint,
)
from policyhub.policies.services import policy_apply, team_move
from policyhub.policies.validation import validate_policy
from policyhub.teams.models import Team
from tests.conftest import OPERATOR, THREE_TEAMS, make_policy

pytestmark = [pytest.mark.django_db]

# THREE_TEAMS (valid, no warning) plus a team whose requirement earns a warning, and a small
# subtree to move under it.
WITH_WARNING = (
    THREE_TEAMS
    + """
[teams.strict.requirements]
cli_auth_credentials_store = "keyring"
[teams.free]
[teams."free/dev"]
"""
)


def apply(org: Any, text: str) -> None:
    policy_apply(organization=org, wanted=make_policy(text), actor=OPERATOR)


def stored(org: Any) -> dict[str, tuple[int, int, list[dict[str, str]]]]:
    return {
        (row.team.path if row.team else ""): (row.errors, row.warnings, row.findings)
        for row in TeamCheck.objects.filter(organization=org).select_related("team")
    }


def expected(org: Any) -> dict[str, tuple[int, int, list[dict[str, str]]]]:
    """What validating the live policy finds now, as the rows should hold it."""
    policy = org_policy(org)
    found = validate_policy(policy)
    out = {}
    for path in ["", *policy.teams]:
        issues = found.get(path, [])
        out[path] = (
            sum(i.severity == "error" for i in issues),
            sum(i.severity == "warning" for i in issues),
            findings_json(issues),
        )
    return out


def uses(org: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path, name in TeamEndpointUse.objects.filter(organization=org).values_list(
        "team__path", "endpoint"
    ):
        found.setdefault(path, set()).add(name)
    return found


def test_an_error_free_policy_stores_a_clean_check_for_every_node(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    apply(acme, THREE_TEAMS)
    rows = stored(acme)
    assert set(rows) == {"", "platform", "platform/ci", "batch"}
    assert rows == expected(acme)
    assert all(errors == warnings == 0 for errors, warnings, _ in rows.values())
    assert uses(acme) == {
        "platform": {"openai"},
        "platform/ci": {"azure-eng"},
        "batch": {"bedrock"},
    }


def test_a_warning_is_stored_with_its_finding_where_validation_reports_it(
    cast: dict[str, Any],
) -> None:
    acme = cast["acme"]
    apply(acme, WITH_WARNING)
    rows = stored(acme)
    assert rows == expected(acme)
    errors, warnings, findings = rows["strict"]
    assert (errors, warnings) == (0, 1)
    assert findings[0]["path"] == "requirements.cli_auth_credentials_store"
    assert findings[0]["node"] == "strict" and "keyring" in findings[0]["message"]
    assert team_check_counts(acme) == {"errors": 0, "warnings": 1, "valid": 5}
    checked = teams_checked(acme)
    assert [t.path for t in teams_in_state(checked, "warnings")] == ["strict"]
    assert [t.path for t in teams_using_endpoint(checked, "bedrock")] == ["batch"]


def test_a_change_at_an_ancestor_updates_the_rows_of_its_whole_subtree(
    cast: dict[str, Any],
) -> None:
    acme = cast["acme"]
    apply(acme, WITH_WARNING)
    changed = WITH_WARNING.replace(
        "[teams.platform]\n",
        '[teams.platform]\n[teams.platform.requirements]\ncli_auth_credentials_store = "keyring"\n',
    )
    apply(acme, changed)
    rows = stored(acme)
    assert rows == expected(acme)
    assert rows["platform"][1] == 1 and rows["platform/ci"][1] == 1
    assert rows["batch"][:2] == (0, 0)

    # Moving platform/ci's provider moves its endpoint use too.
    apply(acme, changed.replace('model_provider = "azure-eng"', 'model_provider = "openai"'))
    assert uses(acme)["platform/ci"] == {"openai"}


def test_deleted_teams_take_their_rows_with_them(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    apply(acme, WITH_WARNING)
    apply(acme, THREE_TEAMS)
    assert set(stored(acme)) == {"", "platform", "platform/ci", "batch"}
    assert stored(acme) == expected(acme)
    assert set(uses(acme)) == {"platform", "platform/ci", "batch"}


def test_a_team_move_updates_the_rows_of_the_moved_subtree(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    apply(acme, WITH_WARNING + '[teams."free/dev/ci"]\n')
    assert stored(acme)["free/dev"][:2] == (0, 0)
    team_move(
        team=Team.objects.get(organization=acme, path="free/dev"),
        parent_path="strict",
        actor=OPERATOR,
    )
    rows = stored(acme)
    assert rows == expected(acme)
    assert rows["strict/dev"][1] == 1 and rows["strict/dev/ci"][1] == 1
    assert "free/dev" not in rows


def test_the_rows_written_do_not_grow_with_the_teams_left_unchanged(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    many = THREE_TEAMS + "".join(f"[teams.t{i:02}]\n" for i in range(40))
    apply(acme, many)
    with CaptureQueriesContext(connection) as queries:
        apply(acme, many + '[teams.t07.requirements]\ncli_auth_credentials_store = "keyring"\n')
    touching = [q["sql"] for q in queries if "policies_teamcheck" in q["sql"]]
    assert len(touching) <= 3, touching
    updates = [sql for sql in touching if sql.startswith("UPDATE")]
    assert len(updates) <= 1
    assert stored(acme) == expected(acme)
    assert stored(acme)["t07"][1] == 1


def test_the_migration_fills_the_rows_of_existing_organisations(cast: dict[str, Any]) -> None:
    acme = cast["acme"]
    apply(acme, WITH_WARNING)
    before, before_uses = stored(acme), uses(acme)
    TeamCheck.objects.all().delete()
    TeamEndpointUse.objects.all().delete()
    migration = importlib.import_module("policyhub.policies.migrations.0003_team_checks_fill")
    migration._fill(apps, None)
    assert stored(acme) == before
    assert uses(acme) == before_uses
    assert stored(cast["other"]) == {"": (0, 0, [])}


def test_the_kept_digest_of_the_live_policy_follows_every_write(
    cast: dict[str, Any], django_assert_num_queries: Any
) -> None:
    from policyhub.changes.selectors import live_policy_digest, policy_digest
    from policyhub.policies.services import policy_checks_refresh

    acme = cast["acme"]

    def agrees() -> None:
        exported = policy_digest(org_policy(acme))
        assert live_policy_digest(acme) == exported
        with django_assert_num_queries(1):  # the kept digest: no export of the policy
            assert live_policy_digest(acme) == exported

    agrees()
    policy_apply(organization=acme, wanted=make_policy(WITH_WARNING), actor=OPERATOR)
    agrees()
    team_move(
        team=Team.objects.get(organization=acme, path="free"), parent_path="strict", actor=OPERATOR
    )
    agrees()
    policy_apply(organization=acme, wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    agrees()
    # Written behind the services' back, then re-checked: the refresh counts as a write.
    Team.objects.filter(organization=acme, path="batch").update(name="Renamed in bulk")
    policy_checks_refresh(organization=acme)
    agrees()


def test_a_digest_computed_while_the_policy_is_written_is_not_kept(
    cast: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that commits between reading the version and reading the policy must not leave
    the old policy's digest kept for the new version (a change set planned before the write
    would then look current, and publishing it would undo the write)."""
    from policyhub.changes import selectors as change_selectors

    acme = cast["acme"]
    policy_apply(organization=acme, wanted=make_policy(THREE_TEAMS), actor=OPERATOR)
    before = change_selectors.policy_digest(org_policy(acme))
    read = org_policy  # the function changes.selectors calls

    def read_after_a_write(organization: Any) -> Any:
        found = read(organization)  # the policy as it was...
        policy_apply(organization=acme, wanted=make_policy(WITH_WARNING), actor=OPERATOR)
        return found  # ...while a write has committed since

    monkeypatch.setattr(change_selectors, "org_policy", read_after_a_write)
    assert change_selectors.live_policy_digest(acme) == before
    monkeypatch.setattr(change_selectors, "org_policy", read)
    assert change_selectors.live_policy_digest(acme) == change_selectors.policy_digest(
        org_policy(acme)
    )
    assert change_selectors.live_policy_digest(acme) != before
