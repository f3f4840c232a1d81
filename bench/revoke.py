"""Benchmark: revoke the signing key of 10,000 published teams and re-sign all their releases.

    .venv/bin/python bench/revoke.py [--teams 10000]

Publishes the teams first (as bench/publish.py does), then revokes the active key: the revocation
itself (a new key, the signed list, the audit event) and the re-signing a worker does after it
(every team's release again, with the same files, signed by the new key), both in this process
against PostgreSQL (database `policyhub_bench` on 127.0.0.1, created when missing, or
DATABASE_URL), so the peak RSS printed is what one worker needs. Target (README, "Benchmarks"):
the re-signing of 10,000 teams within a publish's time on one worker, under 60 s.
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
    from policyhub.celery import app as celery_app
    from policyhub.policies.services import policy_apply
    from policyhub.releases import signing
    from policyhub.releases.models import PublishRun, Release, SigningKey
    from policyhub.releases.services.publishing import publish_run_execute
    from policyhub.releases.services.resign import releases_resign
    from policyhub.releases.services.revocation import signing_key_revoke

    call_command("migrate", verbosity=0)
    operator = Actor.operator("bench")
    # Audit events keep organisations from being deleted, so every run gets its own.
    org = Organization.objects.create(slug=f"bench-{int(time.time())}", name="Bench")
    policy = demo_tree(teams_wanted, slug=org.slug, name="Bench")
    policy_apply(organization=org, wanted=policy, actor=operator)
    run = PublishRun.objects.create(
        organization=org, requested_by_kind=operator.kind, requested_by_label=operator.label
    )
    started = time.perf_counter()
    assert publish_run_execute(run_id=run.pk) is not None
    published = time.perf_counter() - started
    print(f"publish         {published:>8.1f} s  {len(policy.teams):,} teams")

    key = SigningKey.objects.get(organization=org, status="active")
    # The revocation hands the re-signing to the (in-memory) broker, where no worker takes it:
    # it is run and timed apart, just below, as a worker would run it.
    celery_app.conf.task_always_eager = False
    started = time.perf_counter()
    revocation = signing_key_revoke(
        actor=operator, organization=org, key_id=key.key_id, reason="benchmark"
    )
    revoked = time.perf_counter() - started
    print(
        f"revoke          {revoked * 1000:>8.0f} ms  ({revocation.teams_to_resign:,} teams to re-sign)"
    )
    started = time.perf_counter()
    done = releases_resign(organization_id=org.pk, actor=operator)
    resigned = time.perf_counter() - started
    print(
        f"re-sign         {resigned:>8.1f} s  {done.releases:,} releases, {done.teams / resigned:,.0f} teams/s"
    )
    print(f"peak RSS        {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>8.0f} MB")
    current = Release.objects.filter(organization=org, current=True).select_related("signing_key")
    assert done.teams == len(policy.teams) == revocation.teams_to_resign
    assert all(
        r.signing_key_id == revocation.active.pk
        and signing.verify(revocation.active.public_key, r.manifest.encode(), r.signature)
        for r in current.iterator()
    )
    print(
        f"target: under 60 s -> {'met' if resigned < 60 else 'NOT met'} ({resigned / 60:.0%} of it)"
    )


if __name__ == "__main__":
    main()
