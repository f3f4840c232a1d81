"""The per-version capability table: how it folds, and that it matches the real binaries.

The table's rows were measured on many releases; the suite re-measures them on the releases it
installs (SUITE_VERSIONS), so a wrong entry fails here instead of on a machine.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from policyhub.policies import schema
from policyhub.policies.domain import MANAGED_KEYS
from providers.codex_versions import (
    CHANGES,
    DEFAULT_VERSION,
    FEATURES_FILE,
    LEGACY_RELEASE_VERSION,
    NEWEST_MEASURED,
    OLDEST,
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
from tests.codex.harness import check_without_session, run_codex
from tests.codex.record_features import parse_features_list

# A loopback provider: the session-free check resolves it without any network.
LOOPBACK = """model = "base-model"
model_provider = "lp"

[model_providers.lp]
name = "lp"
base_url = "http://127.0.0.1:9/v1"
wire_api = "responses"
"""


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
        ((0, 125, 0), (0, 131, 0)),
        ((0, 131, 0), (0, 134, 0)),
        ((0, 134, 0), (0, 142, 0)),
    ]
    assert segments(OLDEST, OLDEST) == [(OLDEST, (0, 120, 0))]
    assert segments((0, 169, 0), (0, 169, 0)) == [((0, 169, 0), None)]
    assert version_segment((0, 135, 2)) == ((0, 135, 2), (0, 142, 0))


def test_versions_are_parsed_strictly() -> None:
    for bad in ("0.125", "v0.125.0", "0.125.0-alpha", "", None, "0.125.0\n"):
        with pytest.raises(ValueError):
            parse_version(bad)
    with pytest.raises(ValueError, match="older than"):
        capabilities("0.110.0")


def _probe(version: str, folder: Path, requirements: str, config: str = LOOPBACK) -> bool:
    folder.mkdir(parents=True)
    (folder / "requirements.toml").write_text(requirements)
    (folder / "config.toml").write_text(config)
    return check_without_session(folder, version).ok


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_requirement_keys_match_the_binary(version: str, tmp_path: Path) -> None:
    """A key set to -7 stops a version that parses it and is ignored by one that does not."""
    keys = sorted({*schema.REQUIREMENT_KEYS, "model_providers", "config_server"})
    with ThreadPoolExecutor(max_workers=4) as pool:
        starts = dict(
            zip(
                keys,
                pool.map(lambda k: _probe(version, tmp_path / k, f"{k} = -7\n"), keys),
                strict=True,
            )
        )
    known = {key for key, started in starts.items() if not started}
    assert known == set(keys) & capabilities(version).requirement_keys


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_introduced_values_match_the_binary(version: str, tmp_path: Path) -> None:
    caps = capabilities(version)
    cases = sorted(
        {
            (key, value)
            for change in CHANGES
            for key, values in (*change.values.items(), *change.fatal_config_values.items())
            for value in values
        }
    )

    def starts(case: tuple[str, str]) -> bool:
        key, value = case
        folder = tmp_path / f"{key}-{value}"
        if key == "prefix_rule_decision":
            rule = f'{{ pattern = [{{ token = "curl" }}], decision = "{value}" }}'
            return _probe(version, folder, f"[rules]\nprefix_rules = [{rule}]\n")
        return _probe(version, folder, "", f'{key} = "{value}"\n{LOOPBACK}')

    with ThreadPoolExecutor(max_workers=4) as pool:
        found = dict(zip(cases, pool.map(starts, cases), strict=True))
    assert found == {case: not caps.config_value_fatal(*case) for case in cases}


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_feature_names_match_the_binary(version: str, tmp_path: Path) -> None:
    run = run_codex(tmp_path, ["features", "list"], version=version, timeout=60)
    assert run.rc == 0, run.stderr
    listed = parse_features_list(run.stdout)
    assert set(listed) == capabilities(version).features
    if parse_version(version) == NEWEST_MEASURED:
        assert listed == dict(feature_stages())


BUILTIN_TABLES = {
    "amazon-bedrock": '[model_providers.amazon-bedrock.aws]\nregion = "us-west-2"\n',
    "gcp": '[model_providers.gcp]\nproject_id = "acme-ml"\nlocation = "us-central1"\n',
}
MATCHER_IDENTITY = (
    '[mcp_servers.docs.identity]\nurl = { match = "prefix", value = "https://mcp.example/" }\n'
)


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_built_in_providers_and_identity_matchers_match_the_binary(
    version: str, tmp_path: Path
) -> None:
    caps = capabilities(version)
    for provider, table in BUILTIN_TABLES.items():
        config = f'model = "m"\nmodel_provider = "{provider}"\n{table}'
        started = _probe(version, tmp_path / provider, "", config)
        assert started is caps.knows_provider(provider), provider
    matchers = _probe(version, tmp_path / "matchers", MATCHER_IDENTITY)
    assert matchers is caps.mcp_identity_matchers


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
@pytest.mark.parametrize("version", SUITE_VERSIONS)
def test_each_managed_pin_beats_the_users_config(version: str, tmp_path: Path) -> None:
    """What `[codex] managed_pins` relies on: managed_config.toml wins over the user's config
    on every release (an API-key sign-in is refused, the keyring is used)."""
    cases = {
        "forced_login_method": ('"chatgpt"', '"api"', "API key login is disabled"),
        "cli_auth_credentials_store": ('"keyring"', '"file"', "keyring"),
    }
    for key, (managed, users, refusal) in cases.items():
        folder = tmp_path / key
        folder.mkdir()
        (folder / "managed_config.toml").write_text(f"{key} = {managed}\n")
        user = tmp_path / f"{key}-user.toml"
        user.write_text(f"{key} = {users}\n")
        login = run_codex(
            folder,
            ["login", "--with-api-key"],
            version=version,
            timeout=30,
            user_config=user,
            stdin=b"sk-test-not-a-key\n",
        )
        assert refusal in login.stdout + login.stderr, (key, login.stdout, login.stderr)
        assert key in MANAGED_KEYS.values()
        # Without the managed layer the user's own setting rules: the sign-in goes through.
        (folder / "managed_config.toml").unlink()
        unmanaged = run_codex(
            folder,
            ["login", "--with-api-key"],
            version=version,
            timeout=30,
            user_config=user,
            stdin=b"sk-test-not-a-key\n",
        )
        assert refusal not in unmanaged.stdout + unmanaged.stderr, (key, unmanaged.stderr)
