"""Validation rules of the provider kinds: ids, shapes, credentials, URLs and literal secrets."""

from typing import Any

import pytest

from providers import KINDS, Issue, get_kind
from providers.base import BUILTIN_PROVIDER_IDS

# Built at run time so that no credential-shaped literal sits in the repository.
FAKE_OPENAI_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5q" * 2


def _validate(kind_name: str, settings: dict[str, Any], provider_id: str = "") -> list[Issue]:
    kind = get_kind(kind_name)
    return kind.validate(settings, provider_id or kind.codex_provider_id() or "corp-gw")


def _errors(issues: list[Issue]) -> dict[str, str]:
    return {i.path: i.message for i in issues if i.severity == "error"}


def _warnings(issues: list[Issue]) -> dict[str, str]:
    return {i.path: i.message for i in issues if i.severity == "warning"}


def _with(endpoint_settings: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**endpoint_settings, **changes}


def _custom(**changes: Any) -> dict[str, Any]:
    base = {"name": "Corp Gateway", "base_url": "https://gw.corp.example/v1", "env_key": "GW_KEY"}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def _azure(**changes: Any) -> dict[str, Any]:
    base = {
        "resource_url": "https://acme.openai.azure.com/openai/v1",
        "env_key": "AZURE_OPENAI_API_KEY",
        "deployments": ["gpt-5-codex-prod"],
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


# --- provider ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider_id", sorted(BUILTIN_PROVIDER_IDS))
def test_custom_kind_cannot_take_a_builtin_id(provider_id):
    message = _errors(_validate("custom", _custom(), provider_id))["provider_id"]
    assert "reserved by Codex" in message


def test_azure_cannot_take_the_reserved_openai_id():
    assert "reserved by Codex" in _errors(_validate("azure", _azure(), "openai"))["provider_id"]


@pytest.mark.parametrize(
    ("kind_name", "provider_id"),
    [("amazon-bedrock", "bedrock"), ("gcp", "vertex"), ("openai", "oa")],
)
def test_builtin_kinds_must_use_their_codex_id(kind_name, provider_id, valid_endpoints):
    settings = valid_endpoints[kind_name].settings
    message = _errors(_validate(kind_name, settings, provider_id))["provider_id"]
    assert f"`{get_kind(kind_name).builtin_id}`" in message


@pytest.mark.parametrize("provider_id", ["Corp", "corp gw", "-corp", "corp.gw", "c" * 64])
def test_provider_id_must_be_a_lowercase_toml_key(provider_id):
    assert "provider_id" in _errors(_validate("custom", _custom(), provider_id))


def test_admin_chosen_kinds_default_to_their_usual_id():
    assert get_kind("azure").codex_provider_id() == "azure"
    assert get_kind("oracle-oci").codex_provider_id() == "oracle-oci"
    assert get_kind("azure").codex_provider_id("azure-eu") == "azure-eu"
    assert get_kind("amazon-bedrock").codex_provider_id("anything") == "amazon-bedrock"


# --- shapes and types --------------------------------------------------------------------------


def test_unknown_setting_is_an_error_naming_the_key():
    errors = _errors(_validate("custom", _custom(wire_api="chat")))
    assert "unknown setting" in errors["wire_api"]


def test_bedrock_refuses_codex_fields_such_as_name_or_env_key():
    errors = _errors(
        _validate("amazon-bedrock", {"region": "us-east-1", "name": "B", "env_key": "K"})
    )
    assert set(errors) == {"name", "env_key"}


def test_missing_required_fields_are_errors():
    errors = _errors(_validate("custom", {"env_key": "GW_KEY"}, "gw"))
    assert errors == {"name": "is required", "base_url": "is required"}


def test_none_counts_as_unset():
    assert _validate("custom", _custom(http_headers=None) | {"query_params": None}, "gw") == []


def test_settings_must_be_a_mapping():
    issues = get_kind("custom").validate(["name"], "gw")  # type: ignore[arg-type]
    assert _errors(issues) == {"": "settings must be a table of field names to values"}


def test_bool_is_not_accepted_as_an_integer():
    settings = _azure(env_key=None, auth_command="az", auth_timeout_ms=True)
    assert _errors(_validate("azure", settings))["auth_timeout_ms"] == "must be a whole number"


def test_string_setting_refuses_other_types():
    assert _errors(_validate("amazon-bedrock", {"region": 1}))["region"] == "must be a string"


def test_empty_string_is_refused_rather_than_rendered():
    assert "must not be empty" in _errors(_validate("custom", _custom(name="  ")))["name"]


def test_list_setting_refuses_a_bare_string():
    settings = _azure(env_key=None, auth_command="az", auth_args="account get-access-token")
    assert _errors(_validate("azure", settings))["auth_args"] == "must be a list of strings"


def test_list_item_error_points_at_its_index():
    settings = _azure(env_key=None, auth_command="az", auth_args=["account", 3])
    assert _errors(_validate("azure", settings)) == {"auth_args[1]": "must be a string"}


def test_map_value_error_points_at_its_key():
    errors = _errors(_validate("custom", _custom(http_headers={"X-Team": 7})))
    assert errors == {"http_headers.X-Team": "must be a string"}


def test_map_setting_refuses_a_list():
    errors = _errors(_validate("custom", _custom(query_params=["tenant=acme"])))
    assert errors == {"query_params": "must be a table of names to strings"}


def test_integer_beyond_the_toml_range_is_refused():
    settings = _azure(env_key=None, auth_command="az", auth_refresh_interval_ms=2**63)
    assert "auth_refresh_interval_ms" in _errors(_validate("azure", settings))


def test_negative_integer_is_refused():
    settings = _azure(env_key=None, auth_command="az", auth_refresh_interval_ms=-1)
    assert "auth_refresh_interval_ms" in _errors(_validate("azure", settings))


def test_newline_in_a_header_value_is_refused():
    errors = _errors(_validate("custom", _custom(http_headers={"X-Team": "a\r\nX-Evil: 1"})))
    assert errors == {"http_headers.X-Team": "contains the control or invisible character U+000D"}


def test_bidi_override_in_a_display_name_is_refused():
    errors = _errors(_validate("custom", _custom(name="Corp \u202egateway")))
    assert errors == {
        "name": "contains the control or invisible character U+202E RIGHT-TO-LEFT OVERRIDE"
    }


def test_header_name_must_be_an_http_token():
    errors = _errors(_validate("custom", _custom(http_headers={"X Team": "platform"})))
    assert errors == {"http_headers.X Team": "is not a valid HTTP header name"}


def test_choice_setting_lists_the_allowed_values():
    errors = _errors(_validate("openai", {"auth_method": "password"}))
    assert errors == {"auth_method": "must be one of: chatgpt, api"}


# --- credentials -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind_name", ["azure", "custom"])
def test_auth_command_cannot_be_combined_with_env_key(kind_name):
    settings = (_azure if kind_name == "azure" else _custom)(auth_command="az")
    assert (
        "cannot be combined with env_key"
        in _errors(_validate(kind_name, settings, "gw"))["auth_command"]
    )


def test_azure_needs_env_key_or_auth_command():
    errors = _errors(_validate("azure", _azure(env_key=None)))
    assert errors == {"env_key": "set either env_key or auth_command"}


@pytest.mark.parametrize("kind_name", ["azure", "custom", "oracle-oci"])
def test_auth_timeout_must_be_non_zero(kind_name, valid_endpoints):
    settings = {k: v for k, v in valid_endpoints[kind_name].settings.items() if k != "env_key"}
    settings |= {"auth_command": "token-helper", "auth_timeout_ms": 0}
    errors = _errors(_validate(kind_name, settings, valid_endpoints[kind_name].provider_id))
    assert errors == {"auth_timeout_ms": "must be greater than zero"}


def test_auth_options_need_an_auth_command():
    errors = _errors(_validate("custom", _custom(auth_args=["--x"], auth_refresh_interval_ms=5)))
    assert errors == {
        "auth_args": "is only used together with auth_command",
        "auth_refresh_interval_ms": "is only used together with auth_command",
    }


def test_auth_command_with_spaces_is_a_warning():
    settings = _azure(env_key=None, auth_command="az account get-access-token")
    assert "auth_args" in _warnings(_validate("azure", settings))["auth_command"]


def test_env_key_must_be_a_variable_name_not_a_value():
    errors = _errors(_validate("custom", _custom(env_key="my gateway key")))
    assert errors["env_key"].startswith("must be an environment variable name")


def test_env_key_holding_a_literal_key_is_refused_as_a_secret():
    errors = _errors(_validate("custom", _custom(env_key=FAKE_OPENAI_KEY)))
    assert "never stores secrets" in errors["env_key"]


def test_env_http_headers_values_must_be_variable_names():
    errors = _errors(_validate("custom", _custom(env_http_headers={"X-Api-Key": "not a name"})))
    assert errors["env_http_headers.X-Api-Key"].startswith("must be an environment variable name")


def test_literal_api_key_in_header_is_refused_with_field_path():
    errors = _errors(_validate("custom", _custom(http_headers={"X-Api-Key": "abc123"})))
    assert list(errors) == ["http_headers.X-Api-Key"]
    assert "env_http_headers" in errors["http_headers.X-Api-Key"]


@pytest.mark.parametrize(
    "header",
    [
        "Authorization",
        "Proxy-Authorization",
        "api-key",
        "X-Api-Key",
        "x-goog-api-key",
        "X-Auth-Token",
        "X-Client-Secret",
        "Ocp-Apim-Subscription-Key",
    ],
)
def test_credential_named_headers_never_take_a_literal_value(header):
    errors = _errors(_validate("custom", _custom(http_headers={header: "value"})))
    assert "must not be literal" in errors[f"http_headers.{header}"]


def test_credential_named_headers_are_fine_from_the_environment():
    settings = _custom(env_key=None, env_http_headers={"X-Api-Key": "GW_API_KEY"})
    assert _validate("custom", settings) == []


def test_secret_looking_value_in_an_innocent_header_is_refused():
    errors = _errors(_validate("custom", _custom(http_headers={"X-Team": FAKE_OPENAI_KEY})))
    assert "never stores secrets" in errors["http_headers.X-Team"]


def test_credential_query_parameter_is_refused():
    errors = _errors(_validate("custom", _custom(query_params={"api-key": "abc"})))
    assert "cannot read a query parameter" in errors["query_params.api-key"]


def test_custom_without_any_credential_is_only_a_warning():
    issues = _validate("custom", _custom(env_key=None, base_url="http://localhost:4000/v1"))
    assert _errors(issues) == {}
    assert "no credential source" in _warnings(issues)["env_key"]


def test_header_set_both_literally_and_from_environment_is_an_error():
    settings = _custom(http_headers={"X-Team": "a"}, env_http_headers={"x-team": "TEAM"})
    assert "env_http_headers.x-team" in _errors(_validate("custom", settings))


STRING_FIELDS = [
    (kind_name, spec.name, spec.type)
    for kind_name, kind in sorted(KINDS.items())
    for spec in kind.fields
    if spec.type in ("str", "str_list")
]


@pytest.mark.parametrize(("kind_name", "field_name", "field_type"), STRING_FIELDS)
def test_every_string_setting_is_checked_for_literal_secrets(
    kind_name, field_name, field_type, valid_endpoints
):
    endpoint = valid_endpoints[kind_name]
    value: Any = FAKE_OPENAI_KEY if field_type == "str" else ["--key", FAKE_OPENAI_KEY]
    settings = _with(endpoint.settings, **{field_name: value})
    path = field_name if field_type == "str" else f"{field_name}[1]"
    issues = _validate(kind_name, settings, endpoint.provider_id)
    assert any(i.path == path and "never stores secrets" in i.message for i in issues)


# --- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://localhost:4000/v1", "http://127.0.0.1:8080", "http://[::1]:4000/v1"]
)
def test_custom_may_use_plain_http_on_loopback(url):
    assert _validate("custom", _custom(base_url=url)) == []


@pytest.mark.parametrize("url", ["http://gw.corp.example/v1", "http://10.0.0.5/v1", "ftp://gw/v1"])
def test_custom_base_url_must_use_https_off_the_machine(url):
    assert _errors(_validate("custom", _custom(base_url=url)))["base_url"].startswith(
        "must use https"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@gw.corp.example/v1",
        "https://gw.corp.example/v1?api-key=abc",
        "https://gw.corp.example/v1?sig=abc",
    ],
)
def test_base_url_carrying_credentials_is_refused(url):
    assert "credentials" in _errors(_validate("custom", _custom(base_url=url)))["base_url"]


@pytest.mark.parametrize("url", ["https://gw.corp.example/v1?x=1", "https://gw.corp.example/#v1"])
def test_base_url_must_not_have_query_or_fragment(url):
    assert "query string" in _errors(_validate("custom", _custom(base_url=url)))["base_url"]


@pytest.mark.parametrize("url", ["gw.corp.example/v1", "https://", "https://gw:99999/v1"])
def test_base_url_must_be_an_absolute_url(url):
    assert "base_url" in _errors(_validate("custom", _custom(base_url=url)))


def test_openai_base_url_must_use_https():
    errors = _errors(_validate("openai", {"auth_method": "api", "base_url": "http://localhost/v1"}))
    assert errors == {"base_url": "must use https"}


def test_azure_resource_url_must_be_on_an_azure_host():
    errors = _errors(_validate("azure", _azure(resource_url="https://acme.example.com/openai/v1")))
    assert errors["resource_url"].startswith("must be an Azure OpenAI endpoint")


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.openai.azure.com",
        "https://acme.openai.azure.com/",
        "https://acme.openai.azure.com/openai/deployments/gpt-5",
    ],
)
def test_azure_resource_url_must_end_in_an_openai_route(url):
    assert (
        "must end in /openai"
        in _errors(_validate("azure", _azure(resource_url=url)))["resource_url"]
    )


def test_azure_classic_route_requires_api_version():
    settings = _azure(resource_url="https://acme.openai.azure.com/openai")
    assert "api_version" in _errors(_validate("azure", settings))


@pytest.mark.parametrize("version", ["2025-04-01-preview", "2024-10-21", "preview"])
def test_azure_accepts_api_versions(version):
    settings = _azure(resource_url="https://acme.openai.azure.com/openai", api_version=version)
    assert _validate("azure", settings) == []


@pytest.mark.parametrize("version", ["v1", "2025/04/01", "latest-preview"])
def test_azure_refuses_malformed_api_versions(version):
    assert "api_version" in _errors(_validate("azure", _azure(api_version=version)))


def test_azure_needs_at_least_one_deployment():
    errors = _errors(_validate("azure", _azure(deployments=[])))
    assert errors["deployments"].startswith("list at least one deployment")


def test_azure_deployment_listed_twice_is_refused():
    errors = _errors(_validate("azure", _azure(deployments=["a", "a"])))
    assert errors == {"deployments": "lists a deployment twice"}


def test_azure_deployment_name_error_points_at_the_item():
    errors = _errors(_validate("azure", _azure(deployments=["ok", "not ok"])))
    assert list(errors) == ["deployments[1]"]


# --- kind specifics ----------------------------------------------------------------------------


def test_bedrock_region_must_be_in_its_catalogue():
    errors = _errors(_validate("amazon-bedrock", {"region": "mars-north-1"}))
    assert errors["region"].startswith("must be one of: us-east-1")


def test_bedrock_refuses_govcloud_with_a_reason():
    errors = _errors(_validate("amazon-bedrock", {"region": "us-gov-west-1"}))
    assert "GovCloud" in errors["region"]


def test_oracle_oci_requires_an_auth_command():
    assert _errors(_validate("oracle-oci", {"region": "us-chicago-1"})) == {
        "auth_command": "is required"
    }


def test_oracle_oci_has_no_env_key_setting(valid_endpoints):
    settings = _with(valid_endpoints["oracle-oci"].settings, env_key="OCI_KEY")
    assert "unknown setting" in _errors(_validate("oracle-oci", settings))["env_key"]


def test_oracle_oci_compartment_ocid_is_not_mistaken_for_a_secret(valid_endpoints):
    assert _validate("oracle-oci", valid_endpoints["oracle-oci"].settings) == []


def test_oracle_oci_malformed_compartment_is_refused(valid_endpoints):
    settings = _with(valid_endpoints["oracle-oci"].settings, compartment_id="my-compartment")
    assert "compartment_id" in _errors(_validate("oracle-oci", settings))


def test_oracle_oci_unknown_well_formed_region_is_a_warning(valid_endpoints):
    settings = _with(valid_endpoints["oracle-oci"].settings, region="ca-toronto-1")
    issues = _validate("oracle-oci", settings)
    assert _errors(issues) == {}
    assert "not in PolicyHub's" in _warnings(issues)["region"]


def test_oracle_oci_malformed_region_is_only_an_error(valid_endpoints):
    settings = _with(valid_endpoints["oracle-oci"].settings, region="Chicago")
    issues = _validate("oracle-oci", settings)
    assert [(i.severity, i.path) for i in issues] == [("error", "region")]


def test_gcp_credential_file_must_be_an_absolute_path(valid_endpoints):
    settings = _with(valid_endpoints["gcp"].settings, credential_file="keys/sa.json")
    assert "absolute path" in _errors(_validate("gcp", settings))["credential_file"]


def test_gcp_accepts_a_windows_credential_path(valid_endpoints):
    settings = _with(valid_endpoints["gcp"].settings, credential_file="C:\\keys\\codex-sa.json")
    assert _validate("gcp", settings) == []


def test_gcp_project_id_must_be_a_google_project_id(valid_endpoints):
    settings = _with(valid_endpoints["gcp"].settings, project_id="Acme Prod")
    assert "project_id" in _errors(_validate("gcp", settings))


def test_gcp_unknown_well_formed_location_is_a_warning(valid_endpoints):
    settings = _with(valid_endpoints["gcp"].settings, location="me-central2")
    issues = _validate("gcp", settings)
    assert _errors(issues) == {}
    assert "location" in _warnings(issues)
