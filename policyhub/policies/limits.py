"""How much policy one organisation may hold: every bound on a policy document, in one place.

They are checked where a document is parsed (`document.parse` for TOML, `document.from_dict` for
the API's JSON and the web forms), before anything else looks at it, so one paste can never
stall a publish for everyone: a refusal names the field path and nothing is stored. The bounds
sit well above what a real organisation needs and well below what the renderer and the browser
handle quickly (docs/limits.md has the measurements).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.base import Issue

# The whole document, in characters: a 10,000-team organisation with a setting or two per team
# is about 2 MB of TOML.
DOCUMENT_CHARS = 4_000_000
TEAMS = 20_000
PROVIDERS = 500
# Per node (the organisation root or a team).
PROFILES = 200
MCP_SERVERS = 200  # config's servers, and requirements' allowed identities, each
PREFIX_RULES = 5_000  # also per team, its own and its ancestors' together (validation.py)
# Any other array or table, and any string (fields have their own, tighter, bounds).
LIST_ITEMS = 1_000
TABLE_KEYS = 1_000
STRING_CHARS = 65_536
# Arrays and tables inside one another: no Codex setting nests deeper than six.
DEPTH = 32
# A refusal lists at most this many findings: a document with a million bad values is refused
# as quickly as one with one.
MAX_ISSUES = 100

# Within a node: the tables and arrays with a bound of their own.
_NODE_BOUNDS: dict[tuple[str, ...], int] = {
    ("profiles",): PROFILES,
    ("mcp_servers",): MCP_SERVERS,
    ("requirements", "mcp_servers"): MCP_SERVERS,
    ("requirements", "rules", "prefix_rules"): PREFIX_RULES,
}


def _bound(parts: tuple[str, ...], default: int) -> int:
    if parts == ("teams",):
        return TEAMS
    if parts == ("providers",):
        return PROVIDERS
    within_node = parts[2:] if parts[:1] == ("teams",) else parts
    return _NODE_BOUNDS.get(within_node, default)


def document_issues(raw: Mapping[str, Any]) -> list[Issue]:
    """Every bound the document's data exceeds, by field path (at most MAX_ISSUES)."""
    issues: list[Issue] = []
    _walk(raw, (), 0, issues)
    return issues[:MAX_ISSUES]


def _walk(value: Any, parts: tuple[str, ...], depth: int, issues: list[Issue]) -> None:
    if len(issues) >= MAX_ISSUES:
        return
    path = ".".join(parts) or "document"
    if isinstance(value, str):
        if len(value) > STRING_CHARS:
            issues.append(Issue("error", path, f"is longer than {STRING_CHARS:,} characters"))
        return
    if not isinstance(value, Mapping | list):
        return
    if depth >= DEPTH:
        issues.append(Issue("error", path, f"nests arrays or tables deeper than {DEPTH} levels"))
        return
    if isinstance(value, list):
        bound = _bound(parts, LIST_ITEMS)
        if len(value) > bound:
            issues.append(Issue("error", path, f"lists {len(value):,} items; at most {bound:,}"))
            return
        last = parts[-1] if parts else ""
        for n, item in enumerate(value):
            _walk(item, (*parts[:-1], f"{last}[{n}]"), depth + 1, issues)
        return
    bound = _bound(parts, TABLE_KEYS)
    if len(value) > bound:
        issues.append(Issue("error", path, f"has {len(value):,} entries; at most {bound:,}"))
        return
    for key, item in value.items():
        if len(key) > STRING_CHARS:
            issues.append(Issue("error", path, f"has a key longer than {STRING_CHARS:,} characters"))
        else:
            _walk(item, (*parts, key), depth + 1, issues)
