"""The change flow from the command line: policy apply [--submit], change_set list|show|decide."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from policyhub.accounts.services import organization_settings_update
from policyhub.changes.models import ChangeSet
from policyhub.policies.selectors import org_policy
from policyhub.policies.services import policy_apply
from tests.changes.test_change_sets import CI_EDIT, POLICY
from tests.conftest import BASE, acting, make_policy


def run(*args: Any) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def edit(cast: dict[str, Any], tmp_path: Path) -> Path:
    policy_apply(organization=cast["acme"], wanted=make_policy(POLICY), actor=acting(cast["admin"]))
    path = tmp_path / "edit.toml"
    path.write_text(BASE + CI_EDIT)
    return path


def test_apply_draft_creates_a_draft_change_set_and_prints_its_id_and_plan(
    cast: dict[str, Any], edit: Path
) -> None:
    out = run(
        "policy", "apply", "--org", "acme", str(edit), "--draft", "--as", "admin", "--reason", "why"
    )
    change_set = ChangeSet.objects.get()
    assert f"Change set {change_set.pk} (draft) for acme:" in out
    assert "~ team platform/ci config.model: 'codex-ci' -> 'gpt-5.5'" in out
    assert (change_set.status, change_set.author, change_set.reason) == (
        "draft",
        cast["admin"],
        "why",
    )
    assert org_policy(cast["acme"]) == make_policy(POLICY)
    # Without --as, the server operator writes it, under the name of the login running it.
    run("policy", "apply", "--org", "acme", str(edit), "--draft")
    by_operator = ChangeSet.objects.latest("pk")
    assert by_operator.author is None and by_operator.author_label.startswith("operator:")


def test_apply_without_flags_applies_where_no_approval_is_required(
    cast: dict[str, Any], edit: Path
) -> None:
    out = run("policy", "apply", "--org", "acme", str(edit))
    assert "Applied 1 change(s) to acme." in out
    assert org_policy(cast["acme"]).teams["platform/ci"].node.config["model"] == "gpt-5.5"
    assert not ChangeSet.objects.exists()


def test_an_organisation_requiring_approval_refuses_a_direct_apply(
    cast: dict[str, Any], edit: Path
) -> None:
    organization_settings_update(
        organization=cast["acme"], actor=acting(cast["owner"]), requires_approval=True
    )
    for flags in ([], ["--direct"]):
        with pytest.raises(CommandError, match=r"requires approval: .*policy apply --submit"):
            run("policy", "apply", "--org", "acme", str(edit), "--as", "admin", *flags)
    assert org_policy(cast["acme"]) == make_policy(POLICY)
    # Planning is still allowed.
    assert "~ team platform/ci config.model" in run(
        "policy", "apply", "--org", "acme", str(edit), "--dry-run"
    )


def test_apply_submit_approves_at_once_where_no_approval_is_required(
    cast: dict[str, Any], edit: Path
) -> None:
    out = run(
        "policy",
        "apply",
        "--org",
        "acme",
        str(edit),
        "--as",
        "admin",
        "--submit",
        "--publish-at",
        "2030-01-02T03:04:05Z",
    )
    change_set = ChangeSet.objects.get()
    assert (
        f"Change set {change_set.pk} is approved, to publish at 2030-01-02T03:04:05+00:00." in out
    )
    with pytest.raises(CommandError, match="--publish-at schedules a change set"):
        run("policy", "apply", "--org", "acme", str(edit), "--publish-at", "2030-01-02T03:04:05Z")


def test_apply_submit_with_errors_keeps_the_draft_and_names_the_field(
    cast: dict[str, Any], edit: Path
) -> None:
    edit.write_text(
        edit.read_text().replace('web_search = "disabled"', 'sandbox_mode = "full-access"', 1)
    )
    with pytest.raises(CommandError, match=r"platform/ci: config\.sandbox_mode") as caught:
        run("policy", "apply", "--org", "acme", str(edit), "--as", "admin", "--submit")
    assert "stays a draft" in str(caught.value)
    assert ChangeSet.objects.get().status == "draft"


def test_change_set_review_from_the_command_line(cast: dict[str, Any], edit: Path) -> None:
    organization_settings_update(
        organization=cast["acme"], actor=acting(cast["owner"]), requires_approval=True
    )
    out = run("policy", "apply", "--org", "acme", str(edit), "--as", "admin", "--submit")
    match = re.search(r"Change set (\d+) is submitted\.", out)
    assert match, out
    ident = match.group(1)

    shown = run("change_set", "show", ident)
    assert "Affected teams: platform/ci" in shown
    assert '-model = "codex-ci"' in shown and '+model = "gpt-5.5"' in shown
    assert f"{ident}  submitted" in run("change_set", "list", "--org", "acme")

    with pytest.raises(CommandError, match="the author can never approve their own change"):
        run("change_set", "approve", ident, "--as", "admin")
    with pytest.raises(CommandError, match="needs a reason"):
        run("change_set", "reject", ident, "--as", "owner")
    assert "approved" in run("change_set", "approve", ident, "--as", "owner")
    with pytest.raises(CommandError, match="no change set 999999"):
        run("change_set", "show", "999999")
