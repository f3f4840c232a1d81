"""The release probe: its measurements agree with the table on the suite's releases, its entry
reads back as the `Change` it describes, and its report names every difference (and only those)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from providers.codex_versions import (
    CHANGES,
    FEATURES_FILE,
    NEWEST_MEASURED,
    SUITE_VERSIONS,
    Change,
    FeatureRow,
    capabilities,
    features_file,
    features_text,
    parse_version,
    version_text,
)
from tests.codex.measure import (
    KeyOutcome,
    Measurement,
    SchemaError,
    measure,
    requirement_areas,
    table_keys,
    toml_key,
    toml_name,
)
from tests.codex.probe import (
    change_literal,
    compare,
    differences,
    feature_rows,
    report,
    table_disagreements,
    topmost,
)

REPO = Path(__file__).resolve().parents[2]
NEWEST = SUITE_VERSIONS[-1]
RECORDED = features_file(FEATURES_FILE.read_text())[1][-1]  # the newest release of the file


def test_protocol_fields_get_their_requirements_toml_names() -> None:
    assert toml_name("allowLoginShell") == "allow_login_shell"
    assert toml_name("sqliteHome") == "sqlite_home"
    assert toml_name("featureRequirements") == "features"
    assert toml_name("network") == "network_proxy"
    assert toml_name("allowedWindowsSandboxImplementations") == (
        "windows.allowed_sandbox_implementations"
    )
    assert toml_key("otel.headers_helper") == "otel.headers_helper"
    assert toml_key("network.reviewDomains") == "network_proxy.review_domains"
    for unreachable in ("hooks.Stop[].matcher", "otel.span_attributes.*", 'models = "x"'):
        assert toml_key(unreachable) is None


SCHEMA = {
    "definitions": {
        "ConfigRequirements": {
            "properties": {
                "allowLoginShell": {"type": ["boolean", "null"]},
                "allowedSandboxModes": {"items": {"$ref": "#/definitions/SandboxMode"}},
                "otel": {"anyOf": [{"$ref": "#/definitions/Otel"}, {"type": "null"}]},
            }
        },
        "SandboxMode": {"enum": ["read-only", "workspace-write"]},
        "Otel": {
            "properties": {
                "exporter": {"$ref": "#/definitions/Otel"},  # a reference back: read once
                "tracestate": {"additionalProperties": {"type": "string"}},
            }
        },
    }
}


def test_requirement_areas_follow_references_lists_maps_and_values() -> None:
    assert requirement_areas(SCHEMA) == {
        "allowLoginShell": frozenset(),
        "allowedSandboxModes": frozenset(
            {'allowedSandboxModes[] = "read-only"', 'allowedSandboxModes[] = "workspace-write"'}
        ),
        # Otel is read once on the way down: its reference back to itself adds nothing.
        "otel": frozenset({"otel.exporter", "otel.tracestate"}),
    }
    broken: list[object] = [{}, {"definitions": {"ConfigRequirements": {}}}, [], None]
    for document in broken:
        with pytest.raises(SchemaError, match="ConfigRequirements"):
            requirement_areas(document)
    assert topmost(["otel.a", "otel.a.b", "otel.a[]", 'otel.a[] = "x"', "otel.c"]) == [
        "otel.a",
        "otel.c",
    ]


def test_every_table_entry_prints_as_itself_in_ruff_format(tmp_path: Path) -> None:
    """The printed literal is the entry (read back as Python) and needs no reformatting."""
    literals = [change_literal(change) for change in CHANGES]
    for change, literal in zip(CHANGES, literals, strict=True):
        assert eval(literal.rstrip(","), {"Change": Change}) == change
    module = tmp_path / "entries.py"
    module.write_text("CHANGES = (\n" + "\n".join(literals) + "\n)\n")
    ruff = Path(sys.executable).with_name("ruff")
    check = subprocess.run(
        [str(ruff), "format", "--diff", "--line-length", "100", str(module)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout


def measurement(version: str, **changes: Any) -> Measurement:
    """A release as the probe would find it (made up: the comparison needs no binary)."""
    made = Measurement(
        version=version,
        requirement_keys={
            "rules": KeyOutcome.KNOWN,
            "otel": KeyOutcome.KNOWN,
            "otel.headers_helper": KeyOutcome.REFUSED,
            "allow_login_shell": KeyOutcome.IGNORED,
        },
        values={("web_search", "indexed"): False, ("approval_policy", "untrusted"): True},
        builtin_providers={"gcp": False, "amazon-bedrock": True},
        mcp_identity_matchers=True,
        features={"apps": "stable", "chronicle": "under-development", "old": "removed"},
        profile_files=True,
        profile_tables=False,
        strict_config=False,
        print_startup_config=True,
        config_server=True,
        managed_pins={"forced_login_method": True},
        schema={"otel": frozenset({"otel.exporter"}), "rules": frozenset()},
    )
    return replace(made, **changes)


def test_the_entry_holds_exactly_what_changed() -> None:
    before = measurement("0.180.0")
    after = measurement(
        "0.181.0",
        requirement_keys={
            **before.requirement_keys,
            "otel.headers_helper": KeyOutcome.KNOWN,
            "allow_login_shell": KeyOutcome.KNOWN,
        },
        values={("web_search", "indexed"): True, ("approval_policy", "untrusted"): False},
        builtin_providers={"gcp": True, "amazon-bedrock": True},
        strict_config=True,
        features={"apps": "stable", "chronicle": "stable", "fresh": "experimental"},
        schema={
            "otel": frozenset({"otel.exporter", "otel.headers_helper"}),
            "rules": frozenset(),
            "sqliteHome": frozenset(),
        },
    )
    difference = compare(before, after)
    assert difference.entry == Change(
        "0.181.0",
        "requirements allow_login_shell and otel.headers_helper; web_search 'indexed'; "
        "approval_policy 'untrusted' fatal in config; built-in gcp provider; --strict-config",
        requirement_keys=frozenset({"allow_login_shell", "otel.headers_helper"}),
        values={"web_search": frozenset({"indexed"})},
        fatal_config_values={"approval_policy": frozenset({"untrusted"})},
        builtin_providers=frozenset({"gcp"}),
        strict_config=True,
    )
    assert difference.unexpressed == []
    lines = differences(difference)
    assert lines[0] == f"table: {difference.entry.summary}"
    assert "0.180.0 refuses the whole requirements file for otel.headers_helper" in lines[1]
    assert "1 new feature name(s): fresh" in lines
    assert "1 feature name(s) no longer listed: old" in lines
    assert "1 stage change(s): chronicle under-development -> stable" in lines
    text = report(difference)
    assert "+ area sqliteHome (requirements.toml sqlite_home" in text
    assert "+ in otel: otel.headers_helper" in text
    assert change_literal(difference.entry) in text

    # What the table cannot say is said beside the entry.
    lost = measurement(
        "0.181.0",
        requirement_keys={**before.requirement_keys, "rules": KeyOutcome.IGNORED},
        managed_pins={"forced_login_method": False},
    )
    assert compare(before, lost).entry is None
    assert compare(before, lost).unexpressed == [
        "requirement key rules: 0.180.0 knows it, 0.181.0 ignored it",
        "managed_config.toml forced_login_method no longer beats the user's config on 0.181.0 "
        "([codex] managed_pins rely on it)",
    ]


def test_a_release_that_changes_nothing_says_so() -> None:
    same = compare(measurement("0.180.0"), measurement("0.180.1"))
    assert same.entry is None and differences(same) == []
    text = report(same)
    assert "(no entry: 0.180.1 changes nothing the table records)" in text
    assert "none: 0.180.1 does all that was measured as 0.180.0 does" in text
    assert "no area or sub-field appeared or vanished" in text


def test_feature_rows_start_new_names_and_end_dropped_ones() -> None:
    v = parse_version
    rows = [
        FeatureRow("apps", v("0.150.0"), None, "experimental"),
        FeatureRow("dropped", v("0.150.0"), None, "removed"),
        FeatureRow("old", v("0.118.0"), v("0.140.0"), ""),
    ]
    text = features_text(rows, ["0.150.0", "0.160.0"], "# features\n")
    listed = {"apps": "stable", "fresh": "under-development"}
    assert feature_rows("0.170.0", listed, text) == [
        "~ apps\t0.150.0\t\tstable\t(stage was experimental)",
        "~ dropped\t0.150.0\t0.170.0\t\t(ends: no longer listed)",
        "+ fresh\t0.170.0\t\tunder-development",
    ]
    assert feature_rows("0.160.0", {"apps": "x", "dropped": "y"}, text) == [
        "codex-features.tsv already records 0.160.0; its names for 0.160.0 agree with the "
        "binary (2)"
    ]
    assert (
        "only the binary lists fresh; only the file has dropped"
        in feature_rows("0.155.0", listed, text)[0]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0.172"], "VERSION: '0.172' is not a Codex version"),
        (["0.172.0", "--against", "latest"], "--against: 'latest' is not a Codex version"),
        (["0.100.0"], "VERSION: 0.100.0 is older than the table's oldest release"),
        (["0.118.0", "--against", "0.125.0"], "VERSION 0.118.0 is older than --against 0.125.0"),
        (
            [RECORDED, "--against", RECORDED, "--write-features"],
            f"--write-features: codex-features.tsv already records {RECORDED}",
        ),
    ],
)
def test_the_command_names_the_bad_argument(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message.replace(".", r"\.")):
        call_command("codex", "probe", *args)


def test_the_command_says_so_where_the_tests_are_not_installed(tmp_path: Path) -> None:
    """An installation is the package alone (docker/Dockerfile copies no tests)."""
    script = textwrap.dedent(
        """
        import sys
        from django.core.management import execute_from_command_line
        execute_from_command_line(["manage.py", "codex", "probe", sys.argv[1]])
        """
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "DJANGO_SETTINGS_MODULE": "policyhub.settings",
        "SECRET_KEY": "probe-test",
    }
    run = subprocess.run(
        [sys.executable, "-c", script, version_text(NEWEST_MEASURED)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "codex probe needs the test suite (tests/codex/probe.py)" in run.stderr


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
def test_the_newest_suite_release_against_itself_shows_no_difference(tmp_path: Path) -> None:
    """Two independent measurements of one release: the probe finds nothing to add, the table
    agrees with the binary, and every protocol area is a requirement key the release knows."""
    first = measure([NEWEST], tmp_path / "first")[NEWEST]
    again = measure([NEWEST], tmp_path / "again")[NEWEST]
    difference = compare(first, again)
    assert difference.entry is None and difference.unexpressed == []
    assert differences(difference) == []
    assert f"none: {NEWEST} does all that was measured" in report(difference)
    assert table_disagreements(again) == []
    assert again.schema is not None and again.schema_error is None
    assert len(again.schema) >= 8
    assert {
        area: again.requirement_keys[toml_name(area)] for area in again.schema
    } == dict.fromkeys(again.schema, KeyOutcome.KNOWN)
    assert all(again.managed_pins.values())


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
def test_the_entry_from_the_oldest_to_the_newest_suite_release_is_the_tables_difference(
    tmp_path: Path,
) -> None:
    """Measured on two real binaries, the probe's entry holds what the table folds differently
    between them (for what the table answers for)."""
    oldest = SUITE_VERSIONS[0]
    found = measure([oldest, NEWEST], tmp_path)
    entry = compare(found[oldest], found[NEWEST]).entry
    assert entry is not None
    old, new = capabilities(oldest), capabilities(NEWEST)
    answered = set(table_keys())
    assert entry.requirement_keys & answered == new.requirement_keys - old.requirement_keys
    for key, values in entry.values.items():
        assert values == {v for v in values if new.accepts_value(key, v)} - {
            v for v in values if old.accepts_value(key, v)
        }
    assert entry.builtin_providers == new.builtin_providers - old.builtin_providers
    for flag in ("profile_files", "strict_config", "print_startup_config", "config_server"):
        flipped = getattr(new, flag) != getattr(old, flag)
        assert getattr(entry, flag) == (getattr(new, flag) if flipped else None), flag
    assert table_disagreements(found[oldest]) == table_disagreements(found[NEWEST]) == []
