"""Benchmark: every page of the web UI at 10,000 teams, 100,000 devices and 1,000,000 audit
events, beside a small organisation to show the query count does not grow with the data.

    .venv/bin/python bench/pages.py [--teams 10000] [--devices 100000] [--events 1000000]

Builds two organisations in PostgreSQL (database `policyhub_bench_pages` on 127.0.0.1,
recreated, or DATABASE_URL) the way bench/api.py does (teams and devices in bulk, the policy
published by the real publish service), adds the audit events (bench/trail.py, chained as the services chain them), then
requests each page through the whole Django stack in this process as the organisation's owner,
signed in. Prints per page: median and 90th-percentile server time, the query count, the same
at 1% of the size, and the page's size in kB.
Target (README, "Benchmarks"): median under 300 ms, and the same query count at both sizes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/policyhub_bench_pages")

import api
import django
from trail import add_audit_events

# (page, path below /orgs/<slug>/, or from the root); {team}, {device}, {run}, {change_set},
# {slug} and {moment} (when the measuring starts, after the set-up) are filled per org.
PAGES = [
    ("dashboard", ""),
    ("team tree", "teams/"),
    ("team tree, search", "teams/?q=release"),
    ("team tree, with warnings", "teams/?state=warnings"),
    ("team tree, by endpoint", "teams/?endpoint=openai"),
    ("team tree, page 2", "teams/?after={team}"),
    ("team", "teams/{team}/"),
    ("organisation node", "policy/"),
    ("team releases", "releases/{team}/"),
    ("team history, as of", "teams/{team}/-/history/?at={moment}"),
    ("team history, page 2", "teams/{team}/-/history/?after=2"),
    ("endpoints", "endpoints/"),
    ("endpoint", "endpoints/azure-eng/"),
    ("change sets", "changes/"),
    ("change sets, drafts", "changes/?status=draft"),
    ("change set", "changes/{change_set}/"),
    ("change set preview", "changes/{change_set}/preview/"),
    ("publishes", "publishes/"),
    ("publish run", "publishes/{run}/"),
    ("devices", "devices/"),
    ("devices, failing", "devices/?state=failing"),
    ("devices, revoked", "devices/?state=revoked"),
    ("devices, below window", "devices/?codex_window=below"),
    ("devices, of a subtree", "devices/?team={top}"),
    ("devices, hostname", "devices/?q=host-4242"),
    ("device", "devices/{device}/"),
    ("enrolment tokens", "enrolment-tokens/"),
    ("settings", "settings/"),
    ("audit log", "audit/"),
    ("audit log, by actor", "audit/?actor=bench-actor-7"),
    ("audit log, by type", "audit/?object_type=device"),
    ("audit log, by team", "audit/?team={team}"),
    ("audit log, a day", "audit/?since=2026-03-01&until=2026-03-02"),
    # The history API, signed in as for the pages (an absolute path).
    ("API: team as of", "/api/v1/orgs/{slug}/teams/{team}/as-of?at={moment}"),
    ("API: team timeline", "/api/v1/orgs/{slug}/teams/{team}/timeline"),
]


def targets(slug: str) -> dict[str, str]:
    from django.utils import timezone

    from policyhub.changes.models import ChangeSet
    from policyhub.fleet.models import Device
    from policyhub.releases.models import PublishRun
    from policyhub.teams.models import Team

    team = Team.objects.filter(organization__slug=slug, path__endswith="/platform/ci").first()
    assert team is not None
    return {
        "slug": slug,
        "moment": timezone.now().strftime("%Y-%m-%dT%H:%M:%S"),
        "team": team.path,
        "top": team.path.split("/", 1)[0],
        "device": str(Device.objects.filter(organization__slug=slug).order_by("pk").first().pk),  # type: ignore[union-attr]
        "run": str(PublishRun.objects.filter(organization__slug=slug).order_by("pk").first().pk),  # type: ignore[union-attr]
        "change_set": str(
            ChangeSet.objects.filter(organization__slug=slug).order_by("pk").first().pk  # type: ignore[union-attr]
        ),
    }


def measure(slug: str, repeat: int) -> dict[str, tuple[float, float, int, float]]:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username=f"owner-{slug}"))
    fill = targets(slug)
    out = {}
    for name, path in PAGES:
        filled = path.format(**fill)
        url = filled if filled.startswith("/") else f"/orgs/{slug}/{filled}"
        times, count, size = [], 0, 0.0
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                answer = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"{url}: {answer.status_code} {answer.content[:300]!r}")
            count, size = len(queries), len(answer.content) / 1024
        times.sort()
        out[name] = (statistics.median(times), times[int(len(times) * 0.9) - 1], count, size)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--teams", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    api.database_recreate(os.environ["DATABASE_URL"])
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from policyhub.accounts.models import Organization
    from policyhub.fleet.models import Device
    from policyhub.policies.services import policy_checks_refresh

    call_command("migrate", verbosity=0)
    print("setup:", flush=True)
    for slug, scale in (("large", 1), ("small", 100)):
        api.build(slug, max(1, args.teams // scale), max(1, args.devices // scale))
        org = Organization.objects.get(slug=slug)
        # Teams were inserted in bulk, behind the services' back: check them as an apply would.
        policy_checks_refresh(organization=org)
        # Some revoked devices, so the revoked list and the dashboard's count have rows.
        ids = list(
            Device.objects.filter(organization=org).order_by("pk").values_list("pk", flat=True)
        )
        Device.objects.filter(pk__in=ids[::50][:1000]).update(revoked_at=timezone.now())
        add_audit_events(slug, max(1, args.events // scale))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    big, little = measure("large", args.repeat), measure("small", args.repeat)
    print(
        f"\n{'page':<28} {'median ms':>10} {'p90 ms':>8} {'queries':>8} {'(small org)':>12} "
        f"{'kB':>7}"
    )
    failures = []
    for name, (median, p90, count, size) in big.items():
        small_count = little[name][2]
        print(f"{name:<28} {median:>10.1f} {p90:>8.1f} {count:>8} {small_count:>12} {size:>7.1f}")
        if median >= 300:
            failures.append(f"{name}: median {median:.0f} ms")
        if count != small_count:
            failures.append(f"{name}: {count} queries at scale, {small_count} small")
    print("\nverdict:", "PASS" if not failures else "FAIL: " + "; ".join(failures))


if __name__ == "__main__":
    main()
