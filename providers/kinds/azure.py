"""Azure OpenAI and Azure AI Foundry: a custom provider id pointed at the resource's endpoint."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from providers.base import CapabilityMatrix, FieldSpec, Issue, ProviderKind, error
from providers.fields import (
    AUTH_FIELDS,
    ENV_KEY,
    auth_option_issues,
    check_settings,
    credential_entries,
    https_url,
    one_credential_required,
)

AZURE_HOST_SUFFIXES = (
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
)
# The classic route needs `api-version`; the v1 route takes it optionally (e.g. "preview").
CLASSIC_PATH = "/openai"
V1_PATH = "/openai/v1"
_API_VERSION_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}(-preview)?|preview|latest)$")
_DEPLOYMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def resource_url_problem(value: str) -> str | None:
    problem = https_url(value)
    if problem:
        return problem
    host = urlsplit(value).hostname or ""
    if not host.endswith(AZURE_HOST_SUFFIXES):
        return "must be an Azure OpenAI endpoint on " + ", ".join(AZURE_HOST_SUFFIXES)
    if _resource_path(value) not in (CLASSIC_PATH, V1_PATH):
        # Codex posts to `<base_url>/responses`; Azure serves it only under these two paths.
        return f"must end in {CLASSIC_PATH} or {V1_PATH}, e.g. https://my-res.openai.azure.com/openai/v1"
    return None


def api_version_problem(value: str) -> str | None:
    if _API_VERSION_RE.match(value):
        return None
    return "must look like 2025-04-01-preview, 2025-04-01 or preview"


def deployment_name_problem(value: str) -> str | None:
    if _DEPLOYMENT_RE.match(value):
        return None
    return "must be an Azure deployment name (letters, digits, `.`, `_`, `-`; at most 64)"


def deployments_problem(value: list[str]) -> str | None:
    if not value:
        return "list at least one deployment: on Azure the model is the deployment name"
    if len(set(value)) != len(value):
        return "lists a deployment twice"
    return None


def _resource_path(url: str) -> str:
    return urlsplit(url).path.rstrip("/")


def _api_version_issues(settings: Mapping[str, Any]) -> list[Issue]:
    url = settings.get("resource_url")
    if not isinstance(url, str) or resource_url_problem(url) is not None:
        return []
    if _resource_path(url) == CLASSIC_PATH and settings.get("api_version") is None:
        return [
            error(
                "api_version",
                f"is required with the {CLASSIC_PATH} route (or use {V1_PATH} without it)",
            )
        ]
    return []


@dataclass(frozen=True)
class AzureKind(ProviderKind):
    """Azure OpenAI / Foundry; the deployments are the model catalogue."""

    def validate(self, settings: Mapping[str, Any], provider_id: str) -> list[Issue]:
        return check_settings(
            self,
            settings,
            provider_id,
            one_credential_required,
            auth_option_issues,
            _api_version_issues,
        )

    def provider_table(
        self, settings: Mapping[str, Any], provider_id: str
    ) -> dict[str, Any] | None:
        credentials = credential_entries(settings)
        table: dict[str, Any] = {
            "name": "Azure OpenAI",
            "base_url": settings["resource_url"].rstrip("/"),
        }
        if "env_key" in credentials:
            table["env_key"] = credentials["env_key"]
        table["wire_api"] = "responses"
        if settings.get("api_version") is not None:
            table["query_params"] = {"api-version": settings["api_version"]}
        if "auth" in credentials:
            table["auth"] = credentials["auth"]
        return table

    def model_catalogue(self, settings: Mapping[str, Any]) -> tuple[str, ...] | None:
        deployments = settings.get("deployments")
        return tuple(deployments) if deployments else None

    def check_model(self, settings: Mapping[str, Any], model: str) -> Issue | None:
        deployments = self.model_catalogue(settings)
        if deployments is None or model in deployments:
            return None
        return error(
            "model",
            f"on Azure the model must be a deployment name; `{model}` is not one. "
            f"Deployments of this endpoint: {', '.join(deployments)}",
        )


AZURE = AzureKind(
    kind="azure",
    label="Azure OpenAI",
    default_provider_id="azure",
    fields=(
        FieldSpec(
            name="resource_url",
            type="str",
            label="Resource URL",
            required=True,
            check=resource_url_problem,
            help="e.g. https://my-resource.openai.azure.com/openai/v1",
        ),
        FieldSpec(
            name="api_version",
            type="str",
            label="API version",
            check=api_version_problem,
            help="Sent as the `api-version` query parameter; required with the /openai route.",
        ),
        ENV_KEY,
        *AUTH_FIELDS,
        FieldSpec(
            name="deployments",
            type="str_list",
            label="Deployments",
            required=True,
            check=deployments_problem,
            item_check=deployment_name_problem,
            help="Deployment names; Codex's `model` must be one of them.",
        ),
    ),
    capabilities=CapabilityMatrix(
        as_of=date(2026, 11, 1),
        web_search=False,
        image_generation=False,
        priority_tier=False,
        codex_cloud=False,
        data_residency=True,
        source="Azure OpenAI Responses API documentation; PolicyHub field notes",
    ),
)
