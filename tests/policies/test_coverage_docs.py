"""docs/codex.md's coverage table says, for every requirement key, the release that first
enforces it and how a team narrows it, exactly as the code does."""

from __future__ import annotations

import re
from pathlib import Path

from policyhub.policies import schema
from policyhub.policies.narrowing import NARROWING, rule_name
from providers.codex_versions import CHANGES

DOC = Path(__file__).resolve().parents[2] / "docs" / "codex.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| ([0-9.]+) \| ([a-z-]+)")
# Folded by resolution itself, per name.
OWN_RULES = {"features": "pin", "mcp_servers": "allow-list"}


def test_the_coverage_table_matches_the_code() -> None:
    rows = {m[1]: (m[2], m[3]) for line in DOC.read_text().splitlines() if (m := ROW.match(line))}
    wanted = {
        key: (
            next(c.version for c in CHANGES if key in c.requirement_keys),
            OWN_RULES.get(key) or rule_name(NARROWING[key]),
        )
        for key in schema.REQUIREMENT_KEYS
    }
    assert rows == wanted
    for key in schema.UNSUPPORTED_REQUIREMENTS:
        assert f"| `{key}` | " in DOC.read_text()
