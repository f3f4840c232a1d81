"""What each provider kind renders into config.toml, and that a TOML writer keeps it intact."""

import tomllib
from typing import Any

import pytest
import tomlkit
from hypothesis import given
from hypothesis import strategies as st

from providers import KINDS, get_kind

AZ_ARGS = [
    "account",
    "get-access-token",
    "--resource",
    "https://cognitiveservices.azure.com",
    "--query",
    "accessToken",
    "-o",
    "tsv",
]


def _render(kind_name: str, settings: dict[str, Any], provider_id: str) -> dict[str, Any] | None:
    kind = get_kind(kind_name)
    assert [str(i) for i in kind.validate(settings, provider_id)] == []
    return kind.provider_table(settings, provider_id)


def test_every_valid_example_passes_validation(valid_endpoints):
    for kind_name, endpoint in valid_endpoints.items():
        kind = get_kind(kind_name)
        assert kind.validate(endpoint.settings, endpoint.provider_id) == [], kind_name
        assert kind.check_model(endpoint.settings, endpoint.model) is None, kind_name


def test_openai_renders_no_table_only_top_level_keys():
    settings = {"auth_method": "api", "base_url": "https://egress.corp.example/v1"}
    assert _render("openai", settings, "openai") is None
    assert get_kind("openai").top_level_config(settings) == {
        "forced_login_method": "api",
        "openai_base_url": "https://egress.corp.example/v1",
    }


def test_openai_without_base_url_forces_only_the_login_method():
    assert get_kind("openai").top_level_config({"auth_method": "chatgpt"}) == {
        "forced_login_method": "chatgpt"
    }


def test_azure_with_token_command_renders_auth_table():
    settings = {
        "resource_url": "https://acme-eu.openai.azure.com/openai/v1/",
        "api_version": "preview",
        "auth_command": "az",
        "auth_args": AZ_ARGS,
        "auth_timeout_ms": 10000,
        "auth_refresh_interval_ms": 1800000,
        "deployments": ["gpt-5-codex-prod"],
    }
    assert _render("azure", settings, "azure") == {
        "name": "Azure OpenAI",
        "base_url": "https://acme-eu.openai.azure.com/openai/v1",
        "wire_api": "responses",
        "query_params": {"api-version": "preview"},
        "auth": {
            "command": "az",
            "args": AZ_ARGS,
            "timeout_ms": 10000,
            "refresh_interval_ms": 1800000,
        },
    }


def test_azure_with_env_key_renders_env_key_and_api_version():
    settings = {
        "resource_url": "https://acme.cognitiveservices.azure.com/openai",
        "api_version": "2025-04-01-preview",
        "env_key": "AZURE_OPENAI_API_KEY",
        "deployments": ["gpt-5.5"],
    }
    assert _render("azure", settings, "azure-eu") == {
        "name": "Azure OpenAI",
        "base_url": "https://acme.cognitiveservices.azure.com/openai",
        "env_key": "AZURE_OPENAI_API_KEY",
        "wire_api": "responses",
        "query_params": {"api-version": "2025-04-01-preview"},
    }


def test_azure_renders_no_query_params_without_api_version():
    settings = {
        "resource_url": "https://acme.services.ai.azure.com/openai/v1",
        "env_key": "AZURE_OPENAI_API_KEY",
        "deployments": ["gpt-5.5"],
    }
    assert "query_params" not in (_render("azure", settings, "azure") or {})


def test_bedrock_renders_only_the_aws_table():
    settings = {"aws_profile": "codex-team", "region": "eu-west-1"}
    assert _render("amazon-bedrock", settings, "amazon-bedrock") == {
        "aws": {"profile": "codex-team", "region": "eu-west-1"}
    }


def test_bedrock_without_profile_renders_only_the_region():
    assert _render("amazon-bedrock", {"region": "us-west-2"}, "amazon-bedrock") == {
        "aws": {"region": "us-west-2"}
    }


def test_bedrock_table_never_carries_name_or_wire_api(valid_endpoints):
    endpoint = valid_endpoints["amazon-bedrock"]
    table = get_kind("amazon-bedrock").provider_table(endpoint.settings, endpoint.provider_id)
    assert set(table or {}) == {"aws"}
    assert set((table or {})["aws"]) <= {"profile", "region"}


def test_oracle_oci_renders_regional_endpoint_header_and_default_timeout(valid_endpoints):
    endpoint = valid_endpoints["oracle-oci"]
    assert _render("oracle-oci", endpoint.settings, "oracle-oci") == {
        "name": "Oracle OCI Generative AI",
        "base_url": "https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1",
        "wire_api": "responses",
        "http_headers": {"opc-compartment-id": endpoint.settings["compartment_id"]},
        "auth": {
            "command": "/usr/local/bin/oci-genai-token",
            "args": ["--profile", "DEFAULT"],
            "timeout_ms": 5000,
        },
    }


def test_oracle_oci_keeps_an_explicit_timeout_and_refresh_interval():
    settings = {
        "region": "eu-frankfurt-1",
        "auth_command": "oci-genai-token",
        "auth_timeout_ms": 20000,
        "auth_refresh_interval_ms": 0,
    }
    assert _render("oracle-oci", settings, "oci-eu") == {
        "name": "Oracle OCI Generative AI",
        "base_url": "https://inference.generativeai.eu-frankfurt-1.oci.oraclecloud.com/openai/v1",
        "wire_api": "responses",
        "auth": {"command": "oci-genai-token", "timeout_ms": 20000, "refresh_interval_ms": 0},
    }


def test_gcp_renders_only_project_location_and_credential_file(valid_endpoints):
    endpoint = valid_endpoints["gcp"]
    assert _render("gcp", endpoint.settings, "gcp") == {
        "project_id": "acme-ml-prod",
        "location": "us-central1",
        "credential_file": "/etc/gcloud/codex-sa.json",
    }


def test_custom_with_env_key_renders_headers_and_query_params(valid_endpoints):
    endpoint = valid_endpoints["custom"]
    assert _render("custom", endpoint.settings, "corp-gateway") == {
        "name": "Corp Gateway",
        "base_url": "https://llm-gateway.corp.example/v1",
        "env_key": "CORP_LLM_KEY",
        "wire_api": "responses",
        "query_params": {"tenant": "acme"},
        "http_headers": {"X-Team": "platform"},
        "env_http_headers": {"X-Cost-Center": "CORP_COST_CENTER"},
    }


def test_custom_with_token_command_on_loopback_http():
    settings = {
        "name": "Local proxy",
        "base_url": "http://127.0.0.1:4000/v1",
        "auth_command": "/usr/local/bin/corp-token",
        "auth_args": ["--audience", "codex"],
    }
    assert _render("custom", settings, "local-proxy") == {
        "name": "Local proxy",
        "base_url": "http://127.0.0.1:4000/v1",
        "wire_api": "responses",
        "auth": {"command": "/usr/local/bin/corp-token", "args": ["--audience", "codex"]},
    }


def test_custom_wire_api_is_always_responses(valid_endpoints):
    endpoint = valid_endpoints["custom"]
    table = get_kind("custom").provider_table(endpoint.settings, endpoint.provider_id)
    assert (table or {})["wire_api"] == "responses"


def _toml_round_trip(provider_id: str, table: dict[str, Any]) -> dict[str, Any]:
    document = tomlkit.document()
    document["model_providers"] = {provider_id: table}
    return tomllib.loads(tomlkit.dumps(document))


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_valid_example_survives_toml_render_and_parse(kind_name, valid_endpoints):
    endpoint = valid_endpoints[kind_name]
    table = get_kind(kind_name).provider_table(endpoint.settings, endpoint.provider_id)
    if table is None:
        assert kind_name == "openai"
        return
    parsed = _toml_round_trip(endpoint.provider_id, table)
    assert parsed == {"model_providers": {endpoint.provider_id: table}}


# Printable text of any script, including quotes, backslashes and TOML syntax.
_admin_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(str.strip)


@given(name=_admin_text, team=_admin_text)
def test_any_accepted_custom_name_and_header_survive_render_and_parse(name, team):
    settings = {
        "name": name,
        "base_url": "https://gw.example/v1",
        "env_key": "GW_KEY",
        "http_headers": {"X-Team": team},
    }
    kind = get_kind("custom")
    if any(issue.severity == "error" for issue in kind.validate(settings, "gw")):
        return
    table = kind.provider_table(settings, "gw") or {}
    assert _toml_round_trip("gw", table) == {"model_providers": {"gw": table}}
