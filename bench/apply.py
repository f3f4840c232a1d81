"""Benchmark: apply a 10,000-team policy document as `manage.py policy apply` does.

    .venv/bin/python bench/apply.py [--teams 10000]

Against PostgreSQL (database `policyhub_bench` on 127.0.0.1, created when missing, or
DATABASE_URL), in this process: the document's text is parsed and applied to a new organisation
(every team, node, profile, MCP server and audit event written), then applied again unchanged,
then with one value changed. Prints each step's seconds and queries. Target (README,
"Benchmarks"): 10,000 teams in under 30 s.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "policyhub.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/policyhub_bench")

import django
from publish import ensure_database


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--teams", type=int, default=10_000)
    teams = parser.parse_args().teams
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from orgtree import demo_tree

    from policyhub.accounts.models import Organization
    from policyhub.actors import Actor
    from policyhub.audit.models import AuditEvent
    from policyhub.policies import document
    from policyhub.policies.services import policy_apply

    call_command("migrate", verbosity=0)
    # Audit events keep organisations from being deleted, so every run gets its own.
    org = Organization.objects.create(slug=f"apply-{int(time.time())}", name="Bench")
    text = document.dump(demo_tree(teams, slug=org.slug, name="Bench"))
    print(f"document: {teams:,} teams, {len(text) / 1e6:.1f} MB of TOML")

    def apply(label: str, text: str) -> float:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            parsed = document.parse(text)
            parsed_at = time.perf_counter()
            changes = policy_apply(organization=org, wanted=parsed, actor=Actor.operator("bench"))
            done = time.perf_counter()
        print(
            f"{label:<24} {done - started:>7.1f} s  (parse {parsed_at - started:.1f} s, "
            f"validate and write {done - parsed_at:.1f} s)  {len(changes):,} plan lines, "
            f"{len(queries.captured_queries):,} queries"
        )
        return done - started

    first = apply("apply, new org", text)
    apply("apply again, unchanged", text)
    # One value of one node, as an admin's one-line edit: the first reasoning effort set.
    changed = re.sub(
        r'model_reasoning_effort = "(\w+)"',
        lambda found: f'model_reasoning_effort = "{"low" if found[1] != "low" else "high"}"',
        text,
        count=1,
    )
    apply("apply, one value changed", changed)
    events = AuditEvent.objects.filter(organization=org).count()
    print(f"audit events written: {events:,}")
    verdict = "PASS" if first < 30 else "MISS"
    print(f"target: {teams:,} teams applied in < 30 s: {first:.1f} s {verdict}")


if __name__ == "__main__":
    main()
