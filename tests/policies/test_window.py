"""The Codex support window: a policy whose effect differs across it is flagged by key and version."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from policyhub.errors import ApplicationError
from policyhub.policies import document
from policyhub.policies.services import policy_check
from policyhub.policies.validation import validate_policy
from policyhub.policies.window import accepted_unenforced
from policyhub.rendering.render import PolicyInvalid, render_release, render_team
from providers.codex_files import CONFIG, MANAGED_CONFIG, REQUIREMENTS
from providers.codex_versions import NEWEST_MEASURED, capabilities, version_text
from tests.conftest import make_policy

PINNED = """
[teams.regulated.requirements]
model_provider = "azure-eng"
[teams.regulated.config]
model = "codex-ci"
model_provider = "azure-eng"
"""


def window(minimum: str, maximum: str = "0.169.0", extra: str = "") -> str:
    return f'[codex]\nmin_version = "{minimum}"\nmax_version = "{maximum}"\n{extra}\n'


def findings(text: str, severity: str = "error") -> list[tuple[str, str, str]]:
    found = validate_policy(make_policy(text))
    return [
        (where, issue.path, issue.message)
        for where, issues in found.items()
        for issue in issues
        if issue.severity == severity
    ]


def body(data: bytes) -> dict[str, Any]:
    return tomllib.loads(data.decode())


def test_a_pin_older_versions_ignore_is_refused_naming_key_and_versions() -> None:
    errors = findings(window("0.125.0") + PINNED)
    assert [(where, path) for where, path, _ in errors] == [
        ("regulated", "requirements.model_provider")
    ]
    message = errors[0][2]
    assert "0.125.0 up to 0.156.0" in message and "fails open" in message
    assert "managed_pins" in message and "accept_unenforced" in message


def test_the_same_pin_is_accepted_once_managed_config_backs_it() -> None:
    text = window("0.125.0", extra='managed_pins = ["model_provider"]') + PINNED
    assert findings(text) == []
    release = render_release(make_policy(text), "regulated", revision="1")
    for variant in release.variants:
        managed = body(variant.team.files[MANAGED_CONFIG])
        assert managed["model_provider"] == "azure"
        assert set(managed["model_providers"]) == {"azure"}
        assert body(variant.team.files[REQUIREMENTS])["model_provider"] == "azure"


def test_a_finding_every_team_inherits_is_listed_once() -> None:
    text = window("0.125.0") + "[requirements]\nallow_login_shell = false\n"
    text += "".join(f"[teams.t{n}]\n" for n in range(3))
    with pytest.raises(ApplicationError) as refused:
        policy_check(make_policy(text))
    assert refused.value.args[0].endswith("has 1 error(s)")
    [issue] = refused.value.issues
    assert (
        issue.path == "requirements.allow_login_shell" and "0.125.0 up to 0.146.0" in issue.message
    )


def test_a_window_inside_the_enforcing_releases_needs_no_backing() -> None:
    assert findings(window("0.156.0") + PINNED) == []
    files = render_team(make_policy(window("0.156.0") + PINNED), "regulated").files
    assert MANAGED_CONFIG not in files


def test_an_accepted_unenforced_key_is_no_finding_and_is_listed_with_its_release() -> None:
    text = window("0.125.0", extra='accept_unenforced = ["allow_login_shell", "features.hooks"]')
    text += "[requirements]\nallow_login_shell = false\n[requirements.features]\nhooks = true\n"
    assert findings(text) == [] and findings(text, "warning") == []
    assert accepted_unenforced(make_policy(text).codex) == [
        ("allow_login_shell", "0.146.0"),
        ("features.hooks", "0.129.0"),
    ]


def test_a_managed_pin_needs_a_single_allowed_value() -> None:
    text = window("0.125.0", extra='managed_pins = ["allowed_login_methods"]')
    text += '[requirements]\nallowed_login_methods = ["chatgpt", "api"]\n'
    errors = findings(text)
    assert ("", "requirements.allowed_login_methods") in {(w, p) for w, p, _ in errors}
    assert "exactly one" in errors[0][2]
    single = text.replace('["chatgpt", "api"]', '["chatgpt"]')
    assert findings(single) == []
    managed = render_team(make_policy(single + "[teams.t]\n"), "t").files[MANAGED_CONFIG]
    assert body(managed) == {"forced_login_method": "chatgpt"}


@pytest.mark.parametrize(
    ("minimum", "snippet", "path", "versions"),
    [
        (
            "0.140.0",
            '[config]\nweb_search = "indexed"',
            "config.web_search",
            "0.140.0 up to 0.142.0",
        ),
        (
            "0.125.0",
            '[requirements]\nallowed_web_search_modes = ["indexed"]',
            "requirements.allowed_web_search_modes",
            "0.125.0 up to 0.142.0",
        ),
        (
            "0.120.0",
            '[config]\napprovals_reviewer = "auto_review"',
            "config.approvals_reviewer",
            "0.120.0 up to 0.124.0",
        ),
        (
            "0.118.0",
            '[teams.batch.config]\nmodel = "openai.gpt-oss-120b"\nmodel_provider = "bedrock"',
            "config.model_provider",
            "0.118.0 up to 0.123.0",
        ),
        (
            "0.160.0",
            '[providers.vertex]\nkind = "gcp"\nproject_id = "acme-ml"\nlocation = "us-central1"\n'
            '[teams.ml.config]\nmodel = "gemini-2.5-pro"\nmodel_provider = "vertex"',
            "config.model_provider",
            "0.160.0 up to 0.165.0",
        ),
        (
            "0.140.0",
            '[requirements.mcp_servers.docs.identity]\nurl = { match = "prefix", value = "https://x.example/" }',
            "requirements.mcp_servers.docs.identity",
            "0.140.0 up to 0.143.0",
        ),
        (
            "0.166.0",
            '[requirements.rules]\nprefix_rules = [{ pattern = [{ token = "curl" }], decision = "prompt-user" }]',
            "requirements.rules.prefix_rules[0].decision",
            "0.166.0 up to 0.169.0",
        ),
    ],
)
def test_a_value_some_version_refuses_is_an_error(
    minimum: str, snippet: str, path: str, versions: str
) -> None:
    errors = findings(window(minimum) + snippet)
    assert any(p == path and versions in m and "stop" in m for _, p, m in errors), errors


def test_a_feature_pin_older_versions_do_not_know_fails_open() -> None:
    pin = "[requirements.features]\nbrowser_use = false\n"  # listed from 0.124.0
    errors = findings(window("0.118.0") + pin)
    assert [(p, "0.118.0 up to 0.124.0" in m) for _, p, m in errors] == [
        ("requirements.features.browser_use", True)
    ]
    accepted = window("0.118.0", extra='accept_unenforced = ["features.browser_use"]') + pin
    assert findings(accepted) == []


def test_a_config_feature_is_left_out_where_unknown() -> None:
    text = window("0.125.0") + "[config.features]\nhooks = true\n[teams.t]\n"  # from 0.129.0
    warnings = findings(text, "warning")
    assert any(p == "config.features.hooks" for _, p, _ in warnings)
    release = render_release(make_policy(text), "t", revision="1")
    by_first = {v.spans[0][0]: body(v.team.files[CONFIG]) for v in release.variants}
    assert "features" not in by_first[(0, 125, 0)]
    assert by_first[(0, 129, 0)]["features"] == {"hooks": True}


def test_profiles_are_tables_before_0134_and_files_after() -> None:
    text = window("0.125.0") + '[teams.t.profiles.fast]\nmodel = "gpt-5.5-mini"\n'
    release = render_release(make_policy(text), "t", revision="1")
    bounds = ["0.125.0", "0.169.0"]
    measured = {"measured_until": version_text(NEWEST_MEASURED)}
    assert [v.codex for v in release.variants] == [
        {
            "versions": [["0.125.0", "0.134.0"]],
            "native_channel_from": None,
            "window": bounds,
            **measured,
        },
        # Later releases only made keys known that this policy does not set: no end is known.
        {
            "versions": [["0.134.0", None]],
            "native_channel_from": "0.166.0",
            "window": bounds,
            **measured,
        },
    ]
    tables, files = release.variants
    assert body(tables.team.files[CONFIG])["profiles"] == {"fast": {"model": "gpt-5.5-mini"}}
    assert set(tables.team.files) == {CONFIG, REQUIREMENTS}
    assert "profiles" not in body(files.team.files[CONFIG])
    assert body(files.team.files["profiles/fast.config.toml"]) == {"model": "gpt-5.5-mini"}
    assert release.primary is files


def test_one_version_is_checked_alone() -> None:
    policy = make_policy(PINNED)  # default window: 0.169.0 only
    render_team(policy, "regulated")
    with pytest.raises(PolicyInvalid) as refused:
        render_team(policy, "regulated", target=capabilities("0.140.0"))
    assert [i.path for i in refused.value.issues] == ["requirements.model_provider"]


@pytest.mark.parametrize(
    ("table", "path", "message"),
    [
        ('min_version = "0.169.0"\nmax_version = "0.125.0"', "codex.max_version", "below"),
        ('min_version = "0.100.0"', "codex.min_version", "older than 0.118.0"),
        ('min_version = "latest"', "codex.min_version", "not a Codex version"),
        (
            'max_version = "0.169.0"\naccept_unenforced = ["no_such_key"]',
            "codex.accept_unenforced",
            "not a requirement key",
        ),
        ('managed_pins = ["allow_login_shell"]', "codex.managed_pins", "cannot be pinned"),
        ('managed_pins = ["model_provider", "model_provider"]', "codex.managed_pins", "twice"),
    ],
)
def test_a_bad_window_is_refused_by_field(table: str, path: str, message: str) -> None:
    errors = findings(f"[codex]\n{table}\n[teams.t]\n")
    assert any(p == path and message in m for _, p, m in errors), errors


@pytest.mark.parametrize(
    ("table", "path"),
    [
        ("min_version = 125", "codex.min_version"),
        ("colour = 1", "codex.colour"),
        ('managed_pins = "model_provider"', "codex.managed_pins"),
    ],
)
def test_a_malformed_window_is_refused_when_parsed(table: str, path: str) -> None:
    with pytest.raises(document.DocumentInvalid) as refused:
        make_policy(f"[codex]\n{table}\n")
    assert [i.path for i in refused.value.issues] == [path]


def test_the_window_round_trips_and_shows_in_the_plan() -> None:
    text = window("0.125.0", extra='managed_pins = ["model_provider"]') + PINNED
    policy = make_policy(text)
    assert document.parse(document.dump(policy)) == policy
    changes = document.plan(make_policy(PINNED), policy)
    shown = [str(c) for c in changes if c.object == "codex"]
    assert shown == [
        "~ codex managed_pins: (unset) -> ['model_provider']",
        "~ codex min_version: '0.169.0' -> '0.125.0'",
    ]


def test_a_config_key_older_releases_stop_on_is_left_out_of_their_files() -> None:
    text = window("0.125.0") + '[config]\ndefault_permissions = ":workspace"\n[teams.t]\n'
    warnings = findings(text, "warning")
    assert any(p == "config.default_permissions" for _, p, _ in warnings)
    release = render_release(make_policy(text), "t", revision="1")
    by_first = {v.spans[0][0]: body(v.team.files[CONFIG]) for v in release.variants}
    assert "default_permissions" not in by_first[(0, 125, 0)]
    assert by_first[(0, 128, 0)]["default_permissions"] == ":workspace"
