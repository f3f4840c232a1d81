"""Resolution root -> team: requirements only narrow, config merges deeper-wins, provenance."""

from __future__ import annotations

from policyhub.policies.domain import OrgPolicy
from policyhub.policies.validation import validate_team
from providers.base import Issue
from tests.conftest import make_policy


def errors(policy: OrgPolicy, path: str) -> list[Issue]:
    return validate_team(policy, path).errors


def test_child_team_can_narrow_sandbox_modes() -> None:
    policy = make_policy("""
        [requirements]
        allowed_sandbox_modes = ["read-only", "workspace-write"]
        [teams.ci.requirements]
        allowed_sandbox_modes = ["read-only"]
    """)
    result = validate_team(policy, "ci")
    assert not result.errors
    assert result.resolved.requirements["allowed_sandbox_modes"] == ["read-only"]
    assert str(result.resolved.requirements_from["allowed_sandbox_modes"]) == "ci (narrowed)"


def test_child_team_cannot_widen_sandbox_modes_and_the_error_names_both_nodes() -> None:
    policy = make_policy("""
        [requirements]
        allowed_sandbox_modes = ["read-only"]
        [teams.platform]
        [teams."platform/ci".requirements]
        allowed_sandbox_modes = ["read-only", "danger-full-access"]
    """)
    [found] = errors(policy, "platform/ci")
    assert found.node == "platform/ci"
    assert found.path == "requirements.allowed_sandbox_modes"
    assert "'danger-full-access'" in found.message and "acme (organisation)" in found.message


def test_widening_is_measured_against_the_nearest_narrowing_ancestor() -> None:
    policy = make_policy("""
        [requirements]
        allowed_approval_policies = ["on-request", "never"]
        [teams.platform.requirements]
        allowed_approval_policies = ["on-request"]
        [teams."platform/ci".requirements]
        allowed_approval_policies = ["never"]
    """)
    [found] = errors(policy, "platform/ci")
    assert "(set by platform)" in found.message


def test_disabled_web_search_is_always_allowed_to_a_child() -> None:
    policy = make_policy("""
        [requirements]
        allowed_web_search_modes = ["cached"]
        [teams.ci.requirements]
        allowed_web_search_modes = ["disabled"]
    """)
    assert not errors(policy, "ci")


def test_a_child_cannot_change_a_pin() -> None:
    policy = make_policy("""
        [requirements]
        cli_auth_credentials_store = "keyring"
        [teams.ci.requirements]
        cli_auth_credentials_store = "file"
    """)
    [found] = errors(policy, "ci")
    assert found.path == "requirements.cli_auth_credentials_store"
    assert "'keyring'" in found.message and "'file'" in found.message


def test_a_child_may_repeat_a_pin() -> None:
    policy = make_policy("""
        [requirements]
        enforce_residency = "us"
        [teams.ci.requirements]
        enforce_residency = "us"
    """)
    assert not errors(policy, "ci")
    # The root stays the setter: the team changed nothing.
    resolved = validate_team(policy, "ci").resolved
    assert resolved.requirements_from["enforce_residency"].node == "acme (organisation)"


def test_a_child_cannot_re_enable_the_login_shell() -> None:
    policy = make_policy("""
        [requirements]
        allow_login_shell = false
        [teams.ci.requirements]
        allow_login_shell = true
    """)
    [found] = errors(policy, "ci")
    assert found.path == "requirements.allow_login_shell"


def test_feature_pins_cannot_be_flipped_but_new_pins_may_be_added() -> None:
    policy = make_policy("""
        [requirements.features]
        memories = false
        [teams.a.requirements.features]
        memories = true
        [teams.b.requirements.features]
        shell_snapshot = true
    """)
    [found] = errors(policy, "a")
    assert found.path == "requirements.features.memories"
    resolved = validate_team(policy, "b").resolved
    assert resolved.requirements["features"] == {"memories": False, "shell_snapshot": True}


def test_mcp_allowlist_can_shrink_but_not_grow_or_change_identity() -> None:
    policy = make_policy("""
        [requirements.mcp_servers.docs.identity]
        command = "docs-mcp"
        [requirements.mcp_servers.search.identity]
        url = "https://mcp.acme.example/search"
        [teams.shrink.requirements.mcp_servers.docs.identity]
        command = "docs-mcp"
        [teams.grow.requirements.mcp_servers.evil.identity]
        command = "evil-mcp"
        [teams.swap.requirements.mcp_servers.docs.identity]
        command = "other-docs-mcp"
    """)
    assert not errors(policy, "shrink")
    assert list(validate_team(policy, "shrink").resolved.requirements["mcp_servers"]) == ["docs"]
    assert errors(policy, "grow")[0].path == "requirements.mcp_servers.evil"
    assert errors(policy, "swap")[0].path == "requirements.mcp_servers.docs.identity"


def test_prefix_rules_and_instructions_accumulate_down_the_tree() -> None:
    policy = make_policy("""
        [requirements]
        additional_developer_instructions = "Be careful."
        [requirements.rules]
        prefix_rules = [{ pattern = [{ token = "rm" }], decision = "forbidden" }]
        [teams.ci.requirements]
        additional_developer_instructions = "No deploys."
        [teams.ci.requirements.rules]
        prefix_rules = [{ pattern = [{ token = "kubectl" }], decision = "prompt" }]
    """)
    req = validate_team(policy, "ci").resolved.requirements
    assert [r["pattern"][0]["token"] for r in req["rules"]["prefix_rules"]] == ["rm", "kubectl"]
    assert req["additional_developer_instructions"] == "Be careful.\n\nNo deploys."


def test_config_defaults_merge_per_key_with_the_deeper_node_winning() -> None:
    policy = make_policy("""
        [config]
        model = "gpt-5.5"
        model_reasoning_effort = "medium"
        [config.features]
        memories = true
        [teams.platform.config]
        model_reasoning_effort = "high"
        [teams."platform/ci".config]
        model = "codex-ci"
        model_provider = "azure-eng"
        [teams."platform/ci".config.features]
        shell_snapshot = false
    """)
    resolved = validate_team(policy, "platform/ci").resolved
    assert resolved.config["model"] == "codex-ci"
    assert resolved.config["model_reasoning_effort"] == "high"
    assert resolved.config["features"] == {"memories": True, "shell_snapshot": False}
    assert resolved.config_from["model"].node == "platform/ci"
    assert resolved.config_from["model_reasoning_effort"].node == "platform"
    assert resolved.config_from["features.memories"].node == "acme (organisation)"


def test_profiles_merge_per_key_across_nodes() -> None:
    policy = make_policy("""
        [profiles.fast]
        model = "gpt-5.5"
        model_reasoning_effort = "low"
        [teams.ci.profiles.fast]
        model_reasoning_effort = "minimal"
    """)
    resolved = validate_team(policy, "ci").resolved
    assert resolved.profiles["fast"] == {"model": "gpt-5.5", "model_reasoning_effort": "minimal"}
    assert resolved.profiles_from["fast"]["model"].node == "acme (organisation)"
    assert resolved.profiles_from["fast"]["model_reasoning_effort"].node == "ci"


def test_a_derived_default_names_the_node_whose_requirement_caused_it() -> None:
    policy = make_policy("""
        [teams.ci.requirements]
        allowed_approval_policies = ["untrusted", "never"]
    """)
    resolved = validate_team(policy, "ci").resolved
    # `untrusted` cannot be written to config.toml, so the next allowed value is the default.
    assert resolved.config["approval_policy"] == "never"
    assert str(resolved.config_from["approval_policy"]) == "ci (derived)"
