"""Benchmark: device fetches under load, against the framework floor and nginx; per-worker memory.

    .venv/bin/python bench/fetch.py [--devices 10000] [--sample 100000] [--duration 10]
                                    [--connections 64] [--server gunicorn|granian|both]
                                    [--rounds 1] [--memory|--no-memory] [--seed-only]
                                    [--gunicorn-workers 4] [--granian-workers 2]
                                    [--granian-threads 2] [--nginx-workers 1] [--wrk-threads 1]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres), wrk and nginx; granian for --server granian
or both (`.venv/bin/pip install granian`). Recreates the database `policyhub_bench`, seeds the
demo organisation (first release of its 9 teams) and its devices, spread over the teams: the
first 10,000 enrolled through `device_enroll` (about 80 a second), the rest written meanwhile
with COPY, in a process of its own and with enrolment tokens of their own, as `device_enroll`
writes fleet_device (a column the bench does not know gets the model's default, NULL when
nullable; a device of each kind is compared afterwards and any other difference is printed).
A million devices take about two minutes; --seed-only stops there. Starts the servers on loopback with the
production settings plus the floor views of bench/fetch_urls.py (gunicorn with sync workers
and/or granian in WSGI mode, and nginx), has every worker look up the devices wrk will use, then
runs wrk (one thread unless --wrk-threads says otherwise, a random device per request, drawn from a random sample of --sample
enrolled devices, or all of them when there are fewer) against:

* the native channel (credential in the path) and the agent channel (Bearer header), each as a
  revalidation (If-None-Match with the team's ETag -> 304) and as a full fetch (200);
* the framework floor: a bare Django view through the same middleware, as a 304 and as a 200
  whose body is an agent bundle;
* nginx serving that agent bundle from a file (200, and 304 with nginx's own ETag).

Each endpoint runs on each server in turn (warm-up, then the measured run), so that load from
other processes on the machine hits both servers alike; the share of the CPU the server, wrk,
PostgreSQL and everything else used is printed with each run. Every response is checked by
wrk's Lua hooks: one unexpected status (a 401, say) breaks the benchmark (exit status 1).
Targets (a MISS is a measurement, exit status 0): an authenticated 304 at >= 0.9x the floor 304,
>= 5,000 req/s and p99 < 25 ms at 64 connections; an authenticated 200 at >= 0.8x the floor 200
and >= 3,000 req/s. Afterwards the fetch counts the servers wrote behind (fleet_device.fetch_count)
are compared with the fetches made, including a few made right before each server's SIGTERM.

Memory (--memory; on by default from 100,000 devices, where the delivery cache's size shows,
off below, which saves a server start per server): before each server is started for the runs,
the same server is started with DELIVERY_CACHE=0 (a fetch then reads PostgreSQL and nothing is
kept), a few requests reach each of its workers, and their memory is the idle worker's. The
workers of the real server are measured after every one of them has looked up the sample and
again after all the runs. A worker is a child of the server's main process (gunicorn's arbiter,
granian's main process); its RSS comes from /proc/<pid>/status, its PSS (each shared page
divided among the processes that map it) and USS (its private pages, Private_Clean +
Private_Dirty) from /proc/<pid>/smaps_rollup. Printed in MB (2^20 bytes) per worker, with the
delta: the larger of after fill and after runs, minus the mean of the idle workers. Target (a
MISS is a measurement): each worker's USS < 100 MB above an idle worker's, USS because it is
what every further worker adds (pages shared among the workers count in their RSS and PSS).

Worker counts, for 2 cores: gunicorn 4 sync workers, as docker/Dockerfile runs it (2 to 4 measure
alike: a sync worker serves one connection at a time and closes it, so the kernel's handshakes,
not the worker count, bound it); granian 2 workers (one per core) with 2 blocking threads each,
which measured ahead of 2x1 and 3x1. Ports 18401-18403; every server is stopped (SIGTERM, then
SIGKILL to what is left of its session) when the run ends or fails.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import logging
import math
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
DATABASE = "policyhub_bench"
DATABASE_URL = f"postgres://postgres@{HOST}:5432/{DATABASE}"
PORTS = {"gunicorn": 18401, "granian": 18402, "nginx": 18403}
ORGANIZATION = "acme"
# One wrk thread: on 2 cores a second one only takes CPU from the server it measures. With two,
# nginx answered 64,000-75,000 req/s and the fetches' p99 was 26-42 ms; with one, nginx answered
# 90,000 (one thread keeps up with every server here) and the fetches' p99 was 18-25 ms.
WRK_THREADS = 1
WARMUP_SECONDS = 2
# Devices enrolled through device_enroll, the real path (about 80 a second); the rest are written
# with COPY, as device_enroll would write them.
ENROLLED_THROUGH_SERVICE = 10_000
# From this many devices on, per-worker memory is measured unless --no-memory says otherwise.
MEMORY_DEVICES = 100_000
# The target: a loaded worker's USS at most this many MB above an idle worker's.
MEMORY_TARGET_MB = 100
# How long every worker may take to look up the sample (the first fill may wait for the cache).
FILL_TIMEOUT = 900
# Fetches made right before each server is stopped, to see their counts written at its exit.
STOP_FETCHES = 200
# A run during which other processes took more of the machine than this is flagged as noisy.
NOISY_SHARE = 0.10
# The environment of this process and of the servers: production settings, the bench database,
# no Redis (publishing runs in-process), plain HTTP on loopback.
SERVER_ENV = {
    "DATABASE_URL": DATABASE_URL,
    "SECRET_KEY": "bench-only",
    "SECURE_SSL_REDIRECT": "0",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
}
os.environ.update(SERVER_ENV)
os.environ.pop("REDIS_URL", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "policyhub.settings"


class BenchError(Exception):
    """Something broke: the numbers would mean nothing."""


# Setup ------------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """The enrolled devices wrk draws from: a random sample of them, with their credentials."""

    devices: int  # enrolled in all
    credentials: list[str]  # the sample's
    etags: list[str]  # quoted, as the ETag header carries it
    teams: list[str]
    agent_bodies: dict[str, bytes]  # team path -> agent body of its current release


def database_recreate() -> None:
    for command in (
        ["dropdb", "--if-exists", "--force", "-h", HOST, "-U", "postgres", DATABASE],
        ["createdb", "-h", HOST, "-U", "postgres", DATABASE],
    ):
        subprocess.run(command, check=True)


def seed(devices: int, sample: int) -> Fleet:
    """The demo organisation and `devices` devices spread over its teams: the first
    ENROLLED_THROUGH_SERVICE through device_enroll, the rest written with COPY."""
    started = time.perf_counter()
    database_recreate()
    django.setup()
    logging.getLogger("celery").setLevel(logging.WARNING)
    logging.getLogger("kombu").setLevel(logging.ERROR)
    from django.core.management import call_command
    from django.db import connections, transaction

    from policyhub.accounts.models import Organization
    from policyhub.actors import Actor
    from policyhub.fleet.services import device_enroll, enrollment_token_create
    from policyhub.releases.models import Release
    from policyhub.teams.models import Team

    call_command("migrate", verbosity=0)
    call_command("seed_demo", stdout=io.StringIO())
    org = Organization.objects.get(slug=ORGANIZATION)
    releases = {r.team_path: r for r in Release.objects.filter(organization=org, current=True)}
    paths = sorted(Team.objects.filter(organization=org).values_list("path", flat=True))
    if not paths or set(paths) != set(releases):
        raise BenchError(f"seed_demo left teams {paths} with releases for {sorted(releases)}")
    print(
        f"setup: database {DATABASE} recreated, migrated and demo seeded in "
        f"{time.perf_counter() - started:.1f} s"
    )

    seeding = started = time.perf_counter()
    tokens = {
        path: enrollment_token_create(
            organization=org, team_path=path, actor=Actor.operator("bench")
        )
        for path in paths
    }
    kept = set(random.sample(range(devices), min(sample, devices)))
    credentials: dict[int, str] = {}
    enrolled = min(devices, ENROLLED_THROUGH_SERVICE)
    copying = None
    # The COPY runs in a process of its own alongside the enrolments (each keeps about a core
    # busy), with tokens of its own: device_enroll locks its token's row (FOR UPDATE), which the
    # COPY's foreign key checks would wait for.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        if devices > enrolled:
            bulk = [
                enrollment_token_create(
                    organization=org, team_path=path, note="bulk", actor=Actor.operator("bench")
                )[0]
                for path in paths
            ]
            connections.close_all()  # the forked process opens its own
            teams = [(token.team_id, token.pk) for token in bulk]
            bulk_kept = {i for i in kept if i >= enrolled}
            copying = pool.submit(devices_copy, org.pk, teams, enrolled, devices, bulk_kept)
        # One process enrols: device_enroll holds the organisation's audit chain head until it
        # commits, so enrolments in one organisation run one at a time anyway.
        for batch in range(0, enrolled, 1000):
            with transaction.atomic():
                for i in range(batch, min(batch + 1000, enrolled)):
                    secret = tokens[paths[i % len(paths)]][1]
                    credential = device_enroll(token_secret=secret, hostname=f"bench-{i}")[1]
                    if i in kept:
                        credentials[i] = credential
        took = time.perf_counter() - started
        print(
            f"setup: {enrolled:,} devices enrolled through device_enroll over {len(paths)} teams "
            f"in {took:.1f} s ({enrolled / took:,.0f}/s, 1,000 a transaction"
            f"{', alongside the COPY' if copying else ''})"
        )
        if copying is not None:
            found, took = copying.result()
            credentials.update(found)
            print(
                f"setup: {devices - enrolled:,} more devices written with COPY in {took:.1f} s "
                f"({(devices - enrolled) / took:,.0f}/s, one transaction, then VACUUM)"
            )
            bulk_check("bench-0", f"bench-{enrolled}")
    print(f"setup: {devices:,} devices seeded in {time.perf_counter() - seeding:.1f} s")

    etags = {path: f'"{release.etag}"' for path, release in releases.items()}
    fleet = Fleet(devices, [], [], [], {p: r.agent_body.encode() for p, r in releases.items()})
    for i in sorted(credentials):
        path = paths[i % len(paths)]
        fleet.credentials.append(credentials[i])
        fleet.etags.append(etags[path])
        fleet.teams.append(path)
    return fleet


# What device_enroll writes besides the model's defaults, the same for every device it enrols
# without an os or codex_version (the bench's); enrolled_at is set on writing.
ENROLL_GIVES = {"os": "", "codex_version": ""}
# Written per device by devices_copy.
PER_DEVICE = ("team", "credential_hash", "fetch_credential_hash", "hostname", "enrolled_with")


def devices_copy(
    organization_id: int, teams: list[tuple[int, int]], start: int, stop: int, kept: set[int]
) -> tuple[dict[int, str], float]:
    """Devices start..stop-1, as device_enroll would write them, with COPY in one transaction:
    device i in team i % len(teams) (a (team id, enrolment token id) pair), named bench-<i>.
    Returns the credentials of the devices in `kept`, and the seconds it took. The columns are
    the model's concrete fields: one this does not know gets the model's default (NULL for a
    nullable one without a default), as in device_enroll's Device(...) when it does not set it
    either."""
    from django.db import connection, transaction
    from django.db.models import F
    from django.utils import timezone
    from psycopg import sql

    from policyhub import credentials
    from policyhub.fleet.models import Device, EnrollmentToken, codex_sort_key

    started = time.perf_counter()
    now = timezone.now()
    given: dict[str, Any] = {
        **ENROLL_GIVES,
        "organization": organization_id,
        "codex_sort_key": codex_sort_key(ENROLL_GIVES["codex_version"]),
    }
    per_row = []  # a unique column with a default (the primary key): a fresh value per device
    constant = []
    for model_field in Device._meta.concrete_fields:
        if model_field.name in PER_DEVICE:
            continue
        if model_field.name in given:
            value = given[model_field.name]
        elif getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False):
            value = now
        elif model_field.unique and model_field.has_default():
            per_row.append(model_field)
            continue
        else:
            value = model_field.get_default()
        constant.append((model_field, model_field.get_db_prep_save(value, connection)))
    by_name = {f.name: f for f in Device._meta.concrete_fields}
    columns = [
        *(f.column for f in per_row),
        *(by_name[name].column for name in PER_DEVICE),
        *(f.column for f, _ in constant),
    ]
    values = tuple(value for _, value in constant)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(Device._meta.db_table),
        sql.SQL(", ").join(sql.Identifier(str(c)) for c in columns),
    )
    found: dict[int, str] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(statement) as copy:
            for i in range(start, stop):
                team, token = teams[i % len(teams)]
                secret = credentials.new_secret(credentials.DEVICE_PREFIX)
                defaults = (f.get_db_prep_save(f.get_default(), connection) for f in per_row)
                fetch_hash = credentials.secret_hash(credentials.fetch_credential(secret))
                row = (team, credentials.secret_hash(secret), fetch_hash, f"bench-{i}", token)
                copy.write_row((*defaults, *row, *values))
                if i in kept:
                    found[i] = secret
        # device_enroll counts each use of a token.
        for k, (_team, token) in enumerate(teams):
            uses = len(range(k, stop, len(teams))) - len(range(k, start, len(teams)))
            EnrollmentToken.objects.filter(pk=token).update(uses=F("uses") + uses)
    # Outside the transaction: what autovacuum would otherwise do to the new rows during the runs.
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(Device._meta.db_table)))
    return found, time.perf_counter() - started


def bulk_check(enrolled: str, copied: str) -> None:
    """Compare a device device_enroll wrote with one devices_copy wrote (by hostname): a column
    that is not per device yet differs is one devices_copy does not know (a column added since,
    which device_enroll fills in, say): warn."""
    from policyhub.fleet.models import Device

    per_device = {
        f.attname
        for f in Device._meta.concrete_fields
        if f.primary_key
        or f.name in PER_DEVICE
        or getattr(f, "auto_now", False)
        or getattr(f, "auto_now_add", False)
    }
    found = Device.objects.filter(hostname__in=[enrolled, copied]).values()
    rows: dict[str, dict[str, Any]] = {row["hostname"]: dict(row) for row in found}
    differ = [
        f"{name} ({repr(value)[:24]} vs {repr(rows[copied][name])[:24]})"
        for name, value in rows[enrolled].items()
        if name not in per_device and rows[copied][name] != value
    ]
    if differ:
        print(
            "warning: devices written with COPY differ from device_enroll's (its value vs "
            f"COPY's) in {', '.join(differ)}"
        )


def fetch_count_total() -> int:
    from django.db import connections
    from django.db.models import Sum

    from policyhub.fleet.models import Device

    connections.close_all()
    return Device.objects.aggregate(total=Sum("fetch_count"))["total"] or 0


# Processes --------------------------------------------------------------------------------------


def port_check(port: int) -> None:
    """Nothing listens there (connections of an earlier run lingering in TIME_WAIT are fine)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as error:
            raise BenchError(f"port {HOST}:{port} is in use ({error})") from None


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


class Server:
    """One server process and its workers, in a session of its own (so Ctrl-C reaches only
    this script, which then stops the server gracefully)."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path, probe: str) -> None:
        self.name, self.argv, self.port, self.log, self.probe = name, argv, port, log, probe
        self.process: subprocess.Popen[bytes] | None = None
        self.workers = 1
        self.setup = ""

    @property
    def session(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, env: dict[str, str]) -> None:
        port_check(self.port)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                if http_get(self.port, self.probe)[0] < 500:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"{self.name} did not answer within 60 s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (graceful: workers finish and write their last fetch counts); SIGKILL to
        whatever is left of its session after 30 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"warning: {self.name} ignored SIGTERM for 30 s", file=sys.stderr)
        with suppress(ProcessLookupError):  # no worker may outlive its master
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@contextmanager
def running(server: Server, env: dict[str, str]) -> Iterator[Server]:
    try:
        server.start(env)
        yield server
    finally:
        server.stop()


def django_env(body_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(SERVER_ENV)
    env["DJANGO_SETTINGS_MODULE"] = "bench.fetch_settings"
    env["POLICYHUB_BENCH_FLOOR_BODY"] = str(body_file)
    env["POLICYHUB_BENCH_DEVICES"] = str(body_file.parent / "devices.txt")
    env["PYTHONPATH"] = str(ROOT)
    return env


def gunicorn(workers: int, work: Path) -> Server:
    argv = [
        *(str(Path(sys.executable).parent / "gunicorn"), "policyhub.wsgi:application"),
        *("--bind", f"{HOST}:{PORTS['gunicorn']}", "--workers", str(workers)),
        *("--worker-class", "sync", "--log-level", "warning"),
    ]
    server = Server("gunicorn", argv, PORTS["gunicorn"], work / "gunicorn.log", "/floor/304")
    server.workers, server.setup = workers, f"{workers} sync workers"
    return server


def granian(workers: int, threads: int, work: Path) -> Server:
    argv = [
        *(str(Path(sys.executable).parent / "granian"), "--interface", "wsgi", "--http", "1"),
        *("--host", HOST, "--port", str(PORTS["granian"]), "--workers", str(workers)),
        *("--blocking-threads", str(threads), "--runtime-threads", "1", "--no-ws"),
        *("--log-level", "warning", "policyhub.wsgi:application"),
    ]
    server = Server("granian", argv, PORTS["granian"], work / "granian.log", "/floor/304")
    server.workers = workers
    server.setup = f"{workers} workers x {threads} blocking thread{'s' * (threads > 1)}"
    return server


def nginx(workers: int, directory: Path, body: Path) -> Server:
    for sub in ("tmp", "www"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(body, directory / "www" / "bundle.json")
    # Started as root, nginx's workers run as nobody: they must reach and read the file (and
    # only that: the work directory, with the credentials, stays unlistable).
    directory.parent.chmod(0o711)
    for path in (directory, directory / "www", directory / "www/bundle.json"):
        path.chmod(0o755)
    temp = "\n    ".join(
        f"{kind}_temp_path {directory / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        f"""daemon off;
worker_processes {workers};
pid {directory / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    {temp}
    server {{
        listen {HOST}:{PORTS["nginx"]};
        root {directory / "www"};
        default_type application/json;
        add_header Cache-Control "private, no-cache";
    }}
}}
"""
    )
    argv = [
        shutil.which("nginx") or "nginx",
        "-p",
        str(directory),
        "-c",
        str(directory / "nginx.conf"),
        "-e",
        "stderr",
    ]
    server = Server("nginx", argv, PORTS["nginx"], directory / "nginx.log", "/bundle.json")
    server.workers, server.setup = workers, f"{workers} worker process{'es' * (workers > 1)}"
    return server


def cache_answer(server: Server, path: str) -> dict[str, Any] | None:
    """A worker's answer on /floor/cache; None while its listener is not connected yet."""
    status, _headers, body = http_get(server.port, path)
    if status == 503:
        return None
    if status != 200:
        raise BenchError(f"{server.name} {path} answered {status}: {body[:200]!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


def cache_stats(stats: dict[str, Any]) -> str:
    def shown(key: str, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool) and key != "pid":
            return f"{value:,}"
        return json.dumps(value)

    return ", ".join(f"{key} {shown(key, value)}" for key, value in stats.items())


def caches_fill(server: Server, sample: int) -> dict[int, dict[str, Any]]:
    """Have every worker look up every device of the sample and its team: concurrent requests,
    so that a worker busy filling leaves the next connection to another, until every worker
    has answered the fill for the whole sample. Returns what each worker's cache then says of
    itself (worker pid -> its stats)."""
    answers: dict[int, dict[str, Any]] = {}
    started = time.perf_counter()
    deadline = time.monotonic() + FILL_TIMEOUT
    with ThreadPoolExecutor(server.workers * 2) as pool:
        while True:
            found = list(
                pool.map(
                    lambda _: cache_answer(server, "/floor/cache?fill=1"), range(server.workers * 2)
                )
            )
            for answer in found:
                if answer is not None:
                    answers[answer["pid"]] = answer
            workers = worker_pids(server)
            if len(workers) >= server.workers and all(
                answers.get(pid, {}).get("complete") for pid in workers
            ):
                break
            if time.monotonic() > deadline:
                progress = {pid: answers.get(pid, {}).get("filled") for pid in workers}
                raise BenchError(
                    f"{server.name} workers did not look up the {sample:,} sampled devices in "
                    f"{FILL_TIMEOUT} s: {progress} (pid: devices looked up)"
                )
            if None in found:
                time.sleep(1)  # a listener still connecting
    stats = {pid: answers[pid]["cache"] for pid in workers}
    print(
        f"  {len(workers)} workers looked up the {sample:,} sampled devices and their teams in "
        f"{time.perf_counter() - started:.1f} s; what their caches say of themselves:"
    )
    for pid, said in stats.items():
        print(f"    worker {pid}: {cache_stats(said)}")
    return stats


def caches_check(server: Server, filled: dict[int, dict[str, Any]]) -> None:
    """After the runs every worker should hold what it held after the fill (no invalidation, no
    expiry meanwhile): warn of a count that went down, or of a worker that was replaced."""
    seen: dict[int, dict[str, Any]] = {}
    workers = set(worker_pids(server))
    for _ in range(server.workers * 20):
        answer = cache_answer(server, "/floor/cache")
        if answer is not None:
            seen[answer["pid"]] = answer["cache"]
        if workers <= seen.keys():
            break
    for pid in sorted(workers):
        before, after = filled.get(pid), seen.get(pid)
        if before is None:
            print(f"warning: {server.name} worker {pid} was not there after the fill")
            continue
        if after is None:
            continue  # not reached: nothing to say
        lower = {
            key: f"{value:,} -> {after.get(key)}"
            for key, value in before.items()
            if isinstance(value, int) and isinstance(after.get(key), int) and after[key] < value
        }
        if lower:
            print(f"warning: {server.name} worker {pid} holds less after the runs: {lower}")


# Memory -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """One process's memory, in kB: resident (RSS), proportional (PSS: each shared page divided
    among the processes that map it) and unique (USS: its private pages)."""

    rss: int
    pss: int
    uss: int


@dataclass
class ServerMemory:
    idle: list[Memory]  # the workers of the same server started with DELIVERY_CACHE=0
    after_fill: dict[int, Memory] = field(default_factory=dict)  # worker pid -> its memory
    after_runs: dict[int, Memory] = field(default_factory=dict)


def memory_of(pid: int) -> Memory | None:
    """None when the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None

    def kb(text: str, name: str) -> int:
        match = re.search(rf"^{name}:\s+(\d+) kB$", text, re.MULTILINE)
        if match is None:
            raise BenchError(f"no {name} in /proc/{pid}")
        return int(match.group(1))

    return Memory(
        kb(status, "VmRSS"),
        kb(rollup, "Pss"),
        kb(rollup, "Private_Clean") + kb(rollup, "Private_Dirty"),
    )


def worker_pids(server: Server) -> list[int]:
    """The server's workers: the children of its main process (gunicorn's arbiter, granian's
    main process)."""
    return sorted(
        pid for pid, (_command, parent, _fields) in processes().items() if parent == server.session
    )


def workers_memory(server: Server) -> dict[int, Memory]:
    found = {pid: memory_of(pid) for pid in worker_pids(server)}
    return {pid: memory for pid, memory in found.items() if memory is not None}


def idle_memory(server: Server, env: dict[str, str]) -> list[Memory]:
    """The memory of an idle worker: the same server, started with DELIVERY_CACHE=0 (a fetch
    then reads PostgreSQL and nothing is kept), after a few requests have reached every worker
    (its first request imports the views); stopped afterwards."""
    idle = Server(
        server.name,
        server.argv,
        server.port,
        server.log.with_name(f"{server.name}-idle.log"),
        server.probe,
    )
    idle.workers = server.workers
    with running(idle, {**env, "DELIVERY_CACHE": "0"}):
        answered: set[int] = set()
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(idle.workers * 2) as pool:
            while True:
                for status, _headers, _body in pool.map(
                    lambda _: http_get(idle.port, "/floor/304"), range(idle.workers * 2)
                ):
                    if status != 304:
                        raise BenchError(f"idle {idle.name}: /floor/304 answered {status}")
                for answer in pool.map(
                    lambda _: cache_answer(idle, "/floor/cache"), range(idle.workers * 2)
                ):
                    if answer is not None:
                        answered.add(answer["pid"])
                workers = worker_pids(idle)
                if len(workers) >= idle.workers and answered >= set(workers):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"idle {idle.name}: requests reached workers {sorted(answered)} of "
                        f"{workers} within 60 s"
                    )
        found = workers_memory(idle)
    if not found:
        raise BenchError(f"idle {idle.name}: no worker to measure")
    print(
        f"{idle.name}: idle workers (same server, DELIVERY_CACHE=0): "
        + "; ".join(f"{pid} {memory_text(m)}" for pid, m in found.items())
    )
    return list(found.values())


def memory_text(memory: Memory) -> str:
    return f"RSS {mb(memory.rss)} PSS {mb(memory.pss)} USS {mb(memory.uss)} MB"


def mb(kb: float) -> str:
    return f"{kb / 1024:,.1f}"


# CPU accounting ---------------------------------------------------------------------------------


def machine_cpu() -> tuple[int, int]:
    """CPU time the machine spent busy (interrupts excluded: loopback traffic is ours) and in
    all, so far, in clock ticks over all cores."""
    ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks) - sum(ticks[3:7]), sum(ticks)  # minus idle, iowait, irq, softirq


def processes() -> dict[int, tuple[str, int, list[str]]]:
    """Every live process: pid -> (command, parent pid, the fields of /proc/<pid>/stat after
    the command: fields[0] is stat(5)'s field 3, the state)."""
    found: dict[int, tuple[str, int, list[str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        command, _, rest = text.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        found[int(stat.parent.name)] = (command, int(fields[1]), fields)
    return found


def processes_cpu(session: int) -> tuple[int, int]:
    """CPU time so far, in clock ticks, of the live processes of `session` and of PostgreSQL
    (live processes, plus what its exited backends used, which the postmaster collected)."""
    ours = postgres = 0
    commands = processes()
    for command, parent, fields in commands.values():
        used = int(fields[11]) + int(fields[12])  # utime + stime
        if int(fields[3]) == session:
            ours += used
        elif command == "postgres":
            postgres += used
            if commands.get(parent, ("",))[0] != "postgres":  # the postmaster
                postgres += int(fields[13]) + int(fields[14])  # cutime + cstime
    return ours, postgres


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * os.sysconf("SC_CLK_TCK")


# wrk --------------------------------------------------------------------------------------------


LUA = """-- generated by bench/fetch.py
-- { {credential, quoted etag, fetch credential}, ... }, from lines of the three: a table literal
-- of a large sample would hold more constants than LuaJIT allows in one chunk.
local devices = {}
for line in io.lines(%(devices)s) do
  local credential, etag, fetch = line:match("^(%%S+) (%%S+) (%%S+)$")
  table.insert(devices, {credential, etag, fetch})
end
local mode, path, conditional = %(mode)s, %(path)s, %(conditional)s
local fixed_etag = %(etag)s
statuses = {}
local prepared, count = {}, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local function prepare(credential, etag, fetch)
  local headers, target = {}, path
  if mode == "native" then  -- Codex's URL carries the fetch-only credential
    target = "/config-server/" .. fetch .. "/codex/config/bundle"
  elseif mode == "agent" or mode == "floor" then
    headers["Authorization"] = "Bearer " .. credential
  end
  if conditional then headers["If-None-Match"] = fixed_etag or etag end
  return wrk.format("GET", target, headers)
end

function init(args)
  math.randomseed(os.time() * 100 + thread_number)
  if mode == "nginx" then
    prepared[1] = prepare(nil, nil)
  else
    for i, device in ipairs(devices) do prepared[i] = prepare(device[1], device[2], device[3]) end
  end
  count = #prepared
end

function request()
  return prepared[math.random(count)]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + n end
  end
  for status, n in pairs(total) do io.write(string.format("STATUS %%d %%d\\n", status, n)) end
end
"""


@dataclass(frozen=True)
class Target:
    """One kind of request wrk sends."""

    label: str  # e.g. "agent 304"
    mode: str  # native, agent, floor or nginx
    path: str
    expected: int  # the only status a response may have
    etag: str | None = None  # nginx: its one If-None-Match

    @property
    def kind(self) -> str:
        return str(self.expected)

    @property
    def counted(self) -> bool:
        """Whether the server records these requests as fetches."""
        return self.mode in ("native", "agent")


@dataclass
class Result:
    target: Target
    rps: float
    p99_ms: float
    requests: int
    # Shares of the machine's CPU during the run: the server, wrk, PostgreSQL, and all else.
    server: float
    wrk: float
    postgres: float
    others: float
    socket_errors: dict[str, int] = field(default_factory=dict)


_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def lua_string(value: str | None) -> str:
    return "nil" if value is None else json.dumps(value)  # ASCII only: a Lua literal too


def devices_file(fleet: Fleet, path: Path) -> None:
    """The sample, a device a line: its credential, its team's quoted ETag and its fetch
    credential (wrk's script reads all three, the fill of bench/fetch_urls.py the first)."""
    from policyhub.credentials import fetch_credential

    path.write_text(
        "".join(
            f"{c} {e} {fetch_credential(c)}\n"
            for c, e in zip(fleet.credentials, fleet.etags, strict=True)
        )
    )
    path.chmod(0o600)


def wrk_run(server: Server, target: Target, seconds: int, connections: int, work: Path) -> Result:
    script = work / f"{target.mode}-{target.expected}.lua"
    script.write_text(
        LUA
        % {
            "devices": lua_string(str(work / "devices.txt")),
            "mode": lua_string(target.mode),
            "path": lua_string(target.path),
            "conditional": "true" if target.expected == 304 else "false",
            "etag": lua_string(target.etag),
        }
    )
    argv = [
        *("wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{seconds}s", "--latency"),
        *("--timeout", "5s", "-s", str(script), f"http://{HOST}:{server.port}{target.path}"),
    ]
    machine, processes, wrk = machine_cpu(), processes_cpu(server.session), children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    busy, total = (b - a for a, b in zip(machine, machine_cpu(), strict=True))
    ours, postgres = (b - a for a, b in zip(processes, processes_cpu(server.session), strict=True))
    wrk = children_cpu() - wrk
    total = total or 1
    out = done.stdout
    where = f"{target.label} on {server.name}"
    if done.returncode != 0:
        raise BenchError(f"wrk failed on {where}: {done.stderr or out}")

    def search(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out, re.MULTILINE)
        if match is None:
            raise BenchError(f"no {pattern!r} in wrk's output for {where}:\n{out}")
        return match

    statuses = {int(s): int(n) for s, n in re.findall(r"^STATUS (\d+) (\d+)$", out, re.MULTILINE)}
    non_2xx_3xx = re.search(r"Non-2xx or 3xx responses: \d+", out)
    if set(statuses) != {target.expected} or non_2xx_3xx:
        raise BenchError(
            f"{where}: expected only {target.expected}, got {statuses or 'no response'}"
            f"{' (' + non_2xx_3xx.group(0) + ')' if non_2xx_3xx else ''}:\n{out}{done.stderr}"
        )
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = (
        {
            kind: int(n)
            for kind, n in zip(
                ("connect", "read", "write", "timeout"), errors.groups(), strict=True
            )
            if int(n)
        }
        if errors
        else {}
    )
    if "connect" in socket_errors or "timeout" in socket_errors:
        raise BenchError(f"{where}: socket errors {socket_errors}:\n{out}")
    p99 = search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$")
    return Result(
        target,
        rps=float(search(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p99_ms=float(p99.group(1)) * _TO_MS[p99.group(2)],
        requests=int(search(r"^\s*(\d+) requests in ").group(1)),
        server=ours / total,
        wrk=wrk / total,
        postgres=postgres / total,
        others=max(0.0, busy - ours - wrk - postgres) / total,
        socket_errors=socket_errors,
    )


# The run ----------------------------------------------------------------------------------------


DJANGO_TARGETS = [
    Target("floor 304", "floor", "/floor/304", 304),
    Target("native 304", "native", "/config-server", 304),
    Target("agent 304", "agent", "/api/v1/device/bundle", 304),
    Target("floor 200", "floor", "/floor/200", 200),
    Target("native 200", "native", "/config-server", 200),
    Target("agent 200", "agent", "/api/v1/device/bundle", 200),
]


def probe_endpoints(server: Server, fleet: Fleet) -> int:
    """One request of each kind by hand, status and ETag checked; returns how many."""
    from policyhub.credentials import fetch_credential

    credential, etag = fleet.credentials[0], fleet.etags[0]
    native = f"/config-server/{fetch_credential(credential)}/codex/config/bundle"
    bearer = {"Authorization": f"Bearer {credential}"}
    checks = [
        (native, {}, 200),
        (native, {"If-None-Match": etag}, 304),
        ("/api/v1/device/bundle", bearer, 200),
        ("/api/v1/device/bundle", {**bearer, "If-None-Match": etag}, 304),
    ]
    for path, headers, expected in checks:
        status, answer, _ = http_get(server.port, path, headers)
        if status != expected or answer["ETag"] != etag:
            raise BenchError(
                f"{server.name} {path.split('/')[1]}: {status} with ETag "
                f"{answer['ETag']}, expected {expected} with {etag}"
            )
    return len(checks)


@dataclass
class Measured:
    results: dict[tuple[str, str], list[Result]]  # (server, endpoint label) -> one per round
    counted: int  # requests the servers should have recorded as fetches
    slack: int  # requests wrk may have sent but stopped waiting for
    recorded: int  # fetch counts in the database after the runs and a wait, servers still up
    # server -> (fetches made right before its SIGTERM, how many of them reached the database)
    at_stop: dict[str, tuple[int, int]]
    memory: dict[str, ServerMemory]  # server -> its workers' memory; empty without --memory


@dataclass
class Summary:
    """One endpoint on one server over the rounds: medians, and means of the CPU shares."""

    target: Target
    rps: float
    p99_ms: float
    spread: float  # (highest - lowest req/s) / median; 0 with one round
    server: float
    wrk: float
    postgres: float
    others: float

    @classmethod
    def of(cls, runs: list[Result]) -> Summary:
        rates = [r.rps for r in runs]
        return cls(
            runs[0].target,
            statistics.median(rates),
            statistics.median(r.p99_ms for r in runs),
            (max(rates) - min(rates)) / statistics.median(rates),
            *(statistics.fmean(getattr(r, a) for r in runs) for a in CPU_SHARES),
        )


CPU_SHARES = ("server", "wrk", "postgres", "others")


def measure(fleet: Fleet, args: argparse.Namespace, work: Path) -> Measured:
    body = work / "floor-body.json"
    web = nginx(args.nginx_workers, work / "nginx", body)
    servers = []
    if args.server in ("gunicorn", "both"):
        servers.append(gunicorn(args.gunicorn_workers, work))
    if args.server in ("granian", "both"):
        servers.append(granian(args.granian_workers, args.granian_threads, work))
    results: dict[tuple[str, str], list[Result]] = {}
    counted = slack = 0
    filled: dict[str, dict[int, dict[str, Any]]] = {}
    memory: dict[str, ServerMemory] = {}

    def run(server: Server, target: Target) -> None:
        nonlocal counted, slack
        warm = wrk_run(server, target, WARMUP_SECONDS, args.connections, work)
        result = wrk_run(server, target, args.duration, args.connections, work)
        results.setdefault((server.name, target.label), []).append(result)
        if target.counted:
            counted += warm.requests + result.requests
            slack += 2 * args.connections
        errors = f"  socket errors: {result.socket_errors}" if result.socket_errors else ""
        print(
            f"  {server.name:<9} {target.label:<11} {result.rps:>9,.0f} req/s  "
            f"p99 {result.p99_ms:6.1f} ms  CPU: {cpu_shares(result)}{errors}"
        )

    with ExitStack() as stack:
        stack.enter_context(running(web, dict(os.environ)))
        status, headers, content = http_get(web.port, "/bundle.json")
        if status != 200 or content != body.read_bytes():
            raise BenchError(f"nginx answered {status} with {len(content)} bytes")
        print(f"nginx: {web.setup} on {HOST}:{web.port}")
        for server in servers:
            if args.memory:
                memory[server.name] = ServerMemory(idle_memory(server, django_env(body)))
            stack.enter_context(running(server, django_env(body)))
            print(f"{server.name}: {server.setup} on {HOST}:{server.port}")
            filled[server.name] = caches_fill(server, len(fleet.credentials))
            if args.memory:
                memory[server.name].after_fill = workers_memory(server)
            counted += probe_endpoints(server, fleet)
        nginx_targets = [
            Target("file 304", "nginx", "/bundle.json", 304, etag=headers["ETag"]),
            Target("file 200", "nginx", "/bundle.json", 200),
        ]
        for round_number in range(1, args.rounds + 1):
            print(
                f"runs{f', round {round_number} of {args.rounds}' if args.rounds > 1 else ''} "
                f"({WARMUP_SECONDS} s warm-up of the same endpoint before each):"
            )
            for target in DJANGO_TARGETS:
                for server in servers:
                    run(server, target)
            for target in nginx_targets:
                run(web, target)
        for server in servers:
            if args.memory:
                memory[server.name].after_runs = workers_memory(server)
            caches_check(server, filled[server.name])
        from django.conf import settings

        time.sleep(settings.DELIVERY_FLUSH_SECONDS + 2)  # the listeners' last batched writes
        recorded = fetch_count_total()
        # Fetches whose counts are still pending when the server is told to stop must be written
        # as its workers exit, not lost.
        at_stop = {}
        for server in servers:
            before = fetch_count_total()
            for credential in fleet.credentials[:STOP_FETCHES]:
                path = f"/config-server/{credential}/codex/config/bundle"
                if http_get(server.port, path)[0] != 200:
                    raise BenchError(f"{server.name} refused a fetch before its stop")
            server.stop()
            at_stop[server.name] = (STOP_FETCHES, fetch_count_total() - before)
    return Measured(results, counted, slack, recorded, at_stop, memory)


def cpu_shares(result: Result) -> str:
    return (
        f"server {result.server:4.0%} wrk {result.wrk:4.0%} "
        f"postgres {result.postgres:4.0%} others {result.others:4.0%}"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(measured: Measured, servers: list[str], args: argparse.Namespace) -> None:
    results = {key: Summary.of(runs) for key, runs in measured.results.items()}
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    sample = min(args.sample, args.devices)
    drawn = f"of a random sample of {sample:,} " if sample < args.devices else ""
    print(
        f"\nwrk -t{WRK_THREADS} -c{args.connections} -d{args.duration}s --latency, "
        f"{args.devices:,} devices, one {drawn}at random per request{rounds}; "
        f"CPU: shares of the machine's {os.cpu_count()} cores during the run"
    )
    header = (
        f"{'server':<9} {'endpoint':<11} {'req/s':>8} {'p99 ms':>7} {'x floor':>7} "
        f"{'x nginx':>7} {'spread':>6} | {'CPU: server':>11} {'wrk':>4} {'pg':>4} {'other':>5}"
    )
    print(header)
    print("-" * len(header))
    rows = [(n, t.label) for n in servers for t in DJANGO_TARGETS]
    for name, label in [*rows, ("nginx", "file 304"), ("nginx", "file 200")]:
        result = results[name, label]
        kind = result.target.kind
        floor = results.get((name, f"floor {kind}"))
        print(
            f"{name:<9} {label:<11} {result.rps:>8,.0f} {result.p99_ms:>7.1f} "
            f"{f'{result.rps / floor.rps:.2f}' if floor else '':>7} "
            f"{result.rps / results['nginx', f'file {kind}'].rps:>7.2f} "
            f"{f'{result.spread:.0%}' if args.rounds > 1 else '':>6} | "
            f"{result.server:>11.0%} {result.wrk:>4.0%} {result.postgres:>4.0%} "
            f"{result.others:>5.0%}"
        )
    noisy = max(r.others for runs in measured.results.values() for r in runs)
    if noisy > NOISY_SHARE:
        print(
            f"noisy: other processes took up to {noisy:.0%} of the CPU during a run; "
            "compare the numbers within this run only"
        )
    if measured.memory:
        memory_table(measured.memory)
    note = (
        ""
        if args.connections == 64
        else f" (p99 target set for 64 connections, not {args.connections})"
    )
    for name in servers:
        print(f"\ntargets, {name}{note}")
        for label in ("native 304", "agent 304", "native 200", "agent 200"):
            result = results[name, label]
            ratio = result.rps / results[name, f"floor {result.target.kind}"].rps
            if result.target.kind == "304":
                checks = [
                    f"{ratio:.2f}x floor >= 0.9 {verdict(ratio >= 0.9)}",
                    f"{result.rps:,.0f} req/s >= 5,000 {verdict(result.rps >= 5000)}",
                    f"p99 {result.p99_ms:.1f} ms < 25 {verdict(result.p99_ms < 25)}",
                ]
            else:
                checks = [
                    f"{ratio:.2f}x floor >= 0.8 {verdict(ratio >= 0.8)}",
                    f"{result.rps:,.0f} req/s >= 3,000 {verdict(result.rps >= 3000)}",
                ]
            print(f"  {label:<11} " + "   ".join(checks))
        if name in measured.memory:
            usage = measured.memory[name]
            workers = usage.after_fill.keys() | usage.after_runs.keys()
            worst = max(memory_delta(usage, pid, "uss") for pid in workers) / 1024
            print(
                f"  {'memory':<11} USS {worst:+,.1f} MB above an idle worker (the largest of "
                f"{len(workers)} workers) < {MEMORY_TARGET_MB} {verdict(worst < MEMORY_TARGET_MB)}"
            )
    if len(servers) == 2:
        first, second = servers
        print(f"\n{second} vs {first}: req/s ratio, p99 ms")
        ratios = {}
        for target in DJANGO_TARGETS:
            a, b = results[first, target.label], results[second, target.label]
            ratios[target.label] = b.rps / a.rps
            print(
                f"  {target.label:<11} {b.rps / a.rps:5.2f}x   p99 {b.p99_ms:6.1f} vs {a.p99_ms:6.1f}"
            )
        fetches = [r for label, r in ratios.items() if not label.startswith("floor")]
        mean = math.exp(statistics.fmean(math.log(r) for r in fetches))
        faster, by = (second, mean) if mean >= 1 else (first, 1 / mean)
        print(f"faster: {faster}, by {by - 1:.0%} (geometric mean over the four fetch endpoints)")
    low, high = measured.counted, measured.counted + measured.slack
    ok = low <= measured.recorded <= high
    print(
        f"\nfetch counts written behind (sum of fleet_device.fetch_count) after the runs: "
        f"{measured.recorded:,};\n  fetches answered per wrk, plus probes: {low:,}, plus up to "
        f"{measured.slack:,} sent as wrk stopped -> {'OK' if ok else 'MISMATCH'}"
    )
    for name, (made, written) in measured.at_stop.items():
        lost = f" -> {made - written} LOST" if written < made else " -> OK"
        print(
            f"  {name}: of {made} fetches made right before its SIGTERM, {written} were counted{lost}"
        )


MEMORY_KINDS = ("rss", "pss", "uss")


def memory_delta(usage: ServerMemory, pid: int, kind: str) -> float:
    """kB a worker holds above an idle worker (the mean of the idle ones): the larger of what it
    held after the fill and after the runs."""
    idle = statistics.fmean(getattr(m, kind) for m in usage.idle)
    loaded = (usage.after_fill.get(pid), usage.after_runs.get(pid))
    return float(max(getattr(m, kind) for m in loaded if m is not None)) - idle


def memory_table(memory: dict[str, ServerMemory]) -> None:
    print(
        "\nmemory per worker, MB: idle is the mean of the workers of the same server started with "
        "DELIVERY_CACHE=0;\ndelta is the larger of after fill and after runs, minus idle"
    )
    header = (
        f"{'server':<9} {'worker':>7} {'':<3} {'idle':>7} {'after fill':>10} {'after runs':>10} "
        f"{'delta':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, usage in memory.items():
        for pid in sorted(usage.after_fill.keys() | usage.after_runs.keys()):
            for line, kind in enumerate(MEMORY_KINDS):
                idle = statistics.fmean(getattr(m, kind) for m in usage.idle)
                fill, runs = (
                    "-" if m is None else mb(getattr(m, kind))
                    for m in (usage.after_fill.get(pid), usage.after_runs.get(pid))
                )
                who = f"{name:<9} {pid:>7}" if line == 0 else " " * 17
                print(
                    f"{who} {kind.upper():<3} {mb(idle):>7} {fill:>10} {runs:>10} "
                    f"{memory_delta(usage, pid, kind) / 1024:>+8,.1f}"
                )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("django", "gunicorn", "granian"):
        with suppress(PackageNotFoundError):
            found.append(f"{package} {version(package)}")
    for argv, pattern in ((["nginx", "-v"], r"nginx/(\S+)"), (["wrk", "-v"], r"wrk (\S+)")):
        run = subprocess.run(argv, capture_output=True, text=True, check=False)
        match = re.search(pattern, run.stdout + run.stderr)
        found.append(f"{argv[0]} {match.group(1) if match else '?'}")
    return f"Python {sys.version.split()[0]}, " + ", ".join(found)


def main() -> None:
    global WRK_THREADS
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--server", choices=["gunicorn", "granian", "both"], default="both")
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument("--granian-workers", type=int, default=2)
    parser.add_argument("--granian-threads", type=int, default=2, help="blocking threads/worker")
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--wrk-threads", type=int, default=WRK_THREADS)
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every endpoint this many times (medians)"
    )
    parser.add_argument(
        "--sample", type=int, default=100_000, help="wrk draws from this many enrolled devices"
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        help=f"measure per-worker memory (default: with --devices >= {MEMORY_DEVICES:,})",
    )
    parser.add_argument("--seed-only", action="store_true", help="seed the database, then stop")
    args = parser.parse_args()
    if min(args.devices, args.duration, args.rounds, args.sample) < 1:
        parser.error("need at least 1 device, 1 second, 1 round and a sample of 1")
    if not 1 <= args.wrk_threads <= args.connections:
        parser.error("need 1 to --connections wrk threads")
    WRK_THREADS = args.wrk_threads
    if args.memory is None:
        args.memory = args.devices >= MEMORY_DEVICES

    for tool in ("wrk", "nginx", *(["granian"] if args.server != "gunicorn" else [])):
        if not (shutil.which(tool) or (Path(sys.executable).parent / tool).exists()):
            parser.error(
                f"{tool} is not installed" + (" (pip install granian)" * (tool == "granian"))
            )
    # SIGTERM ends the run as Ctrl-C does: through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="policyhub-fetch-bench-"))
    try:
        print(versions())
        fleet = seed(args.devices, args.sample)
        if args.seed_only:
            return
        sampled = "all of them" if fleet.devices == len(fleet.credentials) else "a random sample"
        print(
            f"wrk draws from {len(fleet.credentials):,} of the {fleet.devices:,} devices "
            f"({sampled})"
        )
        devices_file(fleet, work / "devices.txt")
        sizes = [len(fleet.agent_bodies[t]) for t in fleet.teams]
        mean = statistics.fmean(sizes)
        team = min(fleet.agent_bodies, key=lambda t: abs(len(fleet.agent_bodies[t]) - mean))
        (work / "floor-body.json").write_bytes(fleet.agent_bodies[team])
        print(
            f"agent bodies {min(sizes):,}-{max(sizes):,} B (mean per device {mean:,.0f} B); "
            f"the floor 200 and nginx serve team {team}'s, {len(fleet.agent_bodies[team]):,} B"
        )
        measured = measure(fleet, args, work)
        servers = [s for s in ("gunicorn", "granian") if args.server in (s, "both")]
        report(measured, servers, args)
    except (BenchError, OSError) as error:
        detail = error if isinstance(error, BenchError) else repr(error)
        print(f"\nBENCHMARK BROKEN: {detail}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
