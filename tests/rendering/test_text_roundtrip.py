"""Any string an admin can type into any text field either is refused at that field's path, or
renders, parses back unchanged, and adds no key anywhere (TOML injection is impossible)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from policyhub.policies import document
from policyhub.policies.domain import Endpoint, Node, OrgPolicy, TeamSpec
from policyhub.policies.validation import validate_team
from policyhub.rendering.render import render_team
from tests.conftest import make_policy

BASE = make_policy("[teams.t]\n")
CUSTOM = {"name": "Gateway", "base_url": "https://gw.acme.example/v1", "env_key": "GW_KEY"}

# Where an admin can type free text: (field path in issues, file, path in the parsed file, builder)
Builder = Callable[[str], OrgPolicy]


def team(node: Node, endpoints: dict[str, Endpoint] | None = None) -> OrgPolicy:
    return replace(
        BASE,
        endpoints={**BASE.endpoints, **(endpoints or {})},
        teams={"t": TeamSpec("t", "T", node)},
    )


def custom(**settings: Any) -> OrgPolicy:
    merged = {k: v for k, v in {**CUSTOM, **settings}.items() if v is not None}
    endpoint = Endpoint("gw", "custom", "gw", merged)
    return team(Node(config={"model_provider": "gw", "model": "m"}), {"gw": endpoint})


FIELDS: dict[str, tuple[str, str, tuple[Any, ...], Builder]] = {
    "model": ("config.model", "config.toml", ("model",), lambda s: team(Node(config={"model": s}))),
    "profile model": (
        "profiles.p.model",
        "profiles/p.config.toml",
        ("model",),
        lambda s: team(Node(profiles={"p": {"model": s}})),
    ),
    "reasoning effort": (
        "config.model_reasoning_effort",
        "config.toml",
        ("model_reasoning_effort",),
        lambda s: team(Node(config={"model_reasoning_effort": s})),
    ),
    "instructions": (
        "requirements.additional_developer_instructions",
        "requirements.toml",
        ("additional_developer_instructions",),
        lambda s: team(Node(requirements={"additional_developer_instructions": s})),
    ),
    "workspace id": (
        "requirements.allowed_chatgpt_workspaces[0]",
        "requirements.toml",
        ("allowed_chatgpt_workspaces", 0),
        lambda s: team(Node(requirements={"allowed_chatgpt_workspaces": [s]})),
    ),
    "rule token": (
        "requirements.rules.prefix_rules[0].pattern[0].token",
        "requirements.toml",
        ("rules", "prefix_rules", 0, "pattern", 0, "token"),
        lambda s: team(
            Node(
                requirements={
                    "rules": {"prefix_rules": [{"pattern": [{"token": s}], "decision": "prompt"}]}
                }
            )
        ),
    ),
    "mcp argument": (
        "mcp_servers.docs.args[0]",
        "config.toml",
        ("mcp_servers", "docs", "args", 0),
        lambda s: team(Node(mcp_servers={"docs": {"command": "docs-mcp", "args": [s]}})),
    ),
    "mcp identity command": (
        "requirements.mcp_servers.docs.identity.command",
        "requirements.toml",
        ("mcp_servers", "docs", "identity", "command"),
        lambda s: team(Node(requirements={"mcp_servers": {"docs": {"identity": {"command": s}}}})),
    ),
    "provider display name": (
        "providers.gw.name",
        "config.toml",
        ("model_providers", "gw", "name"),
        lambda s: custom(name=s),
    ),
    "provider header value": (
        "providers.gw.http_headers.X-Team",
        "config.toml",
        ("model_providers", "gw", "http_headers", "X-Team"),
        lambda s: custom(http_headers={"X-Team": s}),
    ),
    "token command argument": (
        "providers.gw.auth_args[0]",
        "config.toml",
        ("model_providers", "gw", "auth", "args", 0),
        lambda s: custom(env_key=None, auth_command="gw-token", auth_args=[s]),
    ),
}

INJECTIONS = [
    'gpt"\nmodel_provider = "evil',
    "x'''\n[profiles.evil]\nmodel = 'y",
    '"""\napproval_policy = "never"\n"""',
    ']\n[model_providers.evil]\nbase_url = "http://evil"',
    '\\u0022 \\" \\\\ \t tab',
    "Ünïcödé 模型 🚀 عربى",
    "",
    " ",
]


def keys(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return {k for key, v in value.items() for k in keys(v, f"{prefix}.{key}")} | {prefix}
    if isinstance(value, list):
        return {k for i, v in enumerate(value) for k in keys(v, f"{prefix}[{i}]")} | {prefix}
    return {prefix}


def dig(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def parsed(policy: OrgPolicy, name: str) -> dict[str, Any]:
    return tomllib.loads(render_team(policy, "t").files[name].decode())


def check_field(field: str, text: str) -> None:
    issue_path, file_name, toml_path, build = FIELDS[field]
    policy = build(text)
    errors = [i for i in validate_team(policy, "t").errors]
    if errors:
        # Refused: every error is about the field that was typed into, nothing else.
        assert {e.path for e in errors} == {issue_path}, errors
        return
    baseline = parsed(build("placeholder"), file_name)
    data = parsed(policy, file_name)
    assert dig(data, toml_path) == text
    assert keys(data) == keys(baseline)
    # Policy as code round-trips the same text.
    assert document.parse(document.dump(policy)) == policy


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(FIELDS)), text=st.text(max_size=60))
def test_any_text_in_any_field_round_trips_or_is_refused_at_its_path(field: str, text: str) -> None:
    check_field(field, text)


@settings(max_examples=len(FIELDS) * len(INJECTIONS), deadline=None)
@given(field=st.sampled_from(sorted(FIELDS)), text=st.sampled_from(INJECTIONS))
@example(field="model", text='gpt"\nmodel_provider = "evil')
def test_injection_attempts_stay_data(field: str, text: str) -> None:
    check_field(field, text)


def test_injected_model_name_is_rendered_as_one_escaped_string() -> None:
    policy = FIELDS["model"][3]('gpt"\nmodel_provider = "evil')
    config = parsed(policy, "config.toml")
    assert config["model"] == 'gpt"\nmodel_provider = "evil'
    assert "model_provider" not in config
