"""Everything a team's files depend on, as one digest per team.

A team's release is a function of:

- its chain of nodes: the organisation's own, each ancestor's and its own (label and contents);
- the provider endpoints those nodes name (their kind, provider id, settings, capabilities);
- the organisation's slug and Codex window (versions, pins, keys accepted as unenforced);
- the code that validates and renders, the TOML writer it uses and the Python it runs on
  (`RENDERER_DIGEST`).

Not the team's display name, not its siblings, not the endpoints it does not name. A publish
renders again only the teams whose digest moved since they were last rendered
(releases/services/publishing.py); tests/rendering/test_inputs.py renders policies changed
anywhere at random in full and fails when a team kept its digest but not its files.
"""

from __future__ import annotations

import hashlib
import json
import platform
import unicodedata
from collections.abc import Iterable, Set
from dataclasses import asdict
from pathlib import Path
from typing import Any

import tomlkit

import providers
from policyhub import policies, rendering
from policyhub.policies.domain import Endpoint, Node, OrgPolicy

# The folders of the packages whose code decides what a team's files hold: the provider kinds and
# the Codex release table, validation and resolution, rendering. Any change to them counts as a
# change of every team's inputs, so the first publish after an upgrade renders every team once.
RENDERER_PACKAGES = tuple(
    Path(str(package.__file__)).parent for package in (providers, policies, rendering)
)
# What their code and data are: Python source and the tables it reads (the Codex release table
# is a TSV); not what a checkout, an editor or Python itself leaves beside them, which differs
# from host to host and would make workers disagree.
CODE_SUFFIXES = frozenset({".py", ".tsv"})


def code_digest(packages: Iterable[Path]) -> str:
    """sha256 over the code and data files of `packages` (CODE_SUFFIXES, outside __pycache__
    and migrations), the version of Python and of its Unicode tables (which characters
    validation refuses comes from them), and tomlkit's version."""
    versions = (
        f"python {platform.python_version()}\0unicode {unicodedata.unidata_version}\0"
        f"tomlkit {tomlkit.__version__}\0"
    )
    digest = hashlib.sha256(versions.encode())
    for root in packages:
        files = sorted(
            path
            for path in root.rglob("*")
            if path.suffix in CODE_SUFFIXES
            and path.is_file()
            and not {"__pycache__", "migrations"} & set(path.relative_to(root).parts)
        )
        for path in files:
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


# Taken when this module is imported, as a worker starts and before it forks or renders anything:
# the digest of the code the process runs, not of whatever an upgrade has put on disk since (a
# worker still running the old code must not record its renders under the new code's digest).
RENDERER_DIGEST = code_digest(RENDERER_PACKAGES)


def _json(value: Any) -> bytes:
    # Keys in the order they come: where the order of a table could reach the files, a new
    # order is a new digest (a spurious render at worst, never a missed one).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_tagged).encode()


def _tagged(value: object) -> list[str]:
    """A value JSON has no type for (a TOML date, say), tagged with its type."""
    return [f"\0{type(value).__qualname__}", repr(value)]


def _strings(value: Any) -> set[str]:
    """Every string in `value`, keys included: any of them may name an endpoint."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            found.update(k for k in item if isinstance(k, str))
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def _node(node: Node, endpoint_names: Set[str]) -> tuple[bytes, frozenset[str]]:
    """A node's digest, and the endpoints it names: any string it holds, key or value, that is
    an endpoint's name (more than the keys that name one today; a spurious render at worst)."""
    contents = [node.requirements, node.config, dict(node.profiles), dict(node.mcp_servers)]
    named = frozenset(_strings(contents) & endpoint_names)
    return hashlib.sha256(_json(contents)).digest(), named


def _endpoint(endpoint: Endpoint) -> bytes:
    fields = [
        endpoint.kind,
        endpoint.provider_id,
        endpoint.settings,
        dict(endpoint.capabilities),
    ]
    return hashlib.sha256(_json(fields)).digest()


def team_input_digests(policy: OrgPolicy, paths: Iterable[str] | None = None) -> dict[str, str]:
    """The inputs digest of each team of `paths` (every team by default), by path.

    Each node and endpoint is hashed once, however many teams inherit it, so the cost is the
    size of the policy plus, per team, its depth and the endpoints its chain names.
    """
    base = hashlib.sha256(_json([RENDERER_DIGEST, policy.slug, asdict(policy.codex)])).digest()
    endpoints = {name: _endpoint(endpoint) for name, endpoint in policy.endpoints.items()}
    nodes: dict[str, tuple[bytes, frozenset[str]]] = {}
    digests: dict[str, str] = {}
    for path in policy.teams if paths is None else paths:
        digest = hashlib.sha256(base)
        named: set[str] = set()
        for label, node in policy.chain(path):
            if label not in nodes:
                nodes[label] = _node(node, endpoints.keys())
            node_digest, node_named = nodes[label]
            digest.update(label.encode() + b"\0" + node_digest)
            named |= node_named
        for name in sorted(named):
            digest.update(name.encode() + b"\0" + endpoints[name])
        digests[path] = digest.hexdigest()
    return digests
