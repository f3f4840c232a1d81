"""The organisation the benchmarks build: the demo tree repeated under top-level groups."""

from __future__ import annotations

from dataclasses import replace

from policyhub.policies import document
from policyhub.policies.demo import ACME
from policyhub.policies.domain import OrgPolicy, TeamSpec


def demo_tree(teams: int, slug: str | None = None, name: str | None = None) -> OrgPolicy:
    """The demo organisation's policy with `teams` teams: its tree again and again under groups
    g00000, g00001, ... (each group a team too)."""
    demo = document.parse(ACME.read_text())
    tree: dict[str, TeamSpec] = {}
    group = 0
    while len(tree) < teams:
        top = f"g{group:05d}"
        tree[top] = TeamSpec(top, f"Group {group}")
        for path, spec in demo.teams.items():
            tree[f"{top}/{path}"] = replace(spec, path=f"{top}/{path}")
        group += 1
    return replace(
        demo,
        slug=slug or demo.slug,
        name=name or demo.name,
        teams=dict(list(tree.items())[:teams]),
    )
