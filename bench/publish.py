"""Benchmark: publish 10,000 teams (render, validate, sign, store), then re-publish unchanged.

    .venv/bin/python bench/publish.py [--teams 10000]

Runs the publish service in this process against PostgreSQL (database `policyhub_bench` on
127.0.0.1, created when missing, or DATABASE_URL), so the peak RSS printed is what one worker
needs. Target (README, "Benchmarks"): 10,000 teams in under 60 s on one worker; an unchanged re-publish
writes nothing.
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
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/policyhub_bench")

import django
import psycopg


def ensure_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--teams", type=int, default=10_000)
    teams_wanted = parser.parse_args().teams
    ensure_database(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from orgtree import demo_tree

    from policyhub.accounts.models import Organization
    from policyhub.actors import Actor
    from policyhub.policies.services import policy_apply
    from policyhub.releases.models import PublishRun, Release
    from policyhub.releases.services.publishing import publish_run_execute

    call_command("migrate", verbosity=0)
    # Audit events keep organisations from being deleted, so every run gets its own.
    org = Organization.objects.create(slug=f"bench-{int(time.time())}", name="Bench")
    policy = demo_tree(teams_wanted, slug=org.slug, name="Bench")
    started = time.perf_counter()
    operator = Actor.operator("bench")
    policy_apply(organization=org, wanted=policy, actor=operator)
    print(f"setup: {len(policy.teams):,} teams stored in {time.perf_counter() - started:.1f} s")

    def publish() -> tuple[float, PublishRun]:
        run = PublishRun.objects.create(
            organization=org, requested_by_kind=operator.kind, requested_by_label=operator.label
        )
        started = time.perf_counter()
        done = publish_run_execute(run_id=run.pk)
        assert done is not None
        return time.perf_counter() - started, done

    seconds, run = publish()
    stored = Release.objects.filter(organization=org).count()
    print(
        f"publish         {seconds:>8.1f} s  {run.releases_created:,} releases, {run.teams_rendered / seconds:,.0f} teams/s"
    )
    seconds_again, again = publish()
    print(f"re-publish      {seconds_again:>8.1f} s  {again.releases_created} releases written")
    print(f"peak RSS        {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>8.0f} MB")
    print(
        f"target: under 60 s -> {'met' if seconds < 60 else 'NOT met'} ({seconds / 60:.0%} of it)"
    )
    assert stored == run.releases_created == len(policy.teams) and again.releases_created == 0


if __name__ == "__main__":
    main()
