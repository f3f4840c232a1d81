"""Benchmark: publish 10,000 teams (render, validate, sign, store), then re-publish unchanged,
then publish after a one-key change of one team.

    .venv/bin/python bench/publish.py [--teams 10000]

Runs the publish service in this process against PostgreSQL (database `policyhub_bench` on
127.0.0.1, created when missing, or DATABASE_URL), so the peak RSS printed is what one worker
needs. Targets (README, "Benchmarks"): 10,000 teams in under 60 s on one worker; an unchanged
re-publish in under 2 s and a one-key change in under 3 s, each rendering only what changed.
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
        f"publish          {seconds:>7.1f} s  {run.teams_rendered:,} teams rendered, "
        f"{run.releases_created:,} releases, {run.teams_rendered / seconds:,.0f} teams/s"
    )
    unchanged_seconds, unchanged = publish()
    print(
        f"re-publish       {unchanged_seconds:>7.1f} s  {unchanged.teams_rendered} teams rendered, "
        f"{unchanged.releases_created} releases"
    )
    # One key of one team: the team and those below it render again, nothing else.
    path = next(p for p in sorted(policy.teams) if "/" in p)
    spec = policy.teams[path]
    effort = "high" if spec.node.config.get("model_reasoning_effort") == "low" else "low"
    config = {**spec.node.config, "model_reasoning_effort": effort}
    edited = replace(spec, node=replace(spec.node, config=config))
    policy_apply(
        organization=org,
        wanted=replace(policy, teams={**policy.teams, path: edited}),
        actor=operator,
    )
    one_key_seconds, one_key = publish()
    print(
        f"one-key change   {one_key_seconds:>7.1f} s  {one_key.teams_rendered} teams rendered, "
        f"{one_key.releases_created} releases ({path})"
    )
    print(f"peak RSS         {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>7.0f} MB")
    for what, took, target in (
        ("publish", seconds, 60),
        ("re-publish", unchanged_seconds, 2),
        ("one-key change", one_key_seconds, 3),
    ):
        met = "met" if took < target else "NOT met"
        print(f"target: {what} under {target} s -> {met} ({took / target:.0%} of it)")
    assert stored == run.releases_created == len(policy.teams)
    assert unchanged.releases_created == unchanged.teams_rendered == 0
    assert one_key.releases_created >= 1 and one_key.teams_rendered < len(policy.teams)


if __name__ == "__main__":
    main()
