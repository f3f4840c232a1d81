"""Amazon Bedrock: Codex's built-in `amazon-bedrock` provider, which takes only `aws.*` here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from providers.base import CapabilityMatrix, FieldSpec, Issue, ProviderKind
from providers.fields import catalogue_warning, check_settings, choice_error, regional_models

# Profile names live in ~/.aws/config section headers; keep them to what fits there plainly.
_AWS_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")

# Invented from public announcements, dated by the capability matrix; admins verify per account.
BEDROCK_MODELS: dict[str, tuple[str, ...]] = {
    "us-east-1": (
        "openai.gpt-5.5",
        "openai.gpt-5.5-mini",
        "openai.gpt-oss-120b",
        "openai.gpt-oss-20b",
    ),
    "us-east-2": ("openai.gpt-5.5", "openai.gpt-oss-120b", "openai.gpt-oss-20b"),
    "us-west-2": (
        "openai.gpt-5.5",
        "openai.gpt-5.5-mini",
        "openai.gpt-oss-120b",
        "openai.gpt-oss-20b",
    ),
    "eu-west-1": ("openai.gpt-5.5", "openai.gpt-oss-120b", "openai.gpt-oss-20b"),
    "eu-central-1": ("openai.gpt-oss-120b", "openai.gpt-oss-20b"),
    "eu-north-1": ("openai.gpt-oss-120b",),
    "ap-northeast-1": ("openai.gpt-oss-120b", "openai.gpt-oss-20b"),
    "ap-south-1": ("openai.gpt-oss-120b",),
}
BEDROCK_REGIONS = tuple(BEDROCK_MODELS)


def aws_profile_problem(value: str) -> str | None:
    if _AWS_PROFILE_RE.match(value):
        return None
    return "must be an AWS profile name (letters, digits and _ . @ + -)"


def region_problem(value: str) -> str | None:
    if value.startswith("us-gov-"):
        return "AWS GovCloud regions are not supported by Codex on Bedrock"
    return None if value in BEDROCK_MODELS else choice_error(BEDROCK_REGIONS)


@dataclass(frozen=True)
class AmazonBedrockKind(ProviderKind):
    """The built-in Bedrock provider; anything but `aws.profile`/`aws.region` stays Codex's."""

    def validate(self, settings: Mapping[str, Any], provider_id: str) -> list[Issue]:
        return check_settings(self, settings, provider_id)

    def provider_table(
        self, settings: Mapping[str, Any], provider_id: str
    ) -> dict[str, Any] | None:
        # Codex rejects `name`, `env_key`, `wire_api` and every other field on this built-in id.
        aws: dict[str, Any] = {}
        if settings.get("aws_profile") is not None:
            aws["profile"] = settings["aws_profile"]
        aws["region"] = settings["region"]
        return {"aws": aws}

    def model_catalogue(self, settings: Mapping[str, Any]) -> tuple[str, ...] | None:
        return regional_models(self.models, settings.get("region"))

    def check_model(self, settings: Mapping[str, Any], model: str) -> Issue | None:
        where = f"for {settings.get('region')}"
        return catalogue_warning(self, model, self.model_catalogue(settings), where)


AMAZON_BEDROCK = AmazonBedrockKind(
    kind="amazon-bedrock",
    label="Amazon Bedrock",
    builtin_id="amazon-bedrock",
    fields=(
        FieldSpec(
            name="aws_profile",
            type="str",
            label="AWS profile",
            check=aws_profile_problem,
            help="Profile from the developer's AWS config; leave out to use the default chain.",
        ),
        FieldSpec(
            name="region",
            type="str",
            label="Region",
            required=True,
            choices=BEDROCK_REGIONS,
            check=region_problem,
            help="Models differ by region.",
        ),
    ),
    capabilities=CapabilityMatrix(
        as_of=date(2026, 11, 1),
        web_search=False,
        image_generation=False,
        priority_tier=False,
        codex_cloud=False,
        data_residency=True,
        source="Amazon Bedrock OpenAI model documentation; PolicyHub field notes",
    ),
    models=BEDROCK_MODELS,
)
