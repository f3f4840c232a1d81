"""Render a team's effective policy into the exact files Codex reads.

A real TOML writer (tomlkit) builds every file, keys come in a canonical order (top-level keys
before tables, so nothing lands in the wrong table), and every file is parsed back and compared
with what was meant: a value can never add a key. Same policy -> same bytes -> same hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policyhub.errors import ApplicationError
from policyhub.policies import schema
from policyhub.policies.domain import Json, OrgPolicy
from policyhub.policies.tomlio import RenderError, canonical, toml_text
from policyhub.policies.validation import TeamValidation, validate_team
from policyhub.rendering.targets import CodexTarget, codex_target
from providers import KINDS
from providers.base import Issue

REQUIREMENTS = "requirements.toml"
CONFIG = "config.toml"
PROFILE_DIR = "profiles"
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
    policy: OrgPolicy, path: str, *, revision: str = "draft", target: CodexTarget | None = None
) -> RenderedTeam:
    """Validate one team and render its files; raises PolicyInvalid on any error."""
    if not REVISION_RE.match(revision):
        # It goes into a comment line of every file: a line break would start TOML of its own.
        raise ApplicationError(
            "the revision must be letters, digits, '.', '_' or '-'",
            [Issue("error", "revision", f"{revision!r} is not a plain revision label")],
        )
    target = target or codex_target()
    validation = validate_team(policy, path)
    if validation.errors:
        raise PolicyInvalid(path, validation.errors)
    resolved = validation.resolved
    label = f"{policy.slug}/{path}"
    documents: dict[str, Json] = {
        REQUIREMENTS: requirements_document(policy, resolved.requirements, target),
        CONFIG: config_document(policy, resolved, target),
    }
    for name in sorted(resolved.profiles):
        profile = _provider_ids(policy, resolved.profiles[name])
        documents[f"{PROFILE_DIR}/{name}.config.toml"] = _ordered(profile, schema.PROFILE_KEYS)
    bodies = {name: toml_text(doc) for name, doc in documents.items()}
    content_hashes = {
        name: hashlib.sha256(body.encode()).hexdigest() for name, body in bodies.items()
    }
    files = {
        name: with_header(bodies[name], team=label, revision=revision, digest=content_hashes[name])
        for name in bodies
    }
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return RenderedTeam(path, files, validation, hashes, content_hashes)


def requirements_document(policy: OrgPolicy, requirements: Json, target: CodexTarget) -> Json:
    unknown = set(requirements) - target.requirement_keys
    if unknown:
        raise RenderError(f"Codex {target.version} does not enforce {', '.join(sorted(unknown))}")
    doc = _ordered(requirements, schema.REQUIREMENT_KEYS)
    pinned = requirements.get("model_provider")
    if pinned:
        endpoint = policy.endpoints[pinned]
        doc["model_provider"] = endpoint.provider_id
        table = _provider_table(policy, pinned)
        if table is not None:
            doc["model_providers"] = {endpoint.provider_id: table}
    return doc


def config_document(policy: OrgPolicy, resolved: Any, target: CodexTarget) -> Json:
    doc = _ordered(_provider_ids(policy, resolved.config), schema.CONFIG_KEYS)
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
    if not REVISION_RE.match(revision):
        raise ApplicationError(
            "the revision must be letters, digits, '.', '_' or '-'",
            [Issue("error", "revision", f"{revision!r} is not a plain revision label")],
        )
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


__all__ = ["CONFIG", "REQUIREMENTS", "PolicyInvalid", "RenderedTeam", "render_team", "retitle"]
