"""Codex newer than the newest measured release: `render`, `policy window` and the window's own
check say so, name that release, and render exactly as for it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from policyhub.policies.domain import CodexWindow
from policyhub.policies.services import policy_apply
from policyhub.policies.window import unmeasured, window_issues, window_unmeasured
from providers.codex_versions import NEWEST_MEASURED, OLDEST, version_text
from tests.conftest import THREE_TEAMS, acting, make_policy

NEWEST = version_text(NEWEST_MEASURED)
MAJOR, MINOR, PATCH = NEWEST_MEASURED
LATER = version_text((MAJOR, MINOR + 1, 0))
LATER_VERSIONS = [(MAJOR, MINOR, PATCH + 1), (MAJOR, MINOR + 1, 0), (MAJOR + 1, 0, 0)]


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize("version", LATER_VERSIONS, ids=version_text)
def test_a_later_release_is_unmeasured_and_named_with_the_newest_measured(
    version: tuple[int, int, int],
) -> None:
    found = unmeasured(version)
    assert found is not None
    assert f"Codex {version_text(version)} is newer than {NEWEST}" in found
    assert f"rendered as for {NEWEST}" in found


def test_the_newest_measured_release_and_older_ones_are_measured() -> None:
    assert unmeasured(NEWEST_MEASURED) is None
    assert unmeasured(OLDEST) is None


def test_a_window_reaching_past_the_measured_end_is_a_warning_not_an_error() -> None:
    window = CodexWindow(min_version=NEWEST, max_version=LATER)
    assert window_unmeasured(window) == unmeasured((MAJOR, MINOR + 1, 0))
    assert [(i.severity, i.path) for i in window_issues(window)] == [
        ("warning", "codex.max_version")
    ]
    assert window_unmeasured(CodexWindow(min_version=NEWEST, max_version=NEWEST)) is None
    # A malformed window is window_issues' to report, once.
    assert window_unmeasured(CodexWindow(min_version=NEWEST, max_version="latest")) is None


@pytest.fixture
def acme(cast: dict[str, Any]) -> Any:
    window = f'[codex]\nmin_version = "{NEWEST}"\nmax_version = "{NEWEST}"\n'
    policy_apply(
        organization=cast["acme"],
        wanted=make_policy(window + THREE_TEAMS),
        actor=acting(cast["admin"]),
    )
    return cast["acme"]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.django_db
@pytest.mark.parametrize("version", LATER_VERSIONS, ids=version_text)
def test_render_for_a_later_release_warns_and_writes_the_newest_measured_files(
    acme: Any, tmp_path: Path, version: tuple[int, int, int]
) -> None:
    later = version_text(version)
    common = ("render", "--org", "acme", "--all", "--codex-version")
    out, err = run(*common, later, "--out", str(tmp_path / "later"))
    assert f"for Codex {later}" in out
    assert f"warning: Codex {later} is newer than {NEWEST}" in err
    assert f"rendered as for {NEWEST}" in err
    out, err = run(*common, NEWEST, "--out", str(tmp_path / "newest"))
    assert "newer than" not in err
    assert files_of(tmp_path / "later") == files_of(tmp_path / "newest") != {}


@pytest.mark.django_db
def test_render_without_a_version_warns_for_a_window_past_the_measured_end(
    acme: Any, tmp_path: Path
) -> None:
    _, err = run("render", "--org", "acme", "--team", "batch", "--out", str(tmp_path))
    assert "newer than" not in err
    run("policy", "window", "--org", "acme", "--max", LATER, "--as", "admin@example.com")
    _, err = run("render", "--org", "acme", "--team", "batch", "--out", str(tmp_path))
    assert f"warning: Codex {LATER} is newer than {NEWEST}" in err


@pytest.mark.django_db
def test_policy_window_warns_when_the_window_reaches_past_the_measured_end(acme: Any) -> None:
    out, err = run("policy", "window", "--org", "acme")
    assert f"max_version: {NEWEST}" in out and err == ""
    widen = ("policy", "window", "--org", "acme", "--max", LATER, "--as", "admin@example.com")
    out, err = run(*widen, "--dry-run")
    assert "Would apply 1 change(s)" in out
    warning = f"warning: codex.max_version: Codex {LATER} is newer than {NEWEST}"
    assert warning in err
    out, err = run(*widen)
    assert "Applied 1 change(s)" in out and warning in err
    out, err = run("policy", "window", "--org", "acme")
    assert f"max_version: {LATER}" in out and warning in err
    _, err = run("policy", "window", "--org", "acme", "--max", NEWEST, "--as", "admin@example.com")
    assert err == ""
