"""The kind registry, model catalogues per region, capability matrices and `describe()`."""

import json
from datetime import date

import pytest

from providers import KINDS, CapabilityMatrix, ProviderKind, get_kind
from providers.base import CAPABILITIES, capability_override_issues


def test_catalogue_registers_every_kind_under_its_kind_string():
    assert sorted(KINDS) == ["amazon-bedrock", "azure", "custom", "gcp", "openai", "oracle-oci"]
    assert all(isinstance(kind, ProviderKind) and kind.kind == name for name, kind in KINDS.items())


def test_builtin_kinds_carry_their_codex_ids():
    builtin = {name: kind.builtin_id for name, kind in KINDS.items() if kind.builtin_id}
    assert builtin == {"openai": "openai", "amazon-bedrock": "amazon-bedrock", "gcp": "gcp"}


def test_get_kind_names_the_known_kinds_when_asked_for_an_unknown_one():
    with pytest.raises(KeyError, match="known kinds: amazon-bedrock, azure"):
        get_kind("anthropic")


# --- models ------------------------------------------------------------------------------------


def test_azure_model_must_be_a_deployment_name(valid_endpoints):
    issue = get_kind("azure").check_model(valid_endpoints["azure"].settings, "gpt-5.5")
    assert issue is not None
    assert (issue.severity, issue.path) == ("error", "model")
    assert "deployment name" in issue.message
    assert "gpt-5-codex-prod, gpt-5-mini" in issue.message


def test_azure_catalogue_is_the_list_of_deployments(valid_endpoints):
    catalogue = get_kind("azure").model_catalogue(valid_endpoints["azure"].settings)
    assert catalogue == ("gpt-5-codex-prod", "gpt-5-mini")


@pytest.mark.parametrize(
    ("region", "model", "served"),
    [
        ("us-east-1", "openai.gpt-5.5", True),
        ("us-west-2", "openai.gpt-oss-20b", True),
        ("eu-west-1", "openai.gpt-5.5", True),
        ("eu-central-1", "openai.gpt-5.5", False),
        ("eu-north-1", "openai.gpt-oss-20b", False),
        ("ap-south-1", "openai.gpt-oss-120b", True),
        ("us-east-1", "anthropic.claude-opus", False),
    ],
)
def test_bedrock_model_catalogue_per_region(region, model, served):
    issue = get_kind("amazon-bedrock").check_model({"region": region}, model)
    assert (issue is None) is served


def test_bedrock_model_outside_the_region_catalogue_is_a_warning_naming_the_region():
    issue = get_kind("amazon-bedrock").check_model({"region": "eu-central-1"}, "openai.gpt-5.5")
    assert issue is not None
    assert (issue.severity, issue.path) == ("warning", "model")
    assert "for eu-central-1" in issue.message
    assert "as of 2026-11-01" in issue.message


def test_bedrock_serves_fewer_models_in_europe_than_in_us_east_1():
    bedrock = get_kind("amazon-bedrock")
    us = set(bedrock.model_catalogue({"region": "us-east-1"}) or ())
    eu = set(bedrock.model_catalogue({"region": "eu-central-1"}) or ())
    assert eu < us


@pytest.mark.parametrize(
    ("region", "model", "served"),
    [
        ("us-chicago-1", "openai.gpt-5", True),
        ("us-chicago-1", "openai.gpt-oss-120b", True),
        ("ap-osaka-1", "openai.gpt-5", False),
        ("uk-london-1", "openai.gpt-oss-20b", True),
    ],
)
def test_oracle_oci_model_catalogue_per_region(region, model, served):
    issue = get_kind("oracle-oci").check_model({"region": region}, model)
    assert (issue is None) is served
    if issue:
        assert issue.severity == "warning"
        assert region in issue.message


def test_oracle_oci_region_outside_the_catalogue_has_no_model_list():
    oci = get_kind("oracle-oci")
    assert oci.model_catalogue({"region": "ca-toronto-1"}) is None
    assert oci.check_model({"region": "ca-toronto-1"}, "openai.gpt-5") is None


def test_gcp_unknown_model_is_a_warning_naming_the_location():
    issue = get_kind("gcp").check_model({"location": "europe-west4"}, "openai/gpt-oss-20b-maas")
    assert issue is not None
    assert issue.severity == "warning"
    assert "europe-west4" in issue.message


def test_openai_unknown_model_is_a_warning():
    issue = get_kind("openai").check_model({"auth_method": "api"}, "gpt-2")
    assert issue is not None
    assert issue.severity == "warning"


def test_custom_gateway_model_catalogue_is_open(valid_endpoints):
    custom = get_kind("custom")
    assert custom.model_catalogue(valid_endpoints["custom"].settings) is None
    assert custom.check_model(valid_endpoints["custom"].settings, "anything/at-all") is None


# --- capabilities ------------------------------------------------------------------------------


def test_openai_supports_every_capability():
    matrix = get_kind("openai").capabilities.as_dict()
    assert all(matrix[name] for name in CAPABILITIES)


@pytest.mark.parametrize("kind_name", ["amazon-bedrock", "azure"])
def test_cloud_kinds_lack_priority_tier_web_search_and_codex_cloud(kind_name):
    matrix = get_kind(kind_name).capabilities
    assert not (matrix.priority_tier or matrix.web_search or matrix.codex_cloud)
    assert not matrix.image_generation
    assert matrix.data_residency


def test_every_capability_matrix_is_dated_and_sourced():
    for kind in KINDS.values():
        assert kind.capabilities.as_of == date(2026, 11, 1)
        assert kind.capabilities.source


def test_capability_override_changes_only_that_entry():
    bedrock = get_kind("amazon-bedrock")
    effective = bedrock.effective_capabilities({"web_search": True})
    assert effective.web_search is True
    assert effective.priority_tier is False
    assert effective.as_of == bedrock.capabilities.as_of
    assert bedrock.capabilities.web_search is False


def test_capability_overrides_do_not_accept_strings_for_booleans():
    matrix = get_kind("openai").capabilities
    with pytest.raises(ValueError, match="must be true or false"):
        matrix.with_overrides({"web_search": "false"})  # type: ignore[dict-item]


def test_capability_overrides_name_unknown_capabilities():
    issues = capability_override_issues({"voice": True, "web_search": 1})
    assert [(i.path, i.message.split(";")[0]) for i in issues] == [
        ("voice", "unknown capability"),
        ("web_search", "must be true or false"),
    ]


def test_capability_matrix_as_dict_is_json_ready():
    matrix = CapabilityMatrix(
        as_of=date(2026, 1, 2),
        web_search=True,
        image_generation=False,
        priority_tier=False,
        codex_cloud=False,
        data_residency=True,
    )
    assert matrix.as_dict() == {
        "as_of": "2026-01-02",
        "web_search": True,
        "image_generation": False,
        "priority_tier": False,
        "codex_cloud": False,
        "data_residency": True,
    }


# --- describe ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_describe_is_json_ready(kind_name):
    description = get_kind(kind_name).describe()
    assert json.loads(json.dumps(description)) == description
    assert description["kind"] == kind_name
    assert description["capabilities"]["as_of"] == "2026-11-01"


def test_describe_lists_fields_with_type_required_help_and_choices():
    fields = {f["name"]: f for f in get_kind("openai").describe()["fields"]}
    assert fields["auth_method"]["type"] == "str"
    assert fields["auth_method"]["required"] is True
    assert fields["auth_method"]["choices"] == ["chatgpt", "api"]
    assert fields["base_url"]["help"]


def test_describe_shows_defaults_and_credential_roles():
    fields = {f["name"]: f for f in get_kind("oracle-oci").describe()["fields"]}
    assert fields["auth_timeout_ms"]["default"] == 5000
    assert fields["auth_command"]["credential"] == "command"


def test_describe_lists_models_per_region():
    models = get_kind("amazon-bedrock").describe()["models"]
    assert "openai.gpt-5.5" in models["us-east-1"]
