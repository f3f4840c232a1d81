"""Rendering: deterministic bytes, top-level keys before tables, headers, profile files."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import replace
from typing import Any

import pytest

from policyhub.errors import ApplicationError
from policyhub.policies.document import NODE_SECTIONS
from policyhub.policies.domain import Node, OrgPolicy
from policyhub.rendering.render import PolicyInvalid, render_team
from providers.codex_files import CONFIG, REQUIREMENTS
from providers.codex_versions import capabilities
from tests.conftest import make_policy

POLICY = """
[requirements]
allowed_approval_policies = ["on-request", "never"]
allowed_sandbox_modes = ["read-only", "workspace-write"]
[requirements.features]
memories = false
[requirements.mcp_servers.docs.identity]
command = "docs-mcp"
[config]
model = "gpt-5.5"
model_provider = "openai"
sandbox_mode = "workspace-write"
[mcp_servers.docs]
command = "docs-mcp"
args = ["--stdio"]
[teams.platform]
name = "Platform"
[teams."platform/ci".requirements]
allowed_approval_policies = ["never"]
[teams."platform/ci".config]
model = "codex-ci"
model_provider = "azure-eng"
web_search = "disabled"
[teams."platform/ci".profiles.azure-ci]
model = "gpt-5.5"
model_reasoning_effort = "high"
[teams."platform/ci".profiles.batch]
model_provider = "bedrock"
model = "openai.gpt-oss-120b"
"""


def body(data: bytes) -> str:
    return data.decode().split("\n\n", 1)[1]


def test_same_policy_renders_the_same_bytes_whatever_the_storage_order() -> None:
    policy = make_policy(POLICY)

    def reversed_keys(value: Any) -> Any:
        # PostgreSQL's jsonb does not keep key order; reversing every mapping is the worst case.
        if isinstance(value, dict):
            return {k: reversed_keys(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reversed_keys(v) for v in value]
        return value

    def shuffled_node(node: Node) -> Node:
        return Node(*(reversed_keys(dict(getattr(node, f))) for f in NODE_SECTIONS))

    shuffled = replace(
        policy,
        root=shuffled_node(policy.root),
        endpoints={
            n: replace(e, settings=reversed_keys(e.settings))
            for n, e in reversed(list(policy.endpoints.items()))
        },
        teams={
            p: replace(t, node=shuffled_node(t.node))
            for p, t in reversed(list(policy.teams.items()))
        },
    )
    assert shuffled != policy or json.dumps(shuffled.root.config) != json.dumps(policy.root.config)
    assert render_team(shuffled, "platform/ci").files == render_team(policy, "platform/ci").files


def test_top_level_keys_come_before_every_table() -> None:
    files = render_team(make_policy(POLICY), "platform/ci").files
    for name in (REQUIREMENTS, CONFIG):
        text = "\n" + body(files[name])
        scalars = [k for k, v in tomllib.loads(text).items() if not isinstance(v, dict)]
        assert scalars, name
        assert all(text.index(f"\n{k} = ") < text.index("\n[") for k in scalars)


def test_header_names_team_revision_and_the_sha256_of_the_content() -> None:
    files = render_team(make_policy(POLICY), "platform/ci", revision="7").files
    for data in files.values():
        header, content = data.decode().split("\n\n", 1)
        assert "team acme/platform/ci, revision 7" in header
        assert hashlib.sha256(content.encode()).hexdigest() in header


def test_profiles_render_as_one_file_each_with_provider_ids() -> None:
    rendered = render_team(make_policy(POLICY), "platform/ci")
    assert sorted(rendered.files) == [
        CONFIG,
        "profiles/azure-ci.config.toml",
        "profiles/batch.config.toml",
        REQUIREMENTS,
    ]
    batch = tomllib.loads(body(rendered.files["profiles/batch.config.toml"]))
    assert batch == {"model": "openai.gpt-oss-120b", "model_provider": "amazon-bedrock"}
    config = tomllib.loads(body(rendered.files[CONFIG]))
    # Profiles cannot hold provider tables, so every provider a profile uses is defined in config.
    assert set(config["model_providers"]) == {"azure", "amazon-bedrock"}
    assert config["model_provider"] == "azure"


def test_requirements_pin_renders_the_provider_definition_beside_it() -> None:
    policy = make_policy("""
        [teams.reg.requirements]
        model_provider = "azure-eng"
        [teams.reg.config]
        model = "gpt-5.5"
        web_search = "disabled"
    """)
    requirements = tomllib.loads(body(render_team(policy, "reg").files[REQUIREMENTS]))
    assert requirements["model_provider"] == "azure"
    assert (
        requirements["model_providers"]["azure"]["base_url"]
        == "https://acme-eng.openai.azure.com/openai"
    )
    assert requirements["model_providers"]["azure"]["env_key"] == "AZURE_OPENAI_API_KEY"


def test_derived_defaults_are_rendered_so_codex_never_falls_back() -> None:
    policy = make_policy("""
        [teams.ci.requirements]
        allowed_approval_policies = ["untrusted", "on-request"]
        allowed_web_search_modes = []
    """)
    config = tomllib.loads(body(render_team(policy, "ci").files[CONFIG]))
    assert config["approval_policy"] == "on-request"
    assert config["web_search"] == "disabled"


def test_an_invalid_team_renders_nothing() -> None:
    policy = make_policy("""
        [teams.ci.config]
        sandbox_mode = "danger-full-access"
        [teams.ci.requirements]
        allowed_sandbox_modes = ["read-only"]
    """)
    with pytest.raises(PolicyInvalid) as caught:
        render_team(policy, "ci")
    assert [i.path for i in caught.value.issues] == ["config.sandbox_mode"]


def test_unsupported_codex_version_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"0\.117\.0 is older than .*0\.118\.0"):
        capabilities("0.117.0")
    with pytest.raises(ValueError, match="'latest' is not a Codex version"):
        capabilities("latest")


def test_an_empty_policy_renders_valid_empty_files() -> None:
    policy = OrgPolicy("acme", "Acme", teams={"t": make_policy("[teams.t]\n").teams["t"]})
    files = render_team(policy, "t").files
    assert tomllib.loads(files[REQUIREMENTS].decode()) == {}
    assert tomllib.loads(files[CONFIG].decode()) == {}


@pytest.mark.parametrize("revision", ['7\napproval_policy = "never"\n#', "", "a b"])
def test_a_revision_that_could_break_the_header_comment_is_refused(revision: str) -> None:
    with pytest.raises(ApplicationError):
        render_team(make_policy(POLICY), "platform/ci", revision=revision)
