"""Direct OpenAI: Codex's built-in `openai` provider, steered by top-level config keys only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from providers.base import CapabilityMatrix, FieldSpec, Issue, ProviderKind
from providers.fields import catalogue_warning, check_settings, https_url, regional_models

LOGIN_METHODS = ("chatgpt", "api")


@dataclass(frozen=True)
class OpenAIKind(ProviderKind):
    """The built-in `openai` provider; Codex refuses any `[model_providers.openai]` table."""

    def validate(self, settings: Mapping[str, Any], provider_id: str) -> list[Issue]:
        return check_settings(self, settings, provider_id)

    def provider_table(
        self, settings: Mapping[str, Any], provider_id: str
    ) -> dict[str, Any] | None:
        # `openai` is reserved: redefining it is fatal, so its settings go to top-level keys.
        return None

    def top_level_config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {"forced_login_method": settings["auth_method"]}
        if settings.get("base_url") is not None:
            config["openai_base_url"] = settings["base_url"]
        return config

    def model_catalogue(self, settings: Mapping[str, Any]) -> tuple[str, ...] | None:
        return regional_models(self.models, None)

    def check_model(self, settings: Mapping[str, Any], model: str) -> Issue | None:
        return catalogue_warning(self, model, self.model_catalogue(settings), "for direct OpenAI")


OPENAI = OpenAIKind(
    kind="openai",
    label="OpenAI (direct)",
    builtin_id="openai",
    fields=(
        FieldSpec(
            name="auth_method",
            type="str",
            label="Sign-in method",
            required=True,
            choices=LOGIN_METHODS,
            help="`chatgpt`: developers sign in with ChatGPT; `api`: an OpenAI API key.",
        ),
        FieldSpec(
            name="base_url",
            type="str",
            label="Base URL",
            check=https_url,
            help="Optional `openai_base_url`, e.g. a corporate egress proxy in front of OpenAI.",
        ),
    ),
    capabilities=CapabilityMatrix(
        as_of=date(2026, 11, 1),
        web_search=True,
        image_generation=True,
        priority_tier=True,
        codex_cloud=True,
        data_residency=True,
        source="OpenAI Codex documentation and pricing pages",
    ),
    models={
        "*": (
            "gpt-5.5",
            "gpt-5.5-mini",
            "gpt-5.5-codex",
            "gpt-5.1-codex-max",
            "gpt-5.1-codex",
            "gpt-5",
        ),
    },
)
