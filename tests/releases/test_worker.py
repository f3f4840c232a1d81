"""Publishing through a real Celery worker process, on PostgreSQL and Redis, end to end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from policyhub.celery import app as celery_app
from policyhub.policies.selectors import organization_get
from policyhub.releases import signing
from policyhub.releases.models import PublishRun, Release
from policyhub.releases.services import publish_run_request
from policyhub.teams.models import Team
from tests.codex.harness import REPO_ROOT, check_file_set

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker() -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker on the test database; the tests commit, so it sees their rows."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set (make test sets it)")
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "policyhub",
            "worker",
            "--purge",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                f"worker did not start: {process.stderr.read().decode() if process.stderr else ''}"
            )
    yield process
    process.terminate()
    process.wait(timeout=30)


def publish() -> str:
    out = io.StringIO()
    call_command("publish", "--org", "acme", "--as", "admin", "--timeout", "120", stdout=out)
    return out.getvalue().strip()


def wait_for(runs: list[PublishRun]) -> list[PublishRun]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fresh = [PublishRun.objects.get(pk=r.pk) for r in runs]
        if all(r.status in ("succeeded", "failed") for r in fresh):
            return fresh
        time.sleep(0.2)
    raise AssertionError(f"runs still unfinished: {[r.status for r in fresh]}")


@pytest.mark.codex
@pytest.mark.usefixtures("codex_ready")
def test_the_demo_publishes_through_the_worker_and_codex_accepts_every_release(
    worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    line = publish()
    assert line.endswith("succeeded 9 new release(s)"), line
    assert publish().endswith("succeeded 0 new release(s)")

    releases = list(Release.objects.filter(current=True).select_related("signing_key"))
    assert sorted(r.team_path for r in releases) == sorted(
        Team.objects.filter(organization__slug="acme").values_list("path", flat=True)
    )
    folders = []
    for release in releases:
        assert signing.verify(
            release.signing_key.public_key, release.manifest.encode(), release.signature
        )
        folder = tmp_path / release.team_path
        for name, text in release.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        folders.append(folder)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(check_file_set, folders))
    failures = [r.report() for r in results if not r.ok]
    assert not failures, "\n\n".join(failures)


def test_two_publishes_at_once_produce_one_consistent_set_of_revisions(
    worker: subprocess.Popen[bytes],
) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    org = organization_get("acme")
    assert org is not None
    runs = [publish_run_request(organization=org, actor=None) for _ in range(2)]
    finished = wait_for(runs)
    assert [r.status for r in finished] == ["succeeded", "succeeded"]
    assert sorted(r.releases_created for r in finished) == [0, 9]
    assert Release.objects.count() == 9
    assert set(Release.objects.values_list("revision", flat=True)) == {1}
