"""Benchmark: 1,000,000 audit events exported as CSV over HTTP, beside PostgreSQL's own COPY.

    .venv/bin/python bench/audit_export.py [--events 1000000] [--format csv]

Builds one organisation in PostgreSQL (database `policyhub_bench_audit` on 127.0.0.1, recreated,
or DATABASE_URL) with `--events` chained events (bench/trail.py), starts the production server
(granian, one worker, as docker/ runs it) on 127.0.0.1, and downloads the export as an auditor
with an API token, reading it as a client would. In the same run, PostgreSQL's
`COPY (SELECT ...) TO STDOUT WITH CSV` of the same rows and columns. Then fetches the export's
signed manifest and checks the file against it (as `manage.py audit verify-export` does).
Prints rows/s of both, their ratio, the file's size and the server's peak RSS (VmHWM of each
server process: memory must not grow with the export).
Targets (README, "Benchmarks"): peak RSS < 200 MB, at least a quarter of COPY's rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "policyhub.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/policyhub_bench_audit")

import django
from api import database_recreate
from trail import add_audit_events

ROOT = Path(__file__).resolve().parent.parent
HOST, PORT = "127.0.0.1", 8093
RSS_TARGET_MB = 200
RATIO_TARGET = 0.25
COLUMNS = (
    "id, seq, created_at, actor_kind, actor_label, actor_id, action, object_type, object_key,"
    " before, after, reason, source_address, request_id, prev_hash, hash"
)


def build(events: int) -> tuple[int, str]:
    from django.core.management import call_command

    from policyhub.accounts.models import Role
    from policyhub.accounts.services import api_token_create, membership_grant, organization_create
    from policyhub.actors import Actor
    from policyhub.teams.services import team_create

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    owner = users.create_user("owner", "owner@example.com", "bench-owner-pw")
    auditor = users.create_user("auditor", "auditor@example.com", "bench-auditor-pw")
    operator = Actor.operator("bench")
    org = organization_create(actor=operator, slug="big", name="Big", owner=owner)
    membership_grant(actor=operator, organization=org, user=auditor, role=Role.AUDITOR)
    for n in range(100):
        team_create(organization=org, parent=None, slug=f"team-{n:03d}", name=f"Team {n}")
    add_audit_events("big", events)
    _, secret = api_token_create(
        actor=Actor.for_user(auditor), organization=org, name="bench", role=Role.AUDITOR
    )
    return org.pk, secret


def copy_reference(organization_id: int, through: int) -> tuple[int, float, int]:
    """Rows, seconds and bytes of PostgreSQL's COPY of the same rows (those up to the export's
    pin), read by this process."""
    from django.db import connection

    query = (
        f"COPY (SELECT {COLUMNS} FROM audit_auditevent WHERE organization_id = {organization_id}"
        f" AND seq <= {through} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)"
    )
    started = time.perf_counter()
    size = lines = 0
    with connection.cursor() as cursor, cursor.copy(query) as copy:
        for block in copy:
            size += len(block)
            lines += bytes(block).count(b"\n")
    return lines - 1, time.perf_counter() - started, size


def server_start(log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [
        str(Path(sys.executable).parent / "granian"),
        *("--interface", "wsgi", "--http", "1", "--host", HOST, "--port", str(PORT)),
        *("--workers", "1", "--blocking-threads", "1", "--runtime-threads", "1", "--no-ws"),
        *("--log-level", "warning", "--no-access-log", "policyhub.wsgi:application"),
    ]
    server = subprocess.Popen(
        argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, PORT), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()[-2000:]}")


def tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split()
            todo.extend(int(child) for child in children)
    return found


def peak_rss_mb(pids: list[int]) -> dict[int, float]:
    """VmHWM (the peak resident set) of each process, in MB."""
    peaks = {}
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[pid] = int(line.split()[1]) / 1024
    return peaks


def download(url: str, secret: str, target: Path) -> tuple[float, int, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {secret}"})
    started = time.perf_counter()
    size = 0
    with urllib.request.urlopen(request, timeout=600) as answer, target.open("wb") as out:
        headers = {name.lower(): value for name, value in answer.headers.items()}
        while block := answer.read(1 << 20):
            out.write(block)
            size += len(block)
    return time.perf_counter() - started, size, headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--format", default="csv", choices=["csv", "json", "ndjson"])
    args = parser.parse_args()
    os.environ.pop("REDIS_URL", None)  # nothing here is queued
    database_recreate(os.environ["DATABASE_URL"])
    django.setup()
    print("setup:", flush=True)
    organization_id, secret = build(args.events)

    from django.db import connection

    connection.close()
    with tempfile.TemporaryDirectory() as work:
        server = server_start(Path(work) / "server.log")
        try:
            base = f"http://{HOST}:{PORT}/api/v1/orgs/big/audit/export/{args.format}"
            seconds, size, headers = download(base, secret, Path(work) / "export")
            peaks = peak_rss_mb(tree(server.pid))
            link = headers["link"]
            manifest_url = link[1 : link.index(">")]
            started = time.perf_counter()
            request = urllib.request.Request(
                manifest_url, headers={"Authorization": f"Bearer {secret}"}
            )
            with urllib.request.urlopen(request, timeout=600) as answer:
                manifest = json.loads(answer.read())
            manifest_seconds = time.perf_counter() - started
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        (Path(work) / "manifest.json").write_text(json.dumps(manifest))
        from policyhub.exports.manifest import export_verify

        started = time.perf_counter()
        check = export_verify(Path(work) / "export", Path(work) / "manifest.json")
        verify_seconds = time.perf_counter() - started
    rows = manifest["rows"]
    copy_rows, copy_seconds, copy_size = copy_reference(organization_id, manifest["through"])
    ours, theirs = rows / seconds, copy_rows / copy_seconds
    peak = max(peaks.values())
    print(f"\n{rows:,} events exported as {args.format} over HTTP (granian, 1 worker):")
    print(f"  export     {seconds:6.2f} s  {ours:10,.0f} rows/s  {size / 1e6:7.1f} MB")
    print(f"  COPY       {copy_seconds:6.2f} s  {theirs:10,.0f} rows/s  {copy_size / 1e6:7.1f} MB")
    print(f"  ratio      {ours / theirs:.2f} of COPY's rows/s (target >= {RATIO_TARGET})")
    print(
        f"  peak RSS   {peak:.0f} MB of the server's largest process "
        f"({', '.join(f'{mb:.0f}' for mb in peaks.values())} MB; target < {RSS_TARGET_MB})"
    )
    print(f"  manifest   {manifest_seconds:6.2f} s (re-reads the pinned rows, hashes the bytes)")
    print(f"  verify     {verify_seconds:6.2f} s  {check}")
    ok = peak < RSS_TARGET_MB and ours / theirs >= RATIO_TARGET and check.ok
    ok = ok and copy_rows == rows >= args.events
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
