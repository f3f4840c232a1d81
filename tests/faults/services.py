"""Throw-away PostgreSQL and Redis servers, and Celery workers on them, for the fault tests.

Each server runs on a free loopback port with a data directory of its own, so a test may kill,
stop or restart it while the suite's shared services, and whatever else uses them, carry on.
They are tuned for speed, not durability (no fsync, no Redis persistence): a test that stops
one means "this service went away and came back empty-handed or as it was", never "the disk
kept it".
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.codex.harness import REPO_ROOT

# Debian's and Ubuntu's packages (what `make services` installs) keep the server's programs in a
# folder per major version, off PATH.
DEBIAN_POSTGRES = Path("/usr/lib/postgresql")


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


def postgres_programs() -> Path | None:
    """The folder holding `initdb` and `postgres`: on PATH, else the newest Debian package's."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = [p for p in DEBIAN_POSTGRES.glob("*/bin") if (p / "initdb").exists()]
    versions.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def _unprivileged() -> dict[str, Any]:
    """How to start PostgreSQL's programs: they refuse to run as root, so a root test run starts
    them as the `postgres` account the package created (without root's groups)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


class PostgresServer:
    """A PostgreSQL cluster of its own (superuser `postgres`, trusted on loopback only)."""

    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self.port = free_port()
        # In the system's temp folder: the test run's own temp folders are private to its user,
        # which the postgres account may not enter.
        self.root = Path(tempfile.mkdtemp(prefix="policyhub-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.as_owner = _unprivileged()
        if self.as_owner:
            shutil.chown(self.root, "postgres", "postgres")
        made = subprocess.run(
            [
                str(programs / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            cwd=self.root,
            **self.as_owner,
        )
        if made.returncode:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"initdb failed:\n{made.stderr[-3000:]}")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.programs / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                    # Fast, not durable: the data directory is thrown away after the run.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.root,
                start_new_session=True,
                **self.as_owner,
            )
        wait_until(self.accepts, f"PostgreSQL on port {self.port}")

    def accepts(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited:\n{self.log.read_text()[-3000:]}")
        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """A fast shutdown, as `pg_ctl stop` (and `restart`) does by default: every session is
        ended, its transaction rolled back, and the server exits cleanly."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=60)
        self.process = None

    def restart(self, down: float = 0) -> None:
        """Stop, stay down `down` seconds, start again (pg_ctl restart, with down=0)."""
        self.stop()
        time.sleep(down)
        self.start()

    def sql(self, statement: str, database: str = "postgres") -> None:
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)

    def migrated(self, database: str) -> None:
        """Create `database` and migrate it, in a process of its own as a deployment does."""
        self.sql(f'CREATE DATABASE "{database}"')
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
            cwd=REPO_ROOT,
            env={**os.environ, "DATABASE_URL": self.url(database)},
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"migrating {database} failed:\n{done.stderr[-3000:]}")

    def close(self) -> None:
        with suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A Redis of its own that keeps nothing on disk: stopped, it loses every queued message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="policyhub-faults-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--logfile",
                str(self.root / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self.answers, f"Redis on port {self.port}")

    def answers(self) -> bool:
        # One try: the client's default retries with backoff would take seconds to say "no".
        client = redis.Redis(port=self.port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """Gone at once, as a crashed or unplugged broker: whatever it held is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def require_programs() -> Path:
    """PostgreSQL's programs, or a skip naming what to install (`make services` installs both)."""
    programs = postgres_programs()
    if programs is None or shutil.which("redis-server") is None:
        pytest.skip("PostgreSQL's and Redis's server programs are not installed: make services")
    return programs


@contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """This process's Celery app sends its tasks to the broker at `url` for the block, whatever
    REDIS_URL said when the settings were read (without it, tasks would run in-process)."""
    from policyhub.celery import app

    conf = app.conf
    saved = conf.broker_url, conf.task_always_eager

    def forget_connections() -> None:
        # The app keeps a pool of broker connections and one of producers, made for the URL it
        # first used; dropped, they are made again for the URL now configured. (Not closed:
        # kombu's registry hands the same pool to the next user of that URL.)
        app._pool = None  # type: ignore[attr-defined]
        app.amqp._producer_pool = None  # type: ignore[attr-defined]

    conf.update(broker_url=url, task_always_eager=False)
    forget_connections()
    try:
        yield
    finally:
        forget_connections()
        conf.update(broker_url=saved[0], task_always_eager=saved[1])


class Worker:
    """A Celery worker process (its own process group) with one pool process, so that two
    workers are two processes publishing; named, so that a test with several can wait for each.
    Its log is kept in a file, shown when it fails."""

    def __init__(
        self, name: str, *, database_url: str, broker_url: str, log: Path, **env: str
    ) -> None:
        self.node = f"{name}@faults"
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "policyhub",
                    "worker",
                    "--hostname",
                    self.node,
                    "--concurrency=1",
                    "--loglevel=WARNING",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=REPO_ROOT,
                env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": broker_url, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> Worker:
        """Wait until it answers a ping on the broker: then it takes tasks."""
        try:
            wait_until(self.answers, f"worker {self.node} answering", timeout=60)
        except TimeoutError:
            self.stop()
            raise
        return self

    def answers(self) -> bool:
        from policyhub.celery import app

        if self.process.poll() is not None:
            raise RuntimeError(f"worker {self.node} exited:\n{self.output()}")
        return bool(app.control.ping(destination=[self.node], timeout=0.5))

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def terminate(self) -> None:
        """Ask for a warm shutdown (the task at hand finishes first); `stop` waits for it."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def database_url_of(settings_dict: dict[str, Any]) -> str:
    """The URL of the database a Django connection's settings name (for a worker's environment)."""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host, port = settings_dict["HOST"] or "127.0.0.1", settings_dict["PORT"] or 5432
    return f"postgres://{settings_dict['USER']}{password}@{host}:{port}/{settings_dict['NAME']}"
