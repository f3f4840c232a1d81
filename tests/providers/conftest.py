"""One valid endpoint of every provider kind, shared by the provider tests."""

from dataclasses import dataclass
from typing import Any

import pytest

AZ_TOKEN_ARGS = [
    "account",
    "get-access-token",
    "--resource",
    "https://cognitiveservices.azure.com",
    "--query",
    "accessToken",
    "-o",
    "tsv",
]
COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaa4k3xq2lzr7c5nq4vd2h3tnsm6n7qzfzbp6j4kmbx5z2hcwq3yk5a"


@dataclass(frozen=True)
class Endpoint:
    """A provider id, its settings and a model that endpoint serves."""

    provider_id: str
    settings: dict[str, Any]
    model: str


VALID_ENDPOINTS = {
    "openai": Endpoint("openai", {"auth_method": "chatgpt"}, "gpt-5.5"),
    "azure": Endpoint(
        "azure",
        {
            "resource_url": "https://acme-eu.openai.azure.com/openai/v1",
            "auth_command": "az",
            "auth_args": AZ_TOKEN_ARGS,
            "auth_timeout_ms": 10000,
            "deployments": ["gpt-5-codex-prod", "gpt-5-mini"],
        },
        "gpt-5-codex-prod",
    ),
    "amazon-bedrock": Endpoint(
        "amazon-bedrock", {"aws_profile": "codex-team", "region": "us-east-1"}, "openai.gpt-5.5"
    ),
    "oracle-oci": Endpoint(
        "oracle-oci",
        {
            "region": "us-chicago-1",
            "auth_command": "/usr/local/bin/oci-genai-token",
            "auth_args": ["--profile", "DEFAULT"],
            "compartment_id": COMPARTMENT,
        },
        "openai.gpt-oss-120b",
    ),
    "gcp": Endpoint(
        "gcp",
        {
            "project_id": "acme-ml-prod",
            "location": "us-central1",
            "credential_file": "/etc/gcloud/codex-sa.json",
        },
        "openai/gpt-oss-120b-maas",
    ),
    "custom": Endpoint(
        "corp-gateway",
        {
            "name": "Corp Gateway",
            "base_url": "https://llm-gateway.corp.example/v1",
            "env_key": "CORP_LLM_KEY",
            "http_headers": {"X-Team": "platform"},
            "env_http_headers": {"X-Cost-Center": "CORP_COST_CENTER"},
            "query_params": {"tenant": "acme"},
        },
        "corp-model",
    ),
}


@pytest.fixture
def valid_endpoints() -> dict[str, Endpoint]:
    return VALID_ENDPOINTS
