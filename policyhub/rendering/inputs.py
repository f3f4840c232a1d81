"""Everything a team's files depend on, as one digest per team.

A team's release is a function of:

- its chain of nodes: the organisation's own, each ancestor's and its own (label and contents);
- the provider endpoints those nodes name (their kind, provider id, settings, capabilities);
- the organisation's slug and Codex window (versions, pins, keys accepted as unenforced);
- the code that validates and renders, and the TOML writer it uses (`renderer_digest`).

Nothing else: not the team's display name, not its siblings, not the endpoints it does not name.
A publish renders again only the teams whose digest moved since they were last rendered
(releases/services/publishing.py); tests/rendering/test_inputs.py checks, against full
re-renders of policies changed anywhere at random, that no change is ever missed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
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


@functools.cache
def renderer_digest() -> str:
    """sha256 over the source and data files of RENDERER_PACKAGES and tomlkit's version."""
    digest = hashlib.sha256(f"tomlkit {tomlkit.__version__}\0".encode())
    for root in RENDERER_PACKAGES:
        files = sorted(
            path
            for path in root.rglob("*")
            if path.is_file() and not {"__pycache__", "migrations"} & set(path.parts)
        )
        for path in files:
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


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


def _node(node: Node) -> tuple[bytes, set[str]]:
    """A node's digest and the strings it holds."""
    contents = [node.requirements, node.config, dict(node.profiles), dict(node.mcp_servers)]
    return hashlib.sha256(_json(contents)).digest(), _strings(contents)


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

    Each node and endpoint is hashed once, however many teams inherit it: the cost grows with
    the size of the policy, not with teams times depth times node size.
    """
    base = hashlib.sha256(_json([renderer_digest(), policy.slug, asdict(policy.codex)])).digest()
    endpoints = {name: _endpoint(endpoint) for name, endpoint in policy.endpoints.items()}
    nodes: dict[str, tuple[bytes, set[str]]] = {}
    digests: dict[str, str] = {}
    for path in policy.teams if paths is None else paths:
        digest = hashlib.sha256(base)
        named: set[str] = set()
        for label, node in policy.chain(path):
            if label not in nodes:
                nodes[label] = _node(node)
            node_digest, strings = nodes[label]
            digest.update(label.encode() + b"\0" + node_digest)
            named |= strings
        # An endpoint a node names by a string it holds: any string that is an endpoint's name
        # counts (more than the keys that name one; a spurious render at worst).
        for name in sorted(named.intersection(endpoints)):
            digest.update(name.encode() + b"\0" + endpoints[name])
        digests[path] = digest.hexdigest()
    return digests
