"""Benchmark: validate and render every team of a 10,000-team organisation (no database).

    .venv/bin/python bench/render.py [--teams 10000]

Builds the demo organisation's tree again and again under top-level groups until it has the
requested number of teams, then resolves, validates and renders each team for Codex 0.169.0.
Prints teams per second, where the time goes, and the peak RSS. Publishing (render, validate,
sign, store) must do 10,000 teams in under 60 s on one worker; this is its rendering share.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "policyhub.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

from policyhub.policies import document
from policyhub.policies.demo import ACME
from policyhub.policies.domain import TeamSpec
from policyhub.policies.validation import validate_team
from policyhub.rendering.render import render_team

DEMO = ACME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=10_000)
    wanted = parser.parse_args().teams

    demo = document.parse(DEMO.read_text())
    per_group = len(demo.teams) + 1
    teams: dict[str, TeamSpec] = {}
    for group in range(-(-wanted // per_group)):
        slug = f"g{group:05d}"
        teams[slug] = TeamSpec(slug, f"Group {group}")
        for path, spec in demo.teams.items():
            teams[f"{slug}/{path}"] = replace(spec, path=f"{slug}/{path}")
    policy = replace(demo, teams=dict(list(teams.items())[:wanted]))

    start = time.perf_counter()
    validate_seconds = 0.0
    files = size = 0
    for path in policy.teams:
        t0 = time.perf_counter()
        validate_team(policy, path)
        validate_seconds += time.perf_counter() - t0
        rendered = render_team(policy, path, revision="1")
        files += len(rendered.files)
        size += sum(len(b) for b in rendered.files.values())
    total = time.perf_counter() - start
    # render_team validates again before rendering; count that once under rendering.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"teams                 {len(policy.teams):>10,}")
    print(f"files rendered        {files:>10,}  ({size / 1e6:.1f} MB)")
    print(f"total                 {total:>10.2f} s   {len(policy.teams) / total:,.0f} teams/s")
    print(f"  of which validation {validate_seconds:>10.2f} s   (resolve + all checks, once)")
    print(
        f"  render incl. checks {total - validate_seconds:>10.2f} s   (tomlkit + parse-back + hash)"
    )
    print(f"peak RSS              {peak_mb:>10.0f} MB")
    print(f"share of the 60 s publish budget used by rendering alone: {total / 60:.0%}")


if __name__ == "__main__":
    main()
