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

# The whole document, in characters: 10,000 teams as rich as the demo organisation's (names,
# providers, profiles, MCP servers, rules) are about 2.7 MB of TOML. Data that did not come as text (the API's JSON, the browser's forms) is
# bounded by an estimate of the text PolicyHub would write for it (every name, value and table
# header, with the punctuation), at most four fifths of that: whatever is stored can always be
# written out as a document and read back.
DOCUMENT_CHARS = 8_000_000
DATA_CHARS = DOCUMENT_CHARS * 4 // 5
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
    walk = _Walk()
    walk.value(raw, (), 0)
    if walk.chars > DATA_CHARS and len(walk.issues) < MAX_ISSUES:
        walk.issues.append(
            Issue(
                "error",
                "document",
                f"would be about {walk.chars:,} characters long as a document; at most "
                f"{DATA_CHARS:,}",
            )
        )
    return walk.issues[:MAX_ISSUES]


class _Walk:
    """One pass over the data: the bounds it exceeds, and the length of the text it makes."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.chars = 0

    def refuse(self, parts: tuple[str, ...], message: str) -> None:
        self.issues.append(Issue("error", _path(parts), message))

    def value(self, value: Any, parts: tuple[str, ...], depth: int) -> None:
        if len(self.issues) >= MAX_ISSUES:
            return
        if isinstance(value, str):
            self.chars += len(value) + 4  # quotes, separator
            if len(value) > STRING_CHARS:
                self.refuse(parts, f"is longer than {STRING_CHARS:,} characters")
        elif not isinstance(value, Mapping | list):
            self.chars += 24  # a number, a date or a boolean, written
        elif depth >= DEPTH:
            self.refuse(parts, f"nests arrays or tables deeper than {DEPTH} levels")
        elif isinstance(value, list):
            self.list(value, parts, depth)
        else:
            self.table(value, parts, depth)

    def list(self, value: list[Any], parts: tuple[str, ...], depth: int) -> None:
        bound = _bound(parts, LIST_ITEMS)
        if len(value) > bound:
            self.refuse(parts, f"lists {len(value):,} items; at most {bound:,}")
            return
        last = parts[-1] if parts else ""
        for n, item in enumerate(value):
            self.value(item, (*parts[:-1], f"{last}[{n}]"), depth + 1)

    def table(self, value: Mapping[str, Any], parts: tuple[str, ...], depth: int) -> None:
        bound = _bound(parts, TABLE_KEYS)
        if len(value) > bound:
            self.refuse(parts, f"has {len(value):,} entries; at most {bound:,}")
            return
        self.chars += len(_path(parts)) + 8  # its header, quoted where it must be
        for key, item in value.items():
            if len(key) > STRING_CHARS:
                self.refuse(parts, f"has a key longer than {STRING_CHARS:,} characters")
                continue
            self.chars += len(key) + 4  # the key, " = ", the line break
            self.value(item, (*parts, key), depth + 1)


def _path(parts: tuple[str, ...]) -> str:
    return ".".join(parts) or "document"
