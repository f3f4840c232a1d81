"""The catalogue of model-provider kinds and how each renders into Codex's files."""

from providers.base import CapabilityMatrix, Issue, ProviderKind
from providers.catalogue import KINDS, get_kind
from providers.secrets import find_literal_secret

__all__ = ["KINDS", "CapabilityMatrix", "Issue", "ProviderKind", "find_literal_secret", "get_kind"]
