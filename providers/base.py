"""The shapes every provider kind shares: fields, issues, capabilities and the kind itself.

Plain Python on purpose: the catalogue is read by the Django apps, the renderer and the tests alike,
and must be testable without a database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Literal

Severity = Literal["error", "warning"]

# Codex reads `[model_providers.<id>]` tables; ids are TOML keys we also use in file names and URLs.
PROVIDER_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

# Built into Codex and never redefinable (docs/codex.md, "config.toml").
RESERVED_PROVIDER_IDS = frozenset({"openai", "ollama", "lmstudio"})
# Built in, but accept a restricted partial override (docs/codex.md, "config.toml").
BUILTIN_OVERRIDABLE_PROVIDER_IDS = frozenset({"amazon-bedrock", "amazon-bedrock-runtime", "gcp"})
BUILTIN_PROVIDER_IDS = RESERVED_PROVIDER_IDS | BUILTIN_OVERRIDABLE_PROVIDER_IDS


@dataclass(frozen=True)
class Issue:
    """One validation finding: where it is, how bad, and a sentence a human understands."""

    severity: Severity
    path: str
    message: str
    node: str = ""

    def at(self, prefix: str = "", node: str = "") -> Issue:
        """The same finding, re-anchored under `prefix` and attributed to `node`."""
        path = f"{prefix}.{self.path}" if prefix and self.path else (prefix or self.path)
        return Issue(self.severity, path, self.message, node or self.node)

    def __str__(self) -> str:
        where = f"{self.node}: " if self.node else ""
        return f"{self.severity}: {where}{self.path}: {self.message}"


def error(path: str, message: str) -> Issue:
    return Issue("error", path, message)


def warning(path: str, message: str) -> Issue:
    return Issue("warning", path, message)


FieldType = Literal["str", "int", "bool", "str_list", "str_map", "env_map"]


@dataclass(frozen=True)
class FieldSpec:
    """One setting an admin fills in for an endpoint of a kind."""

    name: str
    type: FieldType
    label: str
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    # Returns an error message for a value of the right type, or None.
    check: Callable[[Any], str | None] | None = None
    # "env": the value is an environment variable NAME; "command": a token command. Never a secret.
    credential: Literal["env", "command", ""] = ""
    # Like `check`, for each list item or map value, so a finding points at `name[i]` / `name.key`.
    item_check: Callable[[str], str | None] | None = None
    # Like `check`, for each map key (header names, query parameter names).
    key_check: Callable[[str], str | None] | None = None
    # What Codex (or the renderer) uses when the admin leaves the field out; shown in the UI.
    default: Any = None

    def describe(self) -> dict[str, Any]:
        """The field as plain data for forms and the API."""
        return {
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "required": self.required,
            "help": self.help,
            "choices": list(self.choices),
            "credential": self.credential,
            "default": self.default,
        }


CAPABILITIES = ("web_search", "image_generation", "priority_tier", "codex_cloud", "data_residency")


@dataclass(frozen=True)
class CapabilityMatrix:
    """What a provider kind supports, as of a date; endpoints may override single entries."""

    as_of: date
    web_search: bool
    image_generation: bool
    priority_tier: bool
    codex_cloud: bool
    data_residency: bool
    source: str = ""

    def with_overrides(self, overrides: Mapping[str, bool]) -> CapabilityMatrix:
        """The matrix with an endpoint's overrides applied; see `capability_override_issues`."""
        # Strict on purpose: `bool("false")` is True, and a misspelt name would be silently ignored.
        issues = capability_override_issues(overrides)
        if issues:
            raise ValueError("; ".join(f"{i.path}: {i.message}" for i in issues))
        values: dict[str, Any] = {**asdict(self), **overrides}
        return CapabilityMatrix(**values)

    def as_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), **{c: getattr(self, c) for c in CAPABILITIES}}


def capability_override_issues(overrides: Mapping[str, Any]) -> list[Issue]:
    """Errors for override entries that name no capability or are not booleans."""
    issues = []
    for name, value in overrides.items():
        if name not in CAPABILITIES:
            issues.append(error(name, f"unknown capability; known: {', '.join(CAPABILITIES)}"))
        elif not isinstance(value, bool):
            issues.append(error(name, "must be true or false"))
    return issues


@dataclass(frozen=True)
class ProviderKind:
    """A kind of model-provider endpoint (openai, azure, ...) and everything PolicyHub knows of it.

    Subclasses (one per kind, in `providers/kinds/`) implement `provider_table` and may refine the
    hooks below; the catalogue in `providers/catalogue.py` registers one instance of each.
    """

    kind: str
    label: str
    fields: tuple[FieldSpec, ...]
    capabilities: CapabilityMatrix
    # Model ids per region; "*" applies to every region. Empty: the catalogue is open (custom).
    models: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Fixed Codex provider id for built-in providers; None means the admin chooses one.
    builtin_id: str | None = None
    default_provider_id: str = ""

    # --- hooks -----------------------------------------------------------------------------------

    def validate(self, settings: Mapping[str, Any], provider_id: str) -> list[Issue]:
        """Field types, required fields, choices, checks, credential rules, id rules."""
        raise NotImplementedError

    def provider_table(
        self, settings: Mapping[str, Any], provider_id: str
    ) -> dict[str, Any] | None:
        """The `[model_providers.<provider_id>]` table exactly as Codex accepts it.

        None when the kind needs no table (the built-in `openai` provider).
        """
        raise NotImplementedError

    def top_level_config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Top-level `config.toml` keys this endpoint needs when it is the default provider."""
        return {}

    def model_catalogue(self, settings: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The models this endpoint serves (for its region), or None when unknown/open."""
        raise NotImplementedError

    def check_model(self, settings: Mapping[str, Any], model: str) -> Issue | None:
        """An issue (path "model") when `model` is unlikely or impossible on this endpoint."""
        raise NotImplementedError

    # --- shared behaviour ------------------------------------------------------------------------

    def field_spec(self, name: str) -> FieldSpec:
        """The field called `name`; KeyError when the kind has none."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"provider kind {self.kind!r} has no field {name!r}")

    def codex_provider_id(self, requested: str = "") -> str:
        """The Codex provider id an endpoint of this kind uses: fixed for built-ins."""
        return self.builtin_id or requested or self.default_provider_id

    def effective_capabilities(self, overrides: Mapping[str, bool]) -> CapabilityMatrix:
        """The kind's matrix with one endpoint's overrides applied."""
        return self.capabilities.with_overrides(overrides)

    def describe(self) -> dict[str, Any]:
        """The kind as plain JSON-ready data for the UI and the API."""
        return {
            "kind": self.kind,
            "label": self.label,
            "builtin_id": self.builtin_id,
            "default_provider_id": self.default_provider_id or self.builtin_id or "",
            "fields": [spec.describe() for spec in self.fields],
            "capabilities": {**self.capabilities.as_dict(), "source": self.capabilities.source},
            "models": {region: list(ids) for region, ids in self.models.items()},
        }
