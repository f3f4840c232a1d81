"""Any OpenAI-compatible gateway speaking the Responses API, under an id the admin chooses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from providers.base import CapabilityMatrix, FieldSpec, Issue, ProviderKind, error, warning
from providers.fields import (
    AUTH_FIELDS,
    ENV_KEY,
    auth_option_issues,
    check_settings,
    credential_entries,
    header_name,
    http_url_loopback_ok,
    one_credential_issues,
    query_param_name,
)

# Rendered in this order after the scalars; the `auth` sub-table always comes last.
_MAP_FIELDS = ("query_params", "http_headers", "env_http_headers")


@dataclass(frozen=True)
class CustomKind(ProviderKind):
    """An OpenAI-compatible gateway; its model catalogue is open."""

    def validate(self, settings: Mapping[str, Any], provider_id: str) -> list[Issue]:
        return check_settings(
            self,
            settings,
            provider_id,
            one_credential_issues,
            auth_option_issues,
            _missing_credential_issues,
            _duplicate_header_issues,
        )

    def provider_table(
        self, settings: Mapping[str, Any], provider_id: str
    ) -> dict[str, Any] | None:
        credentials = credential_entries(settings)
        table: dict[str, Any] = {"name": settings["name"], "base_url": settings["base_url"]}
        if "env_key" in credentials:
            table["env_key"] = credentials["env_key"]
        # Codex 0.169.0 speaks only the Responses API; "chat" is rejected.
        table["wire_api"] = "responses"
        for name in _MAP_FIELDS:
            if settings.get(name):
                table[name] = dict(settings[name])
        if "auth" in credentials:
            table["auth"] = credentials["auth"]
        return table

    def model_catalogue(self, settings: Mapping[str, Any]) -> tuple[str, ...] | None:
        return None

    def check_model(self, settings: Mapping[str, Any], model: str) -> Issue | None:
        return None


def _missing_credential_issues(settings: Mapping[str, Any]) -> list[Issue]:
    # A gateway may authenticate by header (env_http_headers) or not at all (a loopback proxy).
    if any(settings.get(name) for name in ("env_key", "auth_command", "env_http_headers")):
        return []
    return [
        warning(
            "env_key",
            "no credential source: Codex will call this gateway without credentials "
            "(set env_key, auth_command or env_http_headers if it needs them)",
        )
    ]


def _duplicate_header_issues(settings: Mapping[str, Any]) -> list[Issue]:
    literal = settings.get("http_headers")
    from_env = settings.get("env_http_headers")
    if not isinstance(literal, Mapping) or not isinstance(from_env, Mapping):
        return []
    literal_names = {str(name).lower() for name in literal}
    return [
        error(f"env_http_headers.{name}", "is also set in http_headers; keep one of the two")
        for name in from_env
        if str(name).lower() in literal_names
    ]


CUSTOM = CustomKind(
    kind="custom",
    label="OpenAI-compatible gateway",
    fields=(
        FieldSpec(
            name="name",
            type="str",
            label="Display name",
            required=True,
            help="Shown by Codex as the provider's name.",
        ),
        FieldSpec(
            name="base_url",
            type="str",
            label="Base URL",
            required=True,
            check=http_url_loopback_ok,
            help="Codex appends /responses; https, or plain http for a gateway on localhost.",
        ),
        ENV_KEY,
        *AUTH_FIELDS,
        FieldSpec(
            name="http_headers",
            type="str_map",
            label="HTTP headers",
            key_check=header_name,
            help="Fixed, non-secret headers sent with every request.",
        ),
        FieldSpec(
            name="env_http_headers",
            type="env_map",
            label="Headers from environment variables",
            key_check=header_name,
            credential="env",
            help="Header name to the environment variable holding its value (e.g. an API key).",
        ),
        FieldSpec(
            name="query_params",
            type="str_map",
            label="Query parameters",
            key_check=query_param_name,
            help="Fixed, non-secret query parameters added to every request.",
        ),
    ),
    capabilities=CapabilityMatrix(
        as_of=date(2026, 11, 1),
        web_search=False,
        image_generation=False,
        priority_tier=False,
        codex_cloud=False,
        data_residency=False,
        source="unknown gateway: PolicyHub assumes nothing; override per endpoint",
    ),
)
