"""Benchmark: validate and render every team of a 10,000-team organisation (no database).

    .venv/bin/python bench/render.py [--teams 10000] [--rules 5000]

Builds the demo organisation's tree again and again under top-level groups until it has the
requested number of teams, then resolves, validates and renders each team for Codex 0.169.0.
Prints teams per second, where the time goes, and the peak RSS. Publishing (render, validate,
sign, store) must do 10,000 teams in under 60 s on one worker; this is its rendering share.

Then one team with ever more prefix rules, up to the most a team may have (policies/limits.py):
the time to parse, validate and render it must grow with its size (target: 5,000 rules in < 2 s),
printed per rule and per kilobyte of document so a quadratic step shows as a growing column.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "policyhub.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

from orgtree import demo_tree

from policyhub.policies import document, limits
from policyhub.policies.demo import ACME
from policyhub.policies.validation import validate_team
from policyhub.rendering.render import render_team

DEMO = ACME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=limits.PREFIX_RULES)
    args = parser.parse_args()
    organisation(args.teams)
    rules(args.rules)


def organisation(wanted: int) -> None:
    policy = demo_tree(wanted)

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


RULE = '  {{ pattern = [{{ token = "tool{n}" }}, {{ any_of = ["-a", "--all{n}"] }}], decision = "prompt", justification = "rule {n}" }},\n'


def with_rules(count: int) -> str:
    """The demo document with one team (platform/ci) holding `count` prefix rules, its own and
    those it inherits from the organisation."""
    inherited = document.parse(DEMO.read_text()).root.requirements["rules"]["prefix_rules"]
    body = "".join(RULE.format(n=n) for n in range(count - len(inherited)))
    return (
        DEMO.read_text()
        + f'\n[teams."platform/ci".requirements.rules]\nprefix_rules = [\n{body}]\n'
    )


def rules(most: int) -> None:
    print()
    print("one team, prefix rules: parse + validate + render (each step's best of 3)")
    print(
        f"{'rules':>8} {'KB':>8} {'parse s':>8} {'render s':>9} {'total s':>8} {'ms/rule':>8} {'ms/KB':>7}"
    )
    for count in sorted({max(most // 8, 1), max(most // 4, 1), max(most // 2, 1), most}):
        text = with_rules(count)
        best = [float("inf"), float("inf")]
        for _ in range(3):
            t0 = time.perf_counter()
            policy = document.parse(text)
            t1 = time.perf_counter()
            render_team(policy, "platform/ci", revision="1")  # validates, then renders
            t2 = time.perf_counter()
            best = [min(best[0], t1 - t0), min(best[1], t2 - t1)]
        total = sum(best)
        kb = len(text.encode()) / 1024
        print(
            f"{count:>8,} {kb:>8,.0f} {best[0]:>8.2f} {best[1]:>9.2f} {total:>8.2f} "
            f"{total * 1000 / count:>8.3f} {total * 1000 / kb:>7.2f}"
        )
    verdict = "PASS" if total < 2.0 else "MISS"
    print(f"target: {most:,} rules in < 2 s: {total:.2f} s {verdict}")


if __name__ == "__main__":
    main()
