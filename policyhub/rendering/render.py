"""Render a team's effective policy into the exact files Codex reads.

A real TOML writer (tomlkit) builds every file, keys come in a canonical order (top-level keys
before tables, so nothing lands in the wrong table), and every file is parsed back and compared
with what was meant: a value can never add a key. Same policy -> same bytes -> same hash.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policyhub.errors import ApplicationError
from policyhub.policies import schema
from policyhub.policies.domain import Json, OrgPolicy
from policyhub.policies.tomlio import RenderError, canonical, toml_text
from policyhub.policies.validation import TeamValidation, validate_team
from policyhub.policies.window import (
    ALLOWLIST_VALUES,
    ENUM_CONFIG_KEYS,
    managed_pins,
    team_segments,
)
from providers import KINDS
from providers.base import Issue
from providers.codex_files import CONFIG, MANAGED_CONFIG, REQUIREMENTS, profile_file
from providers.codex_versions import (
    NEWEST_MEASURED,
    CodexCapabilities,
    Span,
    Version,
    capabilities,
    in_spans,
    parse_version,
    version_segment,
    version_text,
)

REVISION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class PolicyInvalid(ApplicationError):
    """The team's policy has errors; nothing may be rendered from it."""

    def __init__(self, path: str, issues: list[Issue]) -> None:
        super().__init__(f"team {path} has {len(issues)} error(s)", issues)
        self.path = path


@dataclass
class RenderedTeam:
    """A team's file set (relative path -> bytes) and the validation it passed."""

    path: str
    files: dict[str, bytes]
    validation: TeamValidation
    # sha256 of each whole file, and of each file's content below the header: the latter does
    # not depend on the revision, so it tells whether a team's files really changed.
    hashes: dict[str, str] = field(default_factory=dict)
    content_hashes: dict[str, str] = field(default_factory=dict)

    @property
    def content_digest(self) -> str:
        """One sha256 over all content hashes: equal content, equal digest."""
        listing = "".join(
            f"{name}\0{digest}\n" for name, digest in sorted(self.content_hashes.items())
        )
        return hashlib.sha256(listing.encode()).hexdigest()


def render_team(
    policy: OrgPolicy,
    path: str,
    *,
    revision: str = "unpublished",
    target: CodexCapabilities | None = None,
) -> RenderedTeam:
    """Validate one team and render its files for one Codex version; raises PolicyInvalid.

    Without a target: checked across the organisation's whole window, rendered for its newest
    version (what the team page and the change-set preview show).
    """
    _check_revision(revision)
    if target is None:
        validation = validate_team(policy, path)
        target = capabilities(policy.codex.max_version)
    else:
        validation = validate_team(policy, path, versions=[version_segment(target.version)])
    if validation.errors:
        raise PolicyInvalid(path, validation.errors)
    return _render(policy, path, validation, target, revision)


@dataclass
class RenderedVariant:
    """One distinct file set of a release and the Codex versions it is for."""

    spans: list[Span]
    team: RenderedTeam
    # The organisation's window the set was made for (signed, so a machine inside the window
    # refuses a set made for other versions).
    window: tuple[Version, Version]
    # The first of these versions that fetches from a config server: from it on, the agent adds
    # the native channel ([config_server]) to requirements.toml. None: none of them does.
    native_from: Version | None = None
    # The newest release the table was measured on when the set was made: later versions (the
    # newest set's range has no end) get files made for this one, so the agent warns there.
    measured_until: Version = NEWEST_MEASURED

    @property
    def codex(self) -> Json:
        """What the set is signed for: its Codex versions, the native channel, the window, and
        where measurement ended (signed apart from the manifest: releases/services/signed.py)."""
        return {
            "versions": [
                [version_text(start), version_text(until) if until else None]
                for start, until in self.spans
            ],
            "native_channel_from": version_text(self.native_from) if self.native_from else None,
            "window": [version_text(self.window[0]), version_text(self.window[1])],
            "measured_until": version_text(self.measured_until),
        }


@dataclass
class RenderedRelease:
    """A team's file sets for every Codex version of the window: one per distinct content."""

    path: str
    validation: TeamValidation
    variants: list[RenderedVariant]

    @property
    def primary(self) -> RenderedVariant:
        """The set for the window's newest version (what the native channel and exports carry)."""
        newest = self.variants[0].window[1]
        return next(v for v in self.variants if in_spans(newest, v.spans))

    @property
    def content_digest(self) -> str:
        """One sha256 over every set and the versions it is for: a change of the window alone
        (which versions get which files) is a new release too, and so is a newer measured
        release (the signed end of measurement moves, and machines on it stop warning)."""
        return variants_digest((v.codex, v.team.content_digest) for v in self.variants)


def variants_digest(variants: Iterable[tuple[Json, str]]) -> str:
    """One sha256 over several file sets: what each is for, and its content digest."""
    listing = "".join(
        f"{json.dumps(codex, sort_keys=True, separators=(',', ':'))}\0{digest}\n"
        for codex, digest in variants
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def render_release(
    policy: OrgPolicy, path: str, *, revision: str, validation: TeamValidation | None = None
) -> RenderedRelease:
    """Validate one team across the window (unless the caller did: `validation`) and render one
    file set per distinct variant.

    The window is cut where Codex changes (providers/codex_versions.py); each cut is rendered
    for its first version (documents shared between cuts are written as TOML once), and cuts
    with equal files share one set.
    """
    _check_revision(revision)
    validation = validation or validate_team(policy, path)
    if validation.errors:
        raise PolicyInvalid(path, validation.errors)
    window = (parse_version(policy.codex.min_version), parse_version(policy.codex.max_version))
    variants: dict[str, RenderedVariant] = {}
    made: dict[
        tuple[bool, frozenset[str], frozenset[str]], tuple[dict[str, Json], RenderedTeam]
    ] = {}
    texts: dict[str, str] = {}  # documents several sets share are written as TOML once
    for segment in team_segments(policy, validation.resolved):
        caps = capabilities(segment[0])
        inputs = _render_inputs(validation, caps)
        if inputs not in made:
            documents = _documents(policy, validation, caps)
            made[inputs] = documents, _files(policy, path, validation, documents, revision, texts)
        documents, team = made[inputs]
        _refuse_fatal(documents, caps)  # for every version: equal files, other rules
        variant = variants.setdefault(team.content_digest, RenderedVariant([], team, window))
        if variant.spans and variant.spans[-1][1] == segment[0]:
            variant.spans[-1] = (variant.spans[-1][0], segment[1])  # adjacent: one span
        else:
            variant.spans.append(segment)
        if caps.config_server and variant.native_from is None:
            variant.native_from = segment[0]
    return RenderedRelease(path, validation, list(variants.values()))


def _check_revision(revision: str) -> None:
    if not REVISION_RE.match(revision):
        # It goes into a comment line of every file: a line break would start TOML of its own.
        raise ApplicationError(
            "the revision must be letters, digits, '.', '_' or '-'",
            [Issue("error", "revision", f"{revision!r} is not a plain revision label")],
        )


def _render(
    policy: OrgPolicy,
    path: str,
    validation: TeamValidation,
    target: CodexCapabilities,
    revision: str,
) -> RenderedTeam:
    documents = _documents(policy, validation, target)
    _refuse_fatal(documents, target)
    return _files(policy, path, validation, documents, revision, None)


def _documents(
    policy: OrgPolicy, validation: TeamValidation, target: CodexCapabilities
) -> dict[str, Json]:
    """What each file holds for `target`, as data (see _render_inputs for what varies)."""
    resolved = validation.resolved
    profiles = {
        name: _ordered(_provider_ids(policy, resolved.profiles[name]), schema.PROFILE_KEYS)
        for name in sorted(resolved.profiles)
    }
    documents: dict[str, Json] = {
        REQUIREMENTS: requirements_document(policy, resolved.requirements),
        CONFIG: config_document(policy, resolved, target),
    }
    if target.profile_files:
        for name, profile in profiles.items():
            documents[profile_file(name)] = profile
    elif profiles:
        # Before 0.134 a profile is a table of config.toml, selected with --profile <name>.
        documents[CONFIG]["profiles"] = profiles
    managed = managed_document(policy, resolved.requirements)
    if managed:
        documents[MANAGED_CONFIG] = managed
    return documents


def _render_inputs(
    validation: TeamValidation, target: CodexCapabilities
) -> tuple[bool, frozenset[str], frozenset[str]]:
    """All that `_documents` takes from the version: the profile layout (when there are
    profiles), which of the config's features it knows, and which config keys it stops on."""
    resolved = validation.resolved
    defaults = frozenset(resolved.config.get("features", {}))
    unread = frozenset(k for k in resolved.config if target.config_key_unknown(k))
    return target.profile_files and bool(resolved.profiles), defaults & target.features, unread


def _files(
    policy: OrgPolicy,
    path: str,
    validation: TeamValidation,
    documents: dict[str, Json],
    revision: str,
    texts: dict[str, str] | None,
) -> RenderedTeam:
    label = f"{policy.slug}/{path}"
    bodies = {name: _text(doc, texts) for name, doc in documents.items()}
    content_hashes = {
        name: hashlib.sha256(body.encode()).hexdigest() for name, body in bodies.items()
    }
    files = {
        name: with_header(bodies[name], team=label, revision=revision, digest=content_hashes[name])
        for name in bodies
    }
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return RenderedTeam(path, files, validation, hashes, content_hashes)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _text(document: Json, texts: dict[str, str] | None) -> str:
    """The TOML text of `document`, reusing the text of an identical one (same keys, same order).

    A config.toml with profile tables (before 0.134) is its other keys' text followed by each
    profile's, the same text the profile files carry: written once, checked as a whole.
    """
    profiles = document.get("profiles")
    if isinstance(profiles, dict) and all(_BARE_KEY.fullmatch(name) for name in profiles):
        base = _text({k: v for k, v in document.items() if k != "profiles"}, texts)
        parts = [base]
        for name, profile in profiles.items():
            separator = "\n" if "".join(parts) else ""
            parts.append(f"{separator}[profiles.{name}]\n{_text(profile, texts)}")
        text = "".join(parts)
        if tomllib.loads(text) != canonical(document):
            raise RenderError("rendered TOML does not parse back to the intended values")
        return text
    if texts is None:
        return toml_text(document)
    key = json.dumps(document, ensure_ascii=False)
    if key not in texts:
        texts[key] = toml_text(document)
    return texts[key]


def requirements_document(policy: OrgPolicy, requirements: Json) -> Json:
    """Every requirement, also those `target` ignores: harmless there, and enforced as soon as
    the machine upgrades Codex (validation decided whether ignoring them is acceptable)."""
    doc = _ordered(requirements, schema.REQUIREMENT_KEYS)
    pinned = requirements.get("model_provider")
    required = [pinned] if pinned else []
    required += [name for name in doc.pop("model_providers", []) if name not in required]
    if pinned:
        doc["model_provider"] = policy.endpoints[pinned].provider_id
    tables = {}
    for name in required:
        table = _provider_table(policy, name)
        if table is not None:
            tables[policy.endpoints[name].provider_id] = table
    if tables:
        doc["model_providers"] = tables
    return doc


def config_document(policy: OrgPolicy, resolved: Any, target: CodexCapabilities) -> Json:
    doc = _ordered(_provider_ids(policy, resolved.config), schema.CONFIG_KEYS)
    for key in [k for k in doc if target.config_key_unknown(k)]:
        del doc[key]  # a key the version stops on (validation warned): left out for it
    if "features" in doc:
        # A default the version does not know: strict validation refuses it, others ignore it.
        doc["features"] = {k: v for k, v in doc["features"].items() if k in target.features}
        if not doc["features"]:
            del doc["features"]
    used = [
        resolved.config.get("model_provider"),
        *(p.get("model_provider") for p in resolved.profiles.values()),
    ]
    tables = {}
    for name in sorted({n for n in used if n}):
        table = _provider_table(policy, name)
        if table is not None:
            tables[policy.endpoints[name].provider_id] = table
    if tables:
        doc["model_providers"] = tables
    if resolved.mcp_servers:
        doc["mcp_servers"] = {
            name: _ordered(resolved.mcp_servers[name], schema.MCP_SERVER_KEYS)
            for name in sorted(resolved.mcp_servers)
        }
    return doc


def managed_document(policy: OrgPolicy, requirements: Json) -> Json:
    """managed_config.toml: the pins every Codex version enforces over user config and `-c`
    (codex.managed_pins); empty when the team has none."""
    pins, _ = managed_pins(policy.codex, requirements)
    doc: Json = {pin.key: pin.value for pin in pins}
    if "model_provider" in doc:
        endpoint = policy.endpoints[str(doc["model_provider"])]
        doc["model_provider"] = endpoint.provider_id
        table = _provider_table(policy, endpoint.name)
        if table is not None:
            doc["model_providers"] = {endpoint.provider_id: table}
    return doc


def _refuse_fatal(documents: Mapping[str, Json], target: CodexCapabilities) -> None:
    """The last guard: a value `target` refuses to start on is never written for it."""
    requirements = documents[REQUIREMENTS]
    for key, config_key in ALLOWLIST_VALUES.items():
        if key in target.requirement_keys:
            for value in requirements.get(key, []):
                if not target.accepts_value(config_key, value):
                    raise RenderError(f"Codex {target.label} cannot read {key} value {value!r}")
    for document in documents.values():
        for layer in [document, *document.get("profiles", {}).values()]:
            for key in ENUM_CONFIG_KEYS:
                if key in layer and target.config_value_fatal(key, layer[key]):
                    raise RenderError(f"Codex {target.label} refuses {key} = {layer[key]!r}")
        for provider_id in document.get("model_providers", {}):
            if not target.knows_provider(provider_id):
                raise RenderError(f"Codex {target.label} has no built-in {provider_id!r} provider")


def with_header(body: str, *, team: str, revision: str, digest: str) -> bytes:
    """The file: a header naming team, revision and the body's sha256, then the body."""
    header = (
        f"# Managed by PolicyHub for team {team}, revision {revision}. Local edits are overwritten.\n"
        f"# sha256 of the content below: {digest}\n"
    )
    return (header + ("\n" if body else "") + body).encode()


HEADER_RE = re.compile(
    r"# Managed by PolicyHub for team (?P<team>[^\n]+), revision (?P<revision>[A-Za-z0-9._-]{1,64})\."
    r" Local edits are overwritten\.\n# sha256 of the content below: (?P<digest>[0-9a-f]{64})\n"
)


def retitle(data: bytes, *, team: str, revision: str) -> bytes:
    """The same file under a header naming another revision: the body and its sha256 are kept.

    Refuses a file without a PolicyHub header or whose body no longer matches the sha256 in it,
    so a damaged stored file is never signed again under a new revision.
    """
    _check_revision(revision)
    text = data.decode()
    header = HEADER_RE.match(text)
    if header is None:
        raise ApplicationError("the file does not start with a PolicyHub header")
    rest = text[header.end() :]
    body = rest[1:] if rest.startswith("\n") else rest
    if rest and not rest.startswith("\n"):
        raise ApplicationError("the file's header is not followed by a blank line")
    digest = hashlib.sha256(body.encode()).hexdigest()
    if digest != header["digest"]:
        raise ApplicationError("the file's content does not match the sha256 in its header")
    return with_header(body, team=team, revision=revision, digest=digest)


# --- canonical order --------------------------------------------------------------------------


def _provider_table(policy: OrgPolicy, name: str) -> Json | None:
    """The endpoint's table: top-level order as the kind writes it, admin-typed maps sorted."""
    endpoint = policy.endpoints[name]
    table = KINDS[endpoint.kind].provider_table(endpoint.settings, endpoint.provider_id)
    return None if table is None else {k: canonical(v) for k, v in table.items()}


def _provider_ids(policy: OrgPolicy, settings: Json) -> Json:
    """Endpoint names become the Codex provider ids they render as."""
    out = dict(settings)
    if "model_provider" in out:
        out["model_provider"] = policy.endpoints[out["model_provider"]].provider_id
    return out


def _ordered(values: Mapping[str, Any], schema_keys: Mapping[str, Any]) -> Json:
    """Schema order for known keys; anything nested is sorted so storage order never matters."""
    return {k: canonical(values[k]) for k in schema_keys if k in values}


__all__ = [
    "PolicyInvalid",
    "RenderedRelease",
    "RenderedTeam",
    "RenderedVariant",
    "render_release",
    "render_team",
    "retitle",
]
