"""The per-version capability table: how it folds, and that it matches the real binaries.

The table's rows were measured on many releases; the suite re-measures them on the releases it
installs (SUITE_VERSIONS), so a wrong entry fails here instead of on a machine.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from policyhub.policies.domain import MANAGED_KEYS
from providers.codex_versions import (
    CHANGES,
    DEFAULT_VERSION,
    FEATURES_FILE,
    LEGACY_RELEASE_VERSION,
    NEWEST_MEASURED,
    OLDEST,
    STRICT_REQUIREMENT_TABLES,
    SUITE_VERSIONS,
    Change,
    FeatureRow,
    capabilities,
    feature_stages,
    features_file,
    features_text,
    features_with_release,
    main,
    parse_version,
    segments,
    version_segment,
    version_text,
)
from tests.codex import measure
from tests.codex.record_features import features_list, parse_features_list


@pytest.mark.parametrize("change", CHANGES[1:], ids=lambda c: c.version)
def test_each_entry_changes_exactly_from_its_release(change: Change) -> None:
    """One release before the entry lacks what it adds; the entry's release has it."""
    index = CHANGES.index(change)
    before = capabilities(CHANGES[index - 1].version)
    at = capabilities(CHANGES[index].version)
    entry = CHANGES[index]
    assert not entry.requirement_keys & before.requirement_keys
    assert entry.requirement_keys <= at.requirement_keys
    for key, values in entry.values.items():
        assert all(not before.accepts_value(key, v) and at.accepts_value(key, v) for v in values)
    for key, values in entry.fatal_config_values.items():
        assert all(
            not before.config_value_fatal(key, v) and at.config_value_fatal(key, v) for v in values
        )
    assert not entry.builtin_providers & before.builtin_providers
    assert entry.builtin_providers <= at.builtin_providers
    flags = ("profile_files", "strict_config", "print_startup_config", "config_server")
    for flag in (*flags, "mcp_identity_matchers"):
        if getattr(entry, flag) is not None:
            assert getattr(at, flag) == getattr(entry, flag) != getattr(before, flag)


def test_the_known_releases_agree_with_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    """The suite installs the newest measured release last, and every version the defaults name
    is one the table covers; the Makefile reads the suite from the same place."""
    suite = [parse_version(v) for v in SUITE_VERSIONS]
    assert suite == sorted(set(suite)) and suite[-1] == NEWEST_MEASURED and suite[0] >= OLDEST
    for version in (DEFAULT_VERSION, LEGACY_RELEASE_VERSION):
        assert OLDEST <= parse_version(version) <= NEWEST_MEASURED
    assert set(feature_stages()) == capabilities(NEWEST_MEASURED).features
    stages = {"stable", "experimental", "under-development", "deprecated", "removed"}
    assert set(feature_stages().values()) == stages
    assert main(["suite"]) == 0 and capsys.readouterr().out.split() == list(SUITE_VERSIONS)
    assert main(["newest"]) == 0 and capsys.readouterr().out.strip() == version_text(
        NEWEST_MEASURED
    )


def test_the_features_file_writes_back_exactly_as_it_reads() -> None:
    text = FEATURES_FILE.read_text()
    header, releases, rows = features_file(text)
    assert features_text(rows, releases, header) == text
    assert releases[-1] == version_text(NEWEST_MEASURED)


def test_recording_a_release_ends_the_names_it_dropped_and_starts_the_new_ones() -> None:
    v = parse_version
    rows = [
        FeatureRow("kept", v("0.150.0"), None, "experimental"),
        FeatureRow("dropped", v("0.150.0"), None, "removed"),
        FeatureRow("old", v("0.118.0"), v("0.140.0"), ""),
    ]
    listed = {"kept": "stable", "fresh": "under-development"}
    assert features_with_release(rows, v("0.170.0"), listed) == [
        FeatureRow("dropped", v("0.150.0"), v("0.170.0"), ""),
        FeatureRow("fresh", v("0.170.0"), None, "under-development"),
        FeatureRow("kept", v("0.150.0"), None, "stable"),
        FeatureRow("old", v("0.118.0"), v("0.140.0"), ""),
    ]
    with pytest.raises(ValueError, match="not newer"):
        features_with_release(rows, v("0.150.0"), listed)
    assert parse_features_list("apps   stable   true\nartifact   under development   false\n") == {
        "apps": "stable",
        "artifact": "under-development",
    }


def test_entries_are_in_release_order() -> None:
    versions = [parse_version(c.version) for c in CHANGES]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_profile_layout_and_channel_boundaries() -> None:
    assert not capabilities("0.133.9").profile_files and capabilities("0.134.0").profile_files
    assert not capabilities("0.165.0").config_server and capabilities("0.166.0").config_server
    assert not capabilities("0.122.0").knows_provider("amazon-bedrock")
    assert capabilities("0.123.0").knows_provider("amazon-bedrock")
    assert not capabilities("0.164.0").knows_provider("gcp")
    assert capabilities("0.165.0").knows_provider("gcp")
    assert capabilities("0.118.0").knows_provider("azure")  # custom ids are never judged
    assert capabilities("0.148.0").config_value_fatal("approval_policy", "untrusted") is False
    assert capabilities("0.149.0").config_value_fatal("approval_policy", "untrusted") is True
    # A value no release introduced (a gateway's own service tier) is not judged.
    assert capabilities("0.125.0").accepts_value("service_tier", "gateway-gold")


def test_segments_cut_the_window_where_codex_changes() -> None:
    cuts = segments(parse_version("0.125.0"), parse_version("0.140.0"))
    # The last cut ends where Codex next changes after the window, not at infinity.
    assert cuts == [
        ((0, 125, 0), (0, 128, 0)),
        ((0, 128, 0), (0, 129, 0)),
        ((0, 129, 0), (0, 131, 0)),
        ((0, 131, 0), (0, 133, 0)),
        ((0, 133, 0), (0, 134, 0)),
        ((0, 134, 0), (0, 136, 0)),
        ((0, 136, 0), (0, 138, 0)),
        ((0, 138, 0), (0, 140, 0)),
        ((0, 140, 0), (0, 142, 0)),
    ]
    assert segments(OLDEST, OLDEST) == [(OLDEST, (0, 120, 0))]
    assert segments((0, 169, 0), (0, 169, 0)) == [((0, 169, 0), (0, 171, 0))]
    assert version_segment((0, 135, 2)) == ((0, 135, 2), (0, 136, 0))
    # A release that only made requirement keys known cuts only a policy that sets them.
    used = segments(parse_version("0.125.0"), parse_version("0.140.0"), keys={"windows"})
    assert [start for start, _ in used] == [(0, 125, 0), (0, 131, 0), (0, 134, 0), (0, 136, 0)]
    assert used[-1] == ((0, 136, 0), (0, 142, 0))
    assert segments((0, 169, 0), (0, 169, 0), keys={"otel"}) == [((0, 169, 0), None)]
    assert segments((0, 169, 0), (0, 169, 0), keys={"otel.headers_helper"}) == [
        ((0, 169, 0), (0, 171, 0))
    ]


def test_versions_are_parsed_strictly() -> None:
    for bad in ("0.125", "v0.125.0", "0.125.0-alpha", "", None, "0.125.0\n"):
        with pytest.raises(ValueError):
            parse_version(bad)
    with pytest.raises(ValueError, match="older than"):
        capabilities("0.110.0")


# --- the table against the real binaries ------------------------------------------------------------
# The measurements are the release probe's own (tests/codex/measure.py): what the probe prints for
# a new release is exactly what these tests hold the table to.


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_requirement_keys_match_the_binary(version: str, tmp_path: Path) -> None:
    """Every key the table names, and every key PolicyHub renders, set to -7: a type error where
    the table says the release knows it, a start (the key ignored) or an "unknown field" refusal
    of a strict table where it says it does not."""
    keys = measure.table_keys()
    outcomes = measure.run_all(
        {key: partial(measure.key_outcome, version, key, tmp_path / key) for key in keys}
    )
    known = {key for key, outcome in outcomes.items() if outcome is measure.KeyOutcome.KNOWN}
    assert known == set(keys) & capabilities(version).requirement_keys
    for key, outcome in outcomes.items():
        if outcome is measure.KeyOutcome.REFUSED:
            assert key.split(".")[0] in STRICT_REQUIREMENT_TABLES, key


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_introduced_values_match_the_binary(version: str, tmp_path: Path) -> None:
    caps = capabilities(version)
    cases = measure.value_cases()
    found = measure.run_all(
        {
            case: partial(measure.value_starts, version, case, tmp_path / f"{case[0]}-{case[1]}")
            for case in cases
        }
    )
    assert found == {case: not caps.config_value_fatal(*case) for case in cases}


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_feature_names_match_the_binary(version: str) -> None:
    listed = features_list(version)
    assert set(listed) == capabilities(version).features
    if parse_version(version) == NEWEST_MEASURED:
        assert listed == dict(feature_stages())


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_built_in_providers_and_identity_matchers_match_the_binary(
    version: str, tmp_path: Path
) -> None:
    caps = capabilities(version)
    for provider in measure.BUILTIN_TABLES:
        started = measure.provider_known(version, provider, tmp_path / provider)
        assert started is caps.knows_provider(provider), provider
    assert measure.identity_matchers(version, tmp_path / "matchers") is caps.mcp_identity_matchers


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_each_managed_pin_beats_the_users_config(version: str, tmp_path: Path) -> None:
    """What `[codex] managed_pins` relies on: managed_config.toml wins over the user's config
    on every release (an API-key sign-in is refused, the keyring is used)."""
    for key in measure.MANAGED_PINS:
        assert key in MANAGED_KEYS.values()
        assert measure.managed_pin_wins(version, key, tmp_path / key), key


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_profile_layout_and_flags_match_the_binary(version: str, tmp_path: Path) -> None:
    """The profile layout, `--strict-config`, `--print-startup-config` and the config-server
    fetch each work exactly where the table says they do."""
    caps = capabilities(version)
    found = measure.run_all(
        {
            "files": partial(measure.profile_layout_works, version, "files", tmp_path / "files"),
            "tables": partial(measure.profile_layout_works, version, "tables", tmp_path / "t"),
            "strict": partial(measure.strict_config, version, tmp_path / "strict"),
            "startup": partial(measure.print_startup_config, version, tmp_path / "startup"),
            "server": partial(measure.config_server, version, tmp_path / "server"),
        }
    )
    assert found == {
        "files": caps.profile_files,
        "tables": not caps.profile_files,
        "strict": caps.strict_config,
        "startup": caps.print_startup_config,
        "server": caps.config_server,
    }
