"""Every provider kind PolicyHub knows, by its kind string."""

from __future__ import annotations

from providers.base import ProviderKind
from providers.kinds.amazon_bedrock import AMAZON_BEDROCK
from providers.kinds.azure import AZURE
from providers.kinds.custom import CUSTOM
from providers.kinds.gcp import GCP
from providers.kinds.openai import OPENAI
from providers.kinds.oracle_oci import ORACLE_OCI

KINDS: dict[str, ProviderKind] = {
    kind.kind: kind for kind in (OPENAI, AZURE, AMAZON_BEDROCK, ORACLE_OCI, GCP, CUSTOM)
}


def get_kind(kind: str) -> ProviderKind:
    """The registered kind called `kind`; KeyError naming the known kinds otherwise."""
    try:
        return KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise KeyError(f"unknown provider kind {kind!r}; known kinds: {known}") from None
