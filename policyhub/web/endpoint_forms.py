"""The form of a provider endpoint, built from its kind's field definitions (`providers`): each
kind shows exactly its own fields, with their labels, help and defaults, and reads them back
as the endpoint's entry in the policy document (`[providers.<name>]`).

Lists are typed one item a line, maps one `key=value` a line; credentials are only ever names
of environment variables or token commands, as the kinds' own help says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms

from policyhub.policies.domain import Endpoint, Json
from policyhub.validators import plain_text
from providers import KINDS, ProviderKind
from providers.base import CAPABILITIES, FieldSpec

# The form's own fields, beside the kind's settings.
NAME, PROVIDER_ID, REASON = "name", "provider_id", "reason"
# Capability overrides are fields `capability_<name>`: "" keeps the kind's value.
CAPABILITY_PREFIX = "capability_"
CAPABILITY_LABELS = {
    "web_search": "Web search",
    "image_generation": "Image generation",
    "priority_tier": "Priority tier",
    "codex_cloud": "Codex cloud",
    "data_residency": "Data residency",
}
CREDENTIAL_NOTES = {
    "env": "The NAME of an environment variable on developer machines, never the secret itself.",
    "command": "A program that prints a token; PolicyHub never stores the token.",
}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class ListField(forms.CharField):
    """A list of strings, typed one a line."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(map(str, value)) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        return _lines(super().to_python(value) or "")


class MapField(forms.CharField):
    """A map of strings, typed one `key=value` a line."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return "\n".join(f"{key}={item}" for key, item in value.items())
        return value

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        found: dict[str, str] = {}
        for line in _lines(super().to_python(value) or ""):
            key, sep, item = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"{line!r} is not key=value")
            found[key.strip()] = item.strip()
        return found


def _setting_field(spec: FieldSpec) -> forms.Field:
    help_text = " ".join(
        part
        for part in (
            spec.help,
            CREDENTIAL_NOTES.get(spec.credential, ""),
            f"Default: {spec.default}." if spec.default is not None else "",
        )
        if part
    )
    common: dict[str, Any] = {
        "label": spec.label,
        "required": spec.required,
        "help_text": help_text,
    }
    if spec.choices:
        blank = [] if spec.required else [("", "(not set)")]
        return forms.ChoiceField(choices=[*blank, *((c, c) for c in spec.choices)], **common)
    if spec.type == "int":
        return forms.IntegerField(**common)
    if spec.type == "bool":
        choices = [("", "(not set)"), ("true", "yes"), ("false", "no")]
        return forms.TypedChoiceField(
            choices=choices, coerce=lambda v: v == "true", empty_value=None, **common
        )
    if spec.type == "str_list":
        return ListField(**common)
    if spec.type in ("str_map", "env_map"):
        return MapField(**common)
    return forms.CharField(max_length=2000, validators=[plain_text], **common)


def _capability_field(kind: ProviderKind, name: str) -> forms.Field:
    default = "yes" if getattr(kind.capabilities, name) else "no"
    return forms.ChoiceField(
        label=CAPABILITY_LABELS[name],
        required=False,
        choices=[("", f"the kind's default ({default})"), ("yes", "yes"), ("no", "no")],
    )


@dataclass(frozen=True)
class BoundField:
    """One field of the form as a template shows it, with the refusals that name it."""

    field: forms.BoundField
    credential: str
    errors: list[str]


class EndpointForm(forms.Form):
    """An endpoint of one kind: its name (when new), Codex provider id, the kind's settings, the
    capability overrides and the reason kept in the audit trail."""

    def __init__(
        self,
        kind: ProviderKind,
        *args: Any,
        creating: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.kind, self.creating = kind, creating
        if creating:
            self.fields[NAME] = forms.CharField(
                label="Name",
                max_length=63,
                validators=[plain_text],
                help_text="How teams and profiles name it (`model_provider`): lowercase letters, "
                "digits, '-' and '_'.",
            )
        if kind.builtin_id is None:
            self.fields[PROVIDER_ID] = forms.CharField(
                label="Codex provider id",
                max_length=63,
                required=False,
                validators=[plain_text],
                help_text="The `[model_providers.<id>]` table Codex reads"
                + (f"; default {kind.default_provider_id}." if kind.default_provider_id else "."),
            )
        for spec in kind.fields:
            self.fields[spec.name] = _setting_field(spec)
        for name in CAPABILITIES:
            self.fields[CAPABILITY_PREFIX + name] = _capability_field(kind, name)
        self.fields[REASON] = forms.CharField(
            label="Reason",
            required=False,
            max_length=2000,
            validators=[plain_text],
            widget=forms.Textarea(attrs={"rows": 2}),
            help_text="Why (kept in the change set and the audit trail).",
        )

    @property
    def setting_names(self) -> list[str]:
        return [spec.name for spec in self.kind.fields]

    def entry(self) -> Json:
        """The endpoint's entry in the policy document (`[providers.<name>]`), from clean data:
        settings left empty are left out, so the kind's defaults apply."""
        data = self.cleaned_data
        entry: Json = {"kind": self.kind.kind}
        if data.get(PROVIDER_ID):
            entry[PROVIDER_ID] = data[PROVIDER_ID]
        for name in self.setting_names:
            value = data.get(name)
            if value is not None and value not in ("", [], {}):
                entry[name] = value
        capabilities = {
            name: data[CAPABILITY_PREFIX + name] == "yes"
            for name in CAPABILITIES
            if data.get(CAPABILITY_PREFIX + name)
        }
        if capabilities:
            entry["capabilities"] = capabilities
        return entry

    def shown(self, refused: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
        """The fields in the order a template shows them, each with its own errors and the
        service's refusals that name it."""
        refused = refused or {}

        def bound(name: str, credential: str = "") -> BoundField:
            field = self[name]
            return BoundField(field, credential, [*field.errors, *refused.get(name, [])])

        return {
            "head": [bound(n) for n in (NAME, PROVIDER_ID) if n in self.fields],
            "settings": [bound(spec.name, spec.credential) for spec in self.kind.fields],
            "capabilities": [bound(CAPABILITY_PREFIX + n) for n in CAPABILITIES],
            "reason": bound(REASON),
        }


def endpoint_initial(endpoint: Endpoint) -> dict[str, Any]:
    """The form's values for an existing endpoint."""
    initial: dict[str, Any] = {PROVIDER_ID: endpoint.provider_id, **endpoint.settings}
    for name, value in endpoint.capabilities.items():
        initial[CAPABILITY_PREFIX + name] = "yes" if value else "no"
    for name, value in endpoint.settings.items():
        if isinstance(value, bool):
            initial[name] = "true" if value else "false"
    return initial


def kind_of(name: str | None, default: str) -> ProviderKind:
    """The kind a request asks for (`?kind=`), else `default`."""
    return KINDS.get(name or "", KINDS[default])


def capability_rows(kind: ProviderKind, overrides: Mapping[str, bool]) -> list[dict[str, Any]]:
    """The kind's matrix beside one endpoint's overrides: what the endpoint ends up with."""
    rows = []
    for name in CAPABILITIES:
        default = bool(getattr(kind.capabilities, name))
        override = overrides.get(name)
        rows.append(
            {
                "label": CAPABILITY_LABELS[name],
                "default": default,
                "override": override,
                "effective": default if override is None else override,
            }
        )
    return rows
