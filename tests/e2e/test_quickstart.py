"""The Quickstart's first command, `make run`, as a new user runs it: on SQLite with in-process
tasks, it answers on loopback, signs the demo owner in, serves its own static files, and shows
PolicyHub's own error pages rather than Django's debug pages (it runs LOCAL, not DEBUG)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.server]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def quickstart(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "REDIS_URL", "DEBUG", "LOCAL", "SECURE_SSL_REDIRECT")
    }
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'quickstart.sqlite3'}"
    server = subprocess.Popen(
        ["make", "-s", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/accounts/login/", timeout=2)
                break
            except requests.ConnectionError:
                if server.poll() is not None:
                    pytest.fail(
                        f"make run stopped: {server.stdout.read() if server.stdout else ''}"
                    )
                time.sleep(0.5)
        else:
            pytest.fail("make run did not answer within 120 s")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def signed_in(url: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{url}/accounts/login/", timeout=10).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token, form[:500]
    answer = session.post(
        f"{url}/accounts/login/",
        data={
            "csrfmiddlewaretoken": token.group(1),
            "login": "admin@acme.example",
            "password": "policyhub-demo",
        },
        headers={"Referer": f"{url}/accounts/login/"},
        timeout=10,
    )
    assert answer.status_code == 200 and "Acme" in answer.text, answer.text[:500]
    return session


def test_make_run_serves_the_demo_with_its_own_error_pages(quickstart: str) -> None:
    session = signed_in(quickstart)
    assert session.get(f"{quickstart}/orgs/acme/", timeout=10).status_code == 200
    css = session.get(f"{quickstart}/static/web/site.css", timeout=10)
    assert css.status_code == 200 and "PolicyHub" in css.text
    missing = session.get(f"{quickstart}/orgs/acme/teams/no-such-team/", timeout=10)
    assert missing.status_code == 404
    assert "<h1>Not found</h1>" in missing.text
    # Django's debug page names the URL patterns it tried; PolicyHub's page names nothing.
    assert "URLconf" not in missing.text and "Traceback" not in missing.text
