"""Oracle OCI Generative AI: its OpenAI-compatible endpoint, authorised by a token command."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from functools import partial
from typing import Any

from providers.base import CapabilityMatrix, FieldSpec, Issue, ProviderKind
from providers.fields import (
    AUTH_ARGS,
    AUTH_COMMAND,
    AUTH_REFRESH_INTERVAL_MS,
    AUTH_TIMEOUT_MS,
    auth_option_issues,
    auth_table,
    catalogue_warning,
    check_settings,
    region_issues,
    regional_models,
)

# Rendered when the admin sets none: OCI token helpers sign a request first and need a moment.
DEFAULT_AUTH_TIMEOUT_MS = 5000
_REGION_RE = re.compile(r"^[a-z]{2,3}-[a-z]+-\d+$")
# An OCID names a compartment; it is an identifier, not a credential.
_COMPARTMENT_OCID_RE = re.compile(
    r"^ocid1\.(compartment|tenancy)\.oc\d+\.[a-z0-9-]*\.[a-z0-9]{20,}$"
)

# Invented from public announcements, dated by the capability matrix; admins verify per tenancy.
OCI_MODELS: dict[str, tuple[str, ...]] = {
    "us-chicago-1": (
        "openai.gpt-5",
        "openai.gpt-5-mini",
        "openai.gpt-oss-120b",
        "openai.gpt-oss-20b",
    ),
    "us-ashburn-1": ("openai.gpt-5", "openai.gpt-oss-120b", "openai.gpt-oss-20b"),
    "us-phoenix-1": ("openai.gpt-oss-120b", "openai.gpt-oss-20b"),
    "eu-frankfurt-1": ("openai.gpt-5", "openai.gpt-oss-120b", "openai.gpt-oss-20b"),
    "uk-london-1": ("openai.gpt-oss-120b", "openai.gpt-oss-20b"),
    "ap-osaka-1": ("openai.gpt-oss-120b",),
    "ap-hyderabad-1": ("openai.gpt-oss-120b",),
    "sa-saopaulo-1": ("openai.gpt-oss-120b",),
}


def region_problem(value: str) -> str | None:
    return None if _REGION_RE.match(value) else "must be an OCI region id such as us-chicago-1"


def compartment_problem(value: str) -> str | None:
    if _COMPARTMENT_OCID_RE.match(value):
        return None
    return "must be a compartment (or tenancy) OCID such as ocid1.compartment.oc1..aaaa..."


def endpoint_url(region: str) -> str:
    return f"https://inference.generativeai.{region}.oci.oraclecloud.com/openai/v1"


@dataclass(frozen=True)
class OracleOciKind(ProviderKind):
    """OCI Generative AI; the region picks both the endpoint and the models."""

    def validate(self, settings: Mapping[str, Any], provider_id: str) -> list[Issue]:
        return check_settings(
            self, settings, provider_id, auth_option_issues, partial(region_issues, self, "region")
        )

    def provider_table(
        self, settings: Mapping[str, Any], provider_id: str
    ) -> dict[str, Any] | None:
        table: dict[str, Any] = {
            "name": "Oracle OCI Generative AI",
            "base_url": endpoint_url(settings["region"]),
            "wire_api": "responses",
        }
        if settings.get("compartment_id") is not None:
            table["http_headers"] = {"opc-compartment-id": settings["compartment_id"]}
        table["auth"] = auth_table(settings, default_timeout_ms=DEFAULT_AUTH_TIMEOUT_MS)
        return table

    def model_catalogue(self, settings: Mapping[str, Any]) -> tuple[str, ...] | None:
        return regional_models(self.models, settings.get("region"))

    def check_model(self, settings: Mapping[str, Any], model: str) -> Issue | None:
        where = f"for {settings.get('region')}"
        return catalogue_warning(self, model, self.model_catalogue(settings), where)


ORACLE_OCI = OracleOciKind(
    kind="oracle-oci",
    label="Oracle OCI Generative AI",
    default_provider_id="oracle-oci",
    fields=(
        FieldSpec(
            name="region",
            type="str",
            label="Region",
            required=True,
            check=region_problem,
            help="OCI region id, e.g. us-chicago-1; it selects the inference endpoint.",
        ),
        replace(
            AUTH_COMMAND,
            required=True,
            help="Token helper that prints an OCI Generative AI bearer token.",
        ),
        AUTH_ARGS,
        replace(AUTH_TIMEOUT_MS, default=DEFAULT_AUTH_TIMEOUT_MS),
        AUTH_REFRESH_INTERVAL_MS,
        FieldSpec(
            name="compartment_id",
            type="str",
            label="Compartment OCID",
            check=compartment_problem,
            help="Sent as the `opc-compartment-id` header; an identifier, not a secret.",
        ),
    ),
    capabilities=CapabilityMatrix(
        as_of=date(2026, 11, 1),
        web_search=False,
        image_generation=False,
        priority_tier=False,
        codex_cloud=False,
        data_residency=True,
        source="OCI Generative AI documentation; PolicyHub field notes",
    ),
    models=OCI_MODELS,
)
