"""Fixtures of the fault tests: a Redis and a PostgreSQL of their own, Celery workers on them.

A test that stops Redis gets a fresh one (`broker`) that this process's Celery app and cache
use too; the suite's shared Redis is never touched. A test that restarts PostgreSQL works in a
database of the session's own cluster (`own_database`), migrated once and copied per test; the
other fault tests keep pytest-django's test database on the shared server, which they never
stop. `workers` starts real Celery worker processes on the test's broker and database.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from policyhub.settings import redis_cache
from tests.faults.services import (
    PostgresServer,
    RedisServer,
    Worker,
    celery_broker,
    database_url_of,
    require_programs,
)

TEMPLATE = "policyhub_faults_template"
_databases = itertools.count(1)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    require_programs()
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def broker(redis_server: RedisServer, settings: Any) -> Iterator[RedisServer]:
    """This process sends its tasks to, and caches in, the test's own Redis."""
    settings.CACHES = {"default": redis_cache(redis_server.url)}
    with celery_broker(redis_server.url):
        yield redis_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A cluster for the session with a migrated template database, started when first asked."""
    server = PostgresServer(require_programs())
    try:
        server.start()
        server.migrated(TEMPLATE)
        yield server
    finally:
        server.close()


@pytest.fixture
def own_database(
    postgres_server: PostgresServer, django_db_blocker: Any
) -> Iterator[PostgresServer]:
    """A fresh copy of the template on the session's own cluster, which this test's thread
    reads and writes through Django's default connection instead of the test database.

    Only this thread's connection is moved: the connection settings other threads (a delivery
    listener started by an earlier test) connect with stay as they were.
    """
    name = f"faults_{next(_databases)}"
    postgres_server.sql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    saved = connection.settings_dict
    with django_db_blocker.unblock():
        connection.close()
        connection.settings_dict = {
            **saved,
            "NAME": name,
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": "127.0.0.1",
            "PORT": str(postgres_server.port),
        }
        try:
            yield postgres_server
        finally:
            connection.close()
            connection.settings_dict = saved


WorkerStarter = Callable[..., list[Worker]]


@pytest.fixture
def workers(broker: RedisServer, tmp_path: Path) -> Iterator[WorkerStarter]:
    """Start Celery workers, one per name given and all at once, on the test's broker and the
    database this thread uses (the test database, or `own_database`'s), with `env` added to
    their environment; returns them once each answers. All are stopped when the test ends."""
    started: list[Worker] = []

    def start(*names: str, **env: str) -> list[Worker]:
        new = [
            Worker(
                name,
                database_url=database_url_of(connection.settings_dict),
                broker_url=broker.url,
                log=tmp_path / f"{name}.log",
                **env,
            )
            for name in names
        ]
        started.extend(new)
        return [worker.ready() for worker in new]

    yield start
    for worker in started:  # all told at once, then waited for: they shut down side by side
        worker.terminate()
    for worker in started:
        worker.stop()
