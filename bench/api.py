"""Benchmark: the first page and a filtered page of every list of the API, at 10,000 teams and
100,000 devices, beside a small organisation to show the query count does not grow.

    .venv/bin/python bench/api.py [--teams 10000] [--devices 100000] [--repeat 15]

Builds two organisations in PostgreSQL (database `policyhub_bench_api` on 127.0.0.1, recreated,
or DATABASE_URL): a large one and a small one (1% of it). Teams and devices are inserted in bulk
(this measures reads, not enrolment), the policy is published by the real publish service, and
each request goes through the whole Django stack in this process with an owner's API token.
Prints per list: median and 90th-percentile server time and the query count, large and small.
Target (README, "The API"): median under 300 ms, and the same query count at both sizes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "policyhub.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
# Invitations are mailed; nothing here needs them delivered.
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/policyhub_bench_api")

import django

# (name, path below the organisation, query string of the filtered page)
LISTS = [
    ("organisations", "/api/v1/orgs", "page_size=20"),
    ("teams", "teams", "under=g00000"),
    ("endpoints", "endpoints", "page_size=2"),
    ("members", "members", "role=viewer"),
    ("invitations", "invitations", "page_size=10"),
    ("api tokens", "api-tokens", "page_size=10"),
    ("change sets", "change-sets", "status=draft"),
    ("publish runs", "publish-runs", "status=succeeded"),
    ("releases", "releases", "team=g00000/platform/ci"),
    ("signing keys", "signing-keys", "page_size=1"),
    ("fleet devices", "fleet/devices", "state=failing"),
    ("fleet devices", "fleet/devices", "codex_window=outside"),
    ("fleet devices", "fleet/devices", "team=g00000/batch"),
    ("fleet teams", "fleet/teams", "team=g00000/batch"),
    ("codex versions", "fleet/codex-versions", ""),
    ("enrolment tokens", "enrollment-tokens", "team=g00000/batch"),
]
CODEX_VERSIONS = ["0.118.0", "0.125.0", "0.140.0", "0.160.0", "0.169.0", "0.171.0", ""]


def database_recreate(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    for command in (
        ["dropdb", "--if-exists", "--force", "-h", "127.0.0.1", "-U", "postgres", name],
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", name],
    ):
        subprocess.run(command, check=True)


def build(slug: str, teams_wanted: int, devices_wanted: int) -> str:
    """An organisation with `teams_wanted` teams (the demo tree repeated), its releases, and
    `devices_wanted` devices in every state; returns an owner's API token."""
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.utils import timezone

    from policyhub.accounts.models import Role
    from policyhub.accounts.services import (
        api_token_create,
        invitation_create,
        membership_grant,
        organization_create,
    )
    from policyhub.actors import Actor
    from policyhub.changes.services import change_set_create
    from policyhub.fleet.models import Device, EnrollmentToken
    from policyhub.policies import document
    from policyhub.policies.demo import ACME
    from policyhub.policies.services import policy_apply
    from policyhub.releases.services.publishing import publish_run_create, publish_run_execute
    from policyhub.teams.models import Team

    operator = Actor.operator("bench")
    owner = User.objects.create_user(f"owner-{slug}", f"owner@{slug}.example")
    org = organization_create(actor=operator, slug=slug, name=slug, owner=owner)
    demo = document.parse(ACME.read_text())
    started = time.perf_counter()
    root_only = {**document.to_dict(demo), "organization": {"slug": slug, "name": slug}}
    root_only.pop("teams", None)
    policy_apply(organization=org, wanted=document.from_dict(root_only), actor=operator)
    groups: list[str] = []
    group = 0
    while len(groups) * (1 + len(demo.teams)) < teams_wanted:
        groups.append(f"g{group:05d}")
        group += 1
    tops = Team.objects.bulk_create(
        [Team(organization=org, slug=g, path=g, name=f"Group {g}") for g in groups]
    )
    rows: list[Team] = list(tops)
    by_path = {t.path: t for t in tops}
    for depth in range(1, 17):
        level = []
        for top in tops:
            for path in sorted(demo.teams):
                if path.count("/") + 1 != depth:
                    continue
                above = f"{top.path}/{path.rsplit('/', 1)[0]}" if "/" in path else top.path
                level.append(
                    Team(
                        organization=org,
                        parent=by_path[above],
                        slug=path.rsplit("/", 1)[-1],
                        path=f"{top.path}/{path}",
                        name=path,
                    )
                )
        if not level:
            break
        made = Team.objects.bulk_create(level)
        by_path.update({t.path: t for t in made})
        rows += made
    teams = rows[:teams_wanted]
    print(f"  {slug}: {len(rows):,} teams in {time.perf_counter() - started:.1f} s", flush=True)

    started = time.perf_counter()
    run = publish_run_create(organization=org, actor=operator)
    assert publish_run_execute(run_id=run.pk) is not None
    print(f"  {slug}: published in {time.perf_counter() - started:.1f} s", flush=True)

    started = time.perf_counter()
    now = timezone.now()
    tokens = EnrollmentToken.objects.bulk_create(
        [
            EnrollmentToken(
                organization=org,
                team=team,
                prefix=f"phe_{i:07d}"[:12],
                token_hash=uuid.uuid4().hex * 2,
                expires_at=now + timedelta(days=7),
            )
            for i, team in enumerate(teams[: max(1, len(teams) // 10)])
        ]
    )
    batch = []
    for i in range(devices_wanted):
        team = teams[i % len(teams)]
        kind = i % 5
        batch.append(
            Device(
                organization=org,
                team=team,
                credential_hash=uuid.uuid4().hex * 2,
                hostname=f"host-{i}",
                last_seen_at=None if kind == 0 else now - timedelta(hours=1 if kind != 4 else 48),
                revision_served=1 if kind in (1, 2) else None,
                reported_at=now if kind == 3 else None,
                applied_revision=1 if kind == 3 else None,
                errors=["codex refused"] if kind == 3 and i % 2 else [],
                codex_version=CODEX_VERSIONS[i % len(CODEX_VERSIONS)],
            )
        )
        if len(batch) == 5000:
            Device.objects.bulk_create(batch)
            batch = []
    Device.objects.bulk_create(batch)
    print(
        f"  {slug}: {devices_wanted:,} devices, {len(tokens):,} enrolment tokens in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    for i in range(max(2, len(teams) // 200)):
        user = User.objects.create_user(f"{slug}-viewer-{i}", f"v{i}@{slug}.example")
        membership_grant(actor=operator, organization=org, user=user, role=Role.VIEWER)
        invitation_create(
            actor=operator, organization=org, email=f"i{i}@{slug}.example", role=Role.VIEWER
        )
        change_set_create(
            actor=Actor.for_user(owner),
            organization=org,
            document_text=document.dump(demo).replace("acme", slug),
            title=f"change {i}",
        )
    _, secret = api_token_create(
        actor=Actor.for_user(owner), organization=org, name="bench", role=Role.OWNER
    )
    return secret


def measure(slug: str, secret: str, repeat: int) -> dict[tuple[str, str], tuple[float, float, int]]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_HOST="127.0.0.1")
    out = {}
    for name, path, query in LISTS:
        url = path if path.startswith("/") else f"/api/v1/orgs/{slug}/{path}"
        pages = [("first page", "")] + ([(f"?{query}", query)] if query else [])
        for label, qs in pages:
            times = []
            count = 0
            for _ in range(repeat):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    answer = client.get(url, QUERY_STRING=qs)
                    times.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"{url}?{qs}: {answer.status_code} {answer.content[:300]!r}")
                count = len(queries)
            times.sort()
            out[(f"{name}", label)] = (
                statistics.median(times),
                times[int(len(times) * 0.9) - 1],
                count,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--teams", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    database_recreate(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    print("setup:", flush=True)
    large = build("large", args.teams, args.devices)
    small = build("small", max(1, args.teams // 100), max(1, args.devices // 100))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    big, little = measure("large", large, args.repeat), measure("small", small, args.repeat)
    print(
        f"\n{'list':<18} {'page':<30} {'median ms':>10} {'p90 ms':>8} {'queries':>8} "
        f"{'(small org)':>12}"
    )
    failures = []
    for key, (median, p90, count) in big.items():
        small_count = little[key][2]
        print(f"{key[0]:<18} {key[1]:<30} {median:>10.1f} {p90:>8.1f} {count:>8} {small_count:>12}")
        if median >= 300:
            failures.append(f"{key}: median {median:.0f} ms")
        if count != small_count:
            failures.append(f"{key}: {count} queries at scale, {small_count} small")
    print("\nverdict:", "PASS" if not failures else "FAIL: " + "; ".join(failures))


if __name__ == "__main__":
    main()
