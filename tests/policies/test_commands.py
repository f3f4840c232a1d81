"""The management commands as an admin uses them: seed_demo, policy export/apply, render."""

from __future__ import annotations

import io
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from policyhub.accounts.models import Membership, Role
from policyhub.audit.models import AuditEvent
from policyhub.policies import document
from policyhub.policies.demo import ACME
from policyhub.policies.selectors import org_policy, organization_get
from providers.codex_versions import SUITE_VERSIONS
from tests.codex.harness import check_file_set

pytestmark = pytest.mark.django_db


def run(*args: Any, stdin: str | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        import sys

        real = sys.stdin
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
        try:
            call_command(*args, stdout=out, stderr=err)
        finally:
            sys.stdin = real
    else:
        call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def demo() -> None:
    run("seed_demo")


def test_seed_demo_creates_acme_and_prints_a_working_login() -> None:
    out, _ = run("seed_demo")
    assert "Demo organisation acme created: 9 teams" in out
    assert "Demo login (owner of acme): admin@acme.example / policyhub-demo" in out
    owner = authenticate(username="admin@acme.example", password="policyhub-demo")
    assert owner is not None and not owner.is_superuser and not owner.is_staff
    assert Membership.objects.get(user=owner).role == Role.OWNER
    org = organization_get("acme")
    assert org is not None
    assert org_policy(org) == document.parse(ACME.read_text())


def test_seed_demo_run_again_leaves_acme_and_its_edited_policy_alone(demo: None) -> None:
    exported, _ = run("policy", "export", "--org", "acme")
    edited = exported.split("[teams.research]")[0]
    run(
        "policy",
        "apply",
        "--org",
        "acme",
        "-",
        "--direct",
        "--as",
        "admin@acme.example",
        stdin=edited,
    )
    events = AuditEvent.objects.count()
    out, _ = run("seed_demo")
    assert "Demo organisation acme exists; its policy was left as it is." in out
    assert "change(s) applied" not in out
    assert AuditEvent.objects.count() == events
    org = organization_get("acme")
    assert org is not None and org_policy(org) == document.parse(edited)
    assert "research" not in org_policy(org).teams


def test_seed_demo_keeps_an_existing_admin_password_and_does_not_print_one(
    demo: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = get_user_model().objects.get(email="admin@acme.example")
    admin.set_password("changed-by-the-admin")
    admin.save()
    monkeypatch.setenv("DEMO_OWNER_PASSWORD", "from-the-environment")
    out, _ = run("seed_demo")
    assert "Demo login: admin@acme.example (existing user; its password was kept)" in out
    assert "from-the-environment" not in out and "policyhub-demo" not in out
    assert authenticate(username="admin@acme.example", password="changed-by-the-admin") is not None


def test_export_prints_a_document_that_applies_back_with_no_changes(
    demo: None, tmp_path: Path
) -> None:
    exported, _ = run("policy", "export", "--org", "acme")
    assert exported.startswith("# PolicyHub policy of organisation acme")
    path = tmp_path / "acme.toml"
    path.write_text(exported)
    out, _ = run("policy", "apply", "--org", "acme", str(path))
    assert out.strip() == "No changes."


def test_apply_dry_run_shows_the_plan_and_changes_nothing(demo: None, tmp_path: Path) -> None:
    exported, _ = run("policy", "export", "--org", "acme")
    edited = exported.replace(
        'model_reasoning_effort = "low"', 'model_reasoning_effort = "minimal"', 1
    )
    edited = edited.split("[teams.research]")[0]
    path = tmp_path / "edit.toml"
    path.write_text(edited)
    events = AuditEvent.objects.count()
    out, _ = run("policy", "apply", "--org", "acme", str(path), "--dry-run")
    assert "~ team batch config.model_reasoning_effort: 'low' -> 'minimal'" in out
    assert "- team research" in out
    assert "Would apply" in out
    assert AuditEvent.objects.count() == events
    out, _ = run(
        "policy",
        "apply",
        "--org",
        "acme",
        "-",
        "--direct",
        "--as",
        "admin@acme.example",
        stdin=edited,
    )
    assert "Applied" in out
    org = organization_get("acme")
    assert org is not None and "research" not in org_policy(org).teams


def test_apply_refuses_an_invalid_document_with_field_paths(demo: None, tmp_path: Path) -> None:
    exported, _ = run("policy", "export", "--org", "acme")
    path = tmp_path / "bad.toml"
    path.write_text(
        exported.replace('sandbox_mode = "read-only"', 'sandbox_mode = "full-access"', 1)
    )
    with pytest.raises(
        CommandError, match=r"batch: profiles\.bedrock-batch\.sandbox_mode"
    ) as caught:
        run("policy", "apply", "--org", "acme", str(path), "--direct")
    assert "nothing was applied" in str(caught.value)
    (tmp_path / "syntax.toml").write_text("[organization\n")
    with pytest.raises(CommandError, match="not valid TOML"):
        run("policy", "apply", "--org", "acme", str(tmp_path / "syntax.toml"))
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CommandError, match="not UTF-8"):
        run("policy", "apply", "--org", "acme", str(tmp_path / "binary.toml"))


def test_render_one_team_writes_its_file_set(demo: None, tmp_path: Path) -> None:
    out, _ = run(
        "render",
        "--org",
        "acme",
        "--team",
        "platform/ci",
        "--out",
        str(tmp_path),
        "--revision",
        "3",
    )
    assert "Rendered 1 team(s)" in out
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.toml")) == [
        "config.toml",
        "profiles/azure-ci.config.toml",
        "requirements.toml",
    ]
    config = (tmp_path / "config.toml").read_text()
    assert "team acme/platform/ci, revision 3" in config
    assert tomllib.loads(config)["model_provider"] == "azure"


def test_render_all_writes_one_folder_per_slug_path_and_drops_stale_profiles(
    demo: None, tmp_path: Path
) -> None:
    stale = tmp_path / "batch" / "profiles" / "gone.config.toml"
    stale.parent.mkdir(parents=True)
    stale.write_text("model = 'old'\n")
    run("render", "--org", "acme", "--all", "--out", str(tmp_path))
    folders = sorted(
        str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("requirements.toml")
    )
    org = organization_get("acme")
    assert org is not None
    assert folders == sorted(org_policy(org).teams)
    assert not stale.exists()
    # Files rendered from the policy, not published, are "unpublished", as on every page.
    header = (tmp_path / "batch" / "config.toml").read_text().splitlines()[0]
    assert "revision unpublished" in header, header


def test_render_refuses_unknown_teams_versions_and_invalid_policies(
    demo: None, tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match="no team 'nope'"):
        run("render", "--org", "acme", "--team", "nope", "--out", str(tmp_path))
    with pytest.raises(CommandError, match=r"--codex-version: Codex 0\.117\.0 is older than"):
        run(
            "render", "--org", "acme", "--all", "--out", str(tmp_path), "--codex-version", "0.117.0"
        )
    # 0.118 lacks the built-in Bedrock provider the batch team uses: refused by key and version.
    with pytest.raises(CommandError) as refused:
        run(
            "render", "--org", "acme", "--all", "--out", str(tmp_path), "--codex-version", "0.118.0"
        )
    assert "batch: error: batch: config.model_provider:" in str(refused.value)
    assert "stops on Codex 0.118.0" in str(refused.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_every_demo_team_rendered_from_postgresql_passes_the_real_codex(
    demo: None, tmp_path: Path, version: str
) -> None:
    """`render --codex-version V`: every team passes V's own binary, each profile selected the
    way V selects profiles (tables before 0.134, files after) and applied."""
    out, err = run(
        "render", "--org", "acme", "--all", "--out", str(tmp_path), "--codex-version", version
    )
    assert f"for Codex {version}" in out and "outside the support window" not in err
    folders = sorted(p.parent for p in tmp_path.rglob("requirements.toml"))
    assert len(folders) == 9
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda folder: check_file_set(folder, version), folders))
    failures = [r.report() for r in results if not r.ok]
    assert not failures, "\n\n".join(failures)
    # Every profile was applied: its model (or effort) shows in the session header.
    ci = next(r for r in results if r.file_set.name == "ci")
    assert {s.profile: s.header.get("model") for s in ci.sessions} == {
        None: "codex-ci",
        "azure-ci": "gpt-5.5",
    }
    web = next(r for r in results if r.file_set.name == "web")
    assert {s.profile: s.header.get("reasoning effort") for s in web.sessions} == {
        None: "high",
        "deep": "xhigh",
    }
    tables = version < "0.134.0"
    assert (tmp_path / "engineering" / "web" / "profiles").is_dir() is not tables
    # Older releases ignore allowed_login_methods and model_provider in requirements; the
    # managed layer every release reads carries them.
    managed = tomllib.loads((tmp_path / "platform/ci/release/managed_config.toml").read_text())
    assert managed["model_provider"] == "azure" and "azure" in managed["model_providers"]


def test_the_window_command_refuses_an_unbacked_pin_then_accepts_it_backed(demo: None) -> None:
    out, _ = run("policy", "window", "--org", "acme")
    assert "min_version: 0.125.0" in out and "max_version: 0.171.0" in out
    with pytest.raises(CommandError) as refused:
        run("policy", "window", "--org", "acme", "--managed-pins", "allowed_login_methods")
    message = str(refused.value)
    assert "the window was not changed" in message
    assert "requirements.model_provider: is ignored by Codex 0.125.0 up to 0.156.0" in message
    assert "platform/ci/release" in message and "managed_config.toml" in message
    org = organization_get("acme")
    assert org is not None and org.codex_window["managed_pins"] == [
        "model_provider",
        "allowed_login_methods",
    ]
    # From 0.156 on every release enforces the pin itself: no backing needed.
    out, _ = run(
        "policy",
        "window",
        "--org",
        "acme",
        "--min",
        "0.156.0",
        "--managed-pins",
        "",
        "--as",
        "admin@acme.example",
        "--reason",
        "fleet upgraded",
    )
    assert "~ codex min_version: '0.125.0' -> '0.156.0'" in out
    events = AuditEvent.objects.filter(object_type="codex", reason="fleet upgraded").order_by("pk")
    assert [e.object_key for e in events] == ["codex managed_pins", "codex min_version"]
    assert {e.reason for e in events} == {"fleet upgraded"}
