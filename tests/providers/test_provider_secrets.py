"""The literal-secret detector: what it must refuse, and the ordinary values it must leave alone."""

import pytest

from providers import find_literal_secret
from providers.secrets import is_credential_name, shannon_entropy, url_has_credentials

# Credential-shaped values are assembled at run time so no scanner mistakes this file for a leak.
RANDOM_40 = "Zq8Lr2Tx5Vb9Nc3Mw7Ks1Jd4Hf6Gp0Ya8Xe2Ru5Q"
LITERAL_SECRETS = [
    "sk-" + RANDOM_40,
    "sk-proj-" + RANDOM_40 + "_" + RANDOM_40,
    "sk-svcacct-" + RANDOM_40,
    "AKIA" + "IOSFODNN7EXAMPLE",
    "ASIA" + "Y34FZKBOKMUTVV7A",
    "ghp_" + RANDOM_40[:36],
    "github_pat_" + "11ABCDEFG0" + RANDOM_40,
    "xoxb-" + "123456789012-1234567890123-" + RANDOM_40[:24],
    "AIza" + RANDOM_40[:35],
    "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiJjb2RleCJ9" + ".c2lnbmF0dXJl",
    "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow...",
    "-----BEGIN " + "PRIVATE KEY-----",
    "3f2b8c4d9e1a7f6b5c4d3e2f1a0b9c8d",
    RANDOM_40 * 2 + "AbCd",
    "Bearer " + RANDOM_40,
    "basic " + "dXNlcjpwYXNzd29yZA==",
    RANDOM_40,
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "--api-key=" + "sk-" + RANDOM_40,
    "--client-secret " + RANDOM_40,
    "https://user:hunter2@gw.corp.example/v1",
    "https://gw.corp.example/v1?api-key=abc",
    "https://acct.blob.core.windows.net/c?sv=2024-01-01&sig=abcdef",
]

ORDINARY_VALUES = [
    "https://acme-eu.openai.azure.com/openai/v1",
    "https://inference.generativeai.us-chicago-1.oci.oraclecloud.com/openai/v1",
    "https://cognitiveservices.azure.com",
    "https://gw.corp.example/v1?api-version=2025-04-01-preview",
    "AZURE_OPENAI_API_KEY",
    "CORP_LLM_GATEWAY_SECRET_ACCESS_TOKEN_FOR_CODEX_CLI_V2",
    "/usr/local/bin/oci-genai-token",
    "/Users/alex/Library/Application Support/Codex/TokenHelper2026/bin/helper64",
    "C:\\Program Files\\Corp\\TokenHelper2026\\token-helper-x64.exe",
    "openai.gpt-oss-120b",
    "openai/gpt-oss-120b-maas",
    "gpt-5-codex-prod",
    "ocid1.compartment.oc1..aaaaaaaa4k3xq2lzr7c5nq4vd2h3tnsm6n7qzfzbp6j4kmbx5z2hcwq3yk5a",
    "ocid1.tenancy.oc1..aaaaaaaaba3pv6wkcr4jqae5f15p2b2m2yt2j6rx32uzr4h25vqstifsfdsq",
    "123e4567-e89b-12d3-a456-426614174000",
    "2025-04-01-preview",
    "preview",
    "az account get-access-token --resource https://cognitiveservices.azure.com -o tsv",
    "--query",
    "accessToken",
    "Bearer ${CORP_TOKEN}",
    "Corp Gateway (EU, production)",
    "application/json",
    "ThisIsAVeryLongCamelCaseSettingName123",
    "arn:aws:iam::123456789012:role/CodexBedrockInvokeRole2026",
    "platform-engineering-team-eu-west-1-codex-deployment",
    "codex-team",
    "us-chicago-1",
    "acme-ml-prod",
    "sk-learn",
    "task-runner-for-codex-long-name",
    "x" * 64,
    "b452ca20f838a8855a88a41050ee4a694033fff4ea3ecdad5633e6e0e8d13f2b",
    "1288313772f2e0defbd9c0e5b7b29fbb41111079",
]


@pytest.mark.parametrize("value", LITERAL_SECRETS)
def test_literal_secret_is_detected(value):
    assert find_literal_secret(value)


@pytest.mark.parametrize("value", ORDINARY_VALUES)
def test_ordinary_setting_is_not_mistaken_for_a_secret(value):
    assert find_literal_secret(value) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@gw.example/v1",
        "https://token@gw.example/v1",
        "https://gw.example/v1?api-key=abc",
        "https://gw.example/v1?access_token=abc",
        "https://gw.example/v1?X-Amz-Signature=abc",
        "https://gw.example/v1?sig=abc&sv=2024",
    ],
)
def test_url_with_credentials_is_detected(url):
    assert url_has_credentials(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://gw.example/v1",
        "https://gw.example/v1?api-version=2025-04-01-preview",
        "https://gw.example/v1?tenant=acme&region=eu",
        "https://gw.example/v1?api-key=",
        "not a url",
        "https://[::1",
    ],
)
def test_url_without_credentials_is_not_flagged(url):
    assert not url_has_credentials(url)


@pytest.mark.parametrize(
    ("name", "credential"),
    [
        ("Authorization", True),
        ("X-Api-Key", True),
        ("api_key", True),
        ("X-Auth-Token", True),
        ("X-Client-Secret", True),
        ("Cookie", True),
        ("X-Team", False),
        ("X-Cost-Center", False),
        ("opc-compartment-id", False),
        ("api-version", False),
        ("Keyboard-Layout", False),
    ],
)
def test_credential_names_are_recognised(name, credential):
    assert is_credential_name(name) is credential


def test_shannon_entropy_grows_with_variety():
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0
