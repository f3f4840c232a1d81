"""Validation before publishing: Codex's rules, provider capabilities, consistency, secrets."""

from __future__ import annotations

import pytest

from policyhub.policies.domain import OrgPolicy
from policyhub.policies.validation import validate_policy, validate_team
from tests.conftest import make_policy


def issues_at(policy: OrgPolicy, path: str) -> set[tuple[str, str]]:
    return {(i.severity, i.path) for i in validate_team(policy, path).issues}


def all_errors(policy: OrgPolicy) -> set[tuple[str, str]]:
    return {
        (key, i.path)
        for key, found in validate_policy(policy).items()
        for i in found
        if i.severity == "error"
    }


def test_fast_tier_on_bedrock_is_an_error() -> None:
    policy = make_policy("""
        [teams.batch.config]
        model = "openai.gpt-oss-120b"
        model_provider = "bedrock"
        service_tier = "fast"
        web_search = "disabled"
    """)
    [found] = validate_team(policy, "batch").errors
    assert found.path == "config.service_tier"
    assert "priority tier" in found.message and "bedrock" in found.message


def test_live_web_search_in_a_bedrock_profile_is_an_error() -> None:
    policy = make_policy("""
        [teams.batch.config]
        web_search = "disabled"
        [teams.batch.profiles.bedrock-batch]
        model = "openai.gpt-oss-120b"
        model_provider = "bedrock"
        web_search = "live"
    """)
    assert ("error", "profiles.bedrock-batch.web_search") in issues_at(policy, "batch")


def test_capability_override_on_the_endpoint_lifts_the_rule() -> None:
    policy = make_policy("""
        [providers.bedrock.capabilities]
        priority_tier = true
        [teams.batch.config]
        model = "openai.gpt-oss-120b"
        model_provider = "bedrock"
        service_tier = "fast"
        web_search = "disabled"
    """)
    assert not validate_team(policy, "batch").errors


def test_model_outside_the_bedrock_region_catalogue_is_a_warning() -> None:
    policy = make_policy("""
        [teams.batch.config]
        model = "openai.not-a-model"
        model_provider = "bedrock"
        web_search = "disabled"
    """)
    result = validate_team(policy, "batch")
    assert not result.errors
    assert [w.path for w in result.warnings] == ["config.model"]
    assert "us-west-2" in result.warnings[0].message


def test_azure_model_that_is_not_a_deployment_is_an_error() -> None:
    policy = make_policy("""
        [teams.ci.config]
        model = "gpt-4o"
        model_provider = "azure-eng"
        web_search = "disabled"
    """)
    [found] = validate_team(policy, "ci").errors
    assert found.path == "config.model" and "deployment" in found.message


def test_config_default_forbidden_by_requirements_is_an_error() -> None:
    policy = make_policy("""
        [requirements]
        allowed_sandbox_modes = ["read-only"]
        [config]
        sandbox_mode = "workspace-write"
        [teams.t]
    """)
    [found] = validate_team(policy, "t").errors
    assert found.path == "config.sandbox_mode" and "fall back" in found.message
    assert found.node == "acme (organisation)"


def test_a_profile_forbidden_by_a_team_requirement_is_an_error_naming_the_profile() -> None:
    policy = make_policy("""
        [profiles.yolo]
        approval_policy = "never"
        [teams.careful.requirements]
        allowed_approval_policies = ["on-request"]
        [teams.careful.config]
        approval_policy = "on-request"
    """)
    assert ("error", "profiles.yolo.approval_policy") in issues_at(policy, "careful")


def test_a_profile_on_another_provider_than_the_pinned_one_is_an_error() -> None:
    policy = make_policy("""
        [teams.reg.requirements]
        model_provider = "azure-eng"
        [teams.reg.config]
        model = "gpt-5.5"
        web_search = "disabled"
        [teams.reg.profiles.escape]
        model_provider = "openai"
    """)
    assert ("error", "profiles.escape.model_provider") in issues_at(policy, "reg")


def test_pins_are_written_into_config_so_codex_never_warns() -> None:
    policy = make_policy("""
        [teams.reg.requirements]
        model_provider = "azure-eng"
        cli_auth_credentials_store = "keyring"
        [teams.reg.config]
        model = "gpt-5.5"
        web_search = "disabled"
    """)
    config = validate_team(policy, "reg").resolved.config
    assert config["model_provider"] == "azure-eng"
    assert config["cli_auth_credentials_store"] == "keyring"


def test_mcp_server_outside_the_allowlist_is_an_error() -> None:
    policy = make_policy("""
        [requirements.mcp_servers.docs.identity]
        command = "docs-mcp"
        [teams.t.mcp_servers.docs]
        command = "docs-mcp"
        [teams.t.mcp_servers.evil]
        command = "evil-mcp"
        [teams.u.mcp_servers.docs]
        command = "not-docs-mcp"
    """)
    assert {p for s, p in issues_at(policy, "t") if s == "error"} == {"mcp_servers.evil"}
    assert ("error", "mcp_servers.docs") in issues_at(policy, "u")


def test_unknown_endpoint_reference_is_an_error() -> None:
    policy = make_policy("""
        [teams.t.config]
        model_provider = "nowhere"
    """)
    [found] = validate_team(policy, "t").errors
    assert found.path == "config.model_provider" and "openai" in found.message


def test_two_endpoints_with_one_provider_id_in_one_team_is_an_error() -> None:
    policy = make_policy("""
        [providers.azure-two]
        kind = "azure"
        provider_id = "azure"
        resource_url = "https://acme-two.openai.azure.com/openai"
        api_version = "2025-04-01-preview"
        env_key = "AZURE_TWO_KEY"
        deployments = ["gpt-5.5"]
        [teams.t.config]
        model = "gpt-5.5"
        model_provider = "azure-eng"
        web_search = "disabled"
        [teams.t.profiles.other]
        model_provider = "azure-two"
    """)
    assert ("error", "model_provider") in issues_at(policy, "t")


@pytest.mark.parametrize(
    ("snippet", "path"),
    [
        (
            '[requirements]\nallowed_sandbox_modes = ["workspace-write"]',
            "requirements.allowed_sandbox_modes",
        ),
        (
            "[requirements]\nallowed_approval_policies = []",
            "requirements.allowed_approval_policies",
        ),
        (
            '[requirements]\nallowed_sandbox_modes = "read-only"',
            "requirements.allowed_sandbox_modes",
        ),
        (
            '[requirements]\nallowed_web_search_modes = ["on"]',
            "requirements.allowed_web_search_modes[0]",
        ),
        ('[requirements]\nallowed_models = ["gpt-5.5"]', "requirements.allowed_models"),
        (
            "[requirements.features]\nnot_a_real_feature = true",
            "requirements.features.not_a_real_feature",
        ),
        (
            '[requirements.rules]\nprefix_rules = [{ pattern = [{ token = "ls" }], decision = "allow" }]',
            "requirements.rules.prefix_rules[0].decision",
        ),
        (
            '[requirements.mcp_servers.cli.identity]\nurl = { match = "regex", expression = "(" }',
            "requirements.mcp_servers.cli.identity.url.expression",
        ),
        (
            "[requirements]\nallowed_approvals_reviewers = []",
            "requirements.allowed_approvals_reviewers",
        ),
        (
            '[mcp_servers.docs]\ncommand = "docs"\nstartup_timeout_sec = inf',
            "mcp_servers.docs.startup_timeout_sec",
        ),
        (
            '[mcp_servers.docs]\ncommand = "docs"\ntool_timeout_sec = nan',
            "mcp_servers.docs.tool_timeout_sec",
        ),
        (
            '[mcp_servers.docs]\ncommand = "docs"\nenv = { GITHUB_TOKEN = "hunter2hunter2" }',
            "mcp_servers.docs.env.GITHUB_TOKEN",
        ),
        (
            '[mcp_servers.web]\nurl = "http://mcp.acme.example/x"\nbearer_token_env_var = "T"',
            "mcp_servers.web.url",
        ),
        ('[config]\nsandbox_mode = "full-access"', "config.sandbox_mode"),
        ('[config]\napproval_policy = "untrusted"', "config.approval_policy"),
        ('[config]\nmodel_reasoning_effort = ""', "config.model_reasoning_effort"),
        ("[config]\nmodel_temperature = 0.2", "config.model_temperature"),
        ('[config]\nweb_search = "on"', "config.web_search"),
        ("[config.features]\nnot_a_real_feature = true", "config.features.not_a_real_feature"),
        ('[profiles.fast]\nmodel_providers = "x"', "profiles.fast.model_providers"),
        ('[profiles."Bad Name"]\nmodel = "x"', "profiles.Bad Name"),
        ('[mcp_servers.both]\ncommand = "x"\nurl = "https://mcp.example/x"', "mcp_servers.both"),
        ('[mcp_servers.neither]\nargs = ["x"]', "mcp_servers.neither"),
        (
            '[mcp_servers.web]\nurl = "https://mcp.example/x"\nhttp_headers = { Authorization = "Bearer abc" }',
            "mcp_servers.web.http_headers.Authorization",
        ),
    ],
)
def test_codex_rules_are_refused_with_the_field_path(snippet: str, path: str) -> None:
    from policyhub.policies.document import DocumentInvalid

    try:
        policy = make_policy(snippet)
    except DocumentInvalid as exc:
        assert path in {i.path for i in exc.issues}
        return
    assert ("", path) in all_errors(policy)


@pytest.mark.parametrize(
    "value",
    [
        "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2,
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "x9Y8z7W6v5U4t3S2r1Q0p9O8n7M6l5K4j3I2",
    ],
)
def test_a_literal_secret_in_any_text_field_is_refused_with_its_path(value: str) -> None:
    policy = make_policy(f"""
        [teams.t.config]
        model = "{value}"
        [teams.t.mcp_servers.docs]
        command = "docs"
        env = {{ TOKEN = "{value}" }}
    """)
    paths = {p for k, p in all_errors(policy) if k == "t"}
    assert {"config.model", "mcp_servers.docs.env.TOKEN"} <= paths


@pytest.mark.parametrize("char", ["\u202e", "\x00", "\x1b", "\u2066"])
def test_invisible_control_characters_are_refused(char: str) -> None:
    policy = make_policy("[teams.t]\n")
    from dataclasses import replace

    from policyhub.policies.domain import Node

    team = replace(policy.teams["t"], node=Node(config={"model": f"gpt{char}5"}))
    policy = replace(policy, teams={"t": team})
    assert ("t", "config.model") in all_errors(policy)


def test_every_error_names_its_node() -> None:
    policy = make_policy("""
        [requirements]
        allowed_sandbox_modes = ["read-only"]
        [teams.a.requirements]
        allowed_sandbox_modes = ["read-only", "workspace-write"]
        [teams.b.config]
        sandbox_mode = "nope"
    """)
    found = validate_policy(policy)
    assert {i.node for i in found["a"]} == {"a"}
    assert {i.node for i in found["b"]} == {"b"}


@pytest.mark.parametrize(
    "expression",
    [r"^https://x\Z", r"^(?>https)://x$", r"(?<=a)b", r"(a)\1", r"a++", r"a{2}+", "("],
)
def test_regexes_that_codex_cannot_compile_are_refused(expression: str) -> None:
    policy = make_policy(f"""
        [teams.t.requirements.mcp_servers.cli.identity]
        url = {{ match = "regex", expression = '{expression}' }}
    """)
    assert ("t", "requirements.mcp_servers.cli.identity.url.expression") in all_errors(policy)


@pytest.mark.parametrize(
    "expression", [r"^https://[a-z]+\.corp\.example$", r"a\++", r"a*?", r"\\1", r"[+*]+"]
)
def test_regexes_codex_accepts_pass(expression: str) -> None:
    policy = make_policy(f"""
        [teams.t.requirements.mcp_servers.cli.identity]
        url = {{ match = "regex", expression = '{expression}' }}
    """)
    assert not all_errors(policy)


def test_a_deprecated_feature_pin_is_a_warning() -> None:
    policy = make_policy("[teams.t.requirements.features]\nweb_search_request = true\n")
    assert [(i.severity, i.path) for i in validate_policy(policy)["t"]] == [
        ("warning", "requirements.features.web_search_request")
    ]


def test_derived_web_search_respects_the_default_endpoint() -> None:
    policy = make_policy("""
        [requirements]
        allowed_web_search_modes = ["live", "cached"]
        [teams.batch.config]
        model = "openai.gpt-oss-120b"
        model_provider = "bedrock"
    """)
    result = validate_team(policy, "batch")
    assert not result.errors
    assert result.resolved.config["web_search"] == "disabled"


def test_a_non_openai_provider_without_a_model_is_an_error() -> None:
    policy = make_policy("""
        [teams.ci.config]
        model_provider = "azure-eng"
        web_search = "disabled"
    """)
    [found] = validate_team(policy, "ci").errors
    assert found.path == "config.model_provider" and "without a model" in found.message


def test_a_config_feature_against_a_requirement_pin_is_an_error() -> None:
    policy = make_policy("""
        [requirements.features]
        memories = false
        [teams.t.config.features]
        memories = true
    """)
    [found] = validate_team(policy, "t").errors
    assert (found.path, found.node) == ("config.features.memories", "t")


def test_a_forced_workspace_outside_the_allowed_ones_is_an_error() -> None:
    policy = make_policy("""
        [requirements]
        allowed_chatgpt_workspaces = ["ws-1"]
        [teams.t.config]
        forced_chatgpt_workspace_id = "ws-2"
    """)
    assert ("error", "config.forced_chatgpt_workspace_id") in issues_at(policy, "t")


def test_a_sign_in_method_the_requirements_forbid_is_an_error() -> None:
    # The openai endpoint signs in with ChatGPT; Codex would refuse to start at all.
    policy = make_policy("""
        [teams.t.requirements]
        allowed_login_methods = ["api"]
        [teams.t.config]
        model_provider = "openai"
    """)
    found = validate_team(policy, "t").errors
    assert [(i.path, i.node) for i in found] == [("config.forced_login_method", "endpoint openai")]


def test_a_keyring_pin_warns_about_headless_machines() -> None:
    policy = make_policy('[teams.t.requirements]\ncli_auth_credentials_store = "keyring"\n')
    assert ("warning", "requirements.cli_auth_credentials_store") in issues_at(policy, "t")


def test_the_roots_own_defaults_are_checked_before_any_team_exists() -> None:
    policy = make_policy('[config]\nmodel_provider = "nowhere"\n')
    assert ("", "config.model_provider") in all_errors(policy)


@pytest.mark.parametrize(
    "snippet",
    [
        '[teams.t.requirements]\nrules = "x"',
        '[teams.t.config]\nfeatures = "x"',
        "[teams.t.requirements]\nmcp_servers = [1]",
    ],
)
def test_malformed_sections_are_reported_not_crashed_on(snippet: str) -> None:
    policy = make_policy("[requirements.rules]\nprefix_rules = []\n" + snippet)
    assert validate_team(policy, "t").errors
