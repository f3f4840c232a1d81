"""Google Cloud Vertex AI: Codex's built-in `gcp` provider with project, location and key file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from providers.base import CapabilityMatrix, FieldSpec, Issue, ProviderKind
from providers.fields import (
    catalogue_warning,
    check_settings,
    region_issues,
    regional_models,
)

_PROJECT_ID_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_LOCATION_RE = re.compile(r"^(global|[a-z]+-[a-z]+\d+)$")

# Open-weight models served as Vertex AI MaaS; invented, dated by the capability matrix.
VERTEX_MODELS: dict[str, tuple[str, ...]] = {
    "global": ("openai/gpt-oss-120b-maas", "openai/gpt-oss-20b-maas"),
    "us-central1": ("openai/gpt-oss-120b-maas", "openai/gpt-oss-20b-maas"),
    "us-east5": ("openai/gpt-oss-120b-maas", "openai/gpt-oss-20b-maas"),
    "europe-west4": ("openai/gpt-oss-120b-maas",),
    "asia-southeast1": ("openai/gpt-oss-120b-maas",),
}


def project_id_problem(value: str) -> str | None:
    if _PROJECT_ID_RE.match(value):
        return None
    return "must be a Google Cloud project id (6-30 lowercase letters, digits and -)"


def location_problem(value: str) -> str | None:
    if _LOCATION_RE.match(value):
        return None
    return "must be a Vertex AI location such as us-central1 or global"


def absolute_path_problem(value: str) -> str | None:
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute():
        return None
    return "must be an absolute path to the credential file on developer machines"


@dataclass(frozen=True)
class GcpKind(ProviderKind):
    """The built-in Vertex AI provider; only its project, location and key file are set."""

    def validate(self, settings: Mapping[str, Any], provider_id: str) -> list[Issue]:
        return check_settings(self, settings, provider_id, partial(region_issues, self, "location"))

    def provider_table(
        self, settings: Mapping[str, Any], provider_id: str
    ) -> dict[str, Any] | None:
        # Codex accepts nothing else on `gcp` but base_url, auth and http_headers.
        table = {"project_id": settings["project_id"], "location": settings["location"]}
        if settings.get("credential_file") is not None:
            table["credential_file"] = settings["credential_file"]
        return table

    def model_catalogue(self, settings: Mapping[str, Any]) -> tuple[str, ...] | None:
        return regional_models(self.models, settings.get("location"))

    def check_model(self, settings: Mapping[str, Any], model: str) -> Issue | None:
        where = f"for {settings.get('location')}"
        return catalogue_warning(self, model, self.model_catalogue(settings), where)


GCP = GcpKind(
    kind="gcp",
    label="Google Cloud Vertex AI",
    builtin_id="gcp",
    fields=(
        FieldSpec(
            name="project_id",
            type="str",
            label="Project id",
            required=True,
            check=project_id_problem,
        ),
        FieldSpec(
            name="location",
            type="str",
            label="Location",
            required=True,
            check=location_problem,
            help="Vertex AI location, e.g. us-central1 or global; models differ by location.",
        ),
        FieldSpec(
            name="credential_file",
            type="str",
            label="Credential file",
            check=absolute_path_problem,
            help="Absolute path of a service-account key file on developer machines; "
            "leave out to use application default credentials.",
        ),
    ),
    capabilities=CapabilityMatrix(
        as_of=date(2026, 11, 1),
        web_search=False,
        image_generation=False,
        priority_tier=False,
        codex_cloud=False,
        data_residency=True,
        source="Vertex AI model garden documentation; PolicyHub field notes",
    ),
    models=VERTEX_MODELS,
)
