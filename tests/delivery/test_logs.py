"""No device credential or enrolment token reaches a log line: Django's, gunicorn's, granian's,
in whatever encoding the client sent it."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from django.db import connection
from django.test import Client
from gunicorn.config import Config

from policyhub.credentials import (
    API_TOKEN_PREFIX,
    DEVICE_PREFIX,
    ENROLLMENT_PREFIX,
    INVITATION_PREFIX,
)
from policyhub.logfilters import RedactingGunicornLogger, RedactSecrets, redact
from tests.e2e.stack import NGINX_CONF, _write_tls

ROOT = Path(__file__).resolve().parents[2]
SECRET = "S3cr3t-" * 6 + "x"
CREDENTIAL = "phd_" + SECRET
BASIC = base64.b64encode(f"{CREDENTIAL}:".encode()).decode()


def percent(text: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in text)


# The credential as a client may write it in a URL; Django decodes the path once, so each of the
# first five is a working credential on the native channel.
ENCODINGS = {
    "as issued": CREDENTIAL,
    "prefix percent-encoded": "%70hd_" + SECRET,
    "every character encoded, lower-case hex": percent(CREDENTIAL).lower(),
    "partly encoded, mixed case": "p%68D%5f" + SECRET[:9] + percent(SECRET[9:20]) + SECRET[20:],
    "upper-case prefix": "PHD_" + SECRET,
    "double-encoded": percent(CREDENTIAL).replace("%", "%25"),
    "double-encoded prefix, once the rest": "%2570%2568%2564%255f" + percent(SECRET),
}


def revealed(text: str) -> list[str]:
    """The pieces of the credential's secret (any 8 characters of it) that `text` shows, however
    percent-encoded and in whatever letter case; and the credential as HTTP Basic sends it."""
    decoded = text
    for _ in range(4):
        decoded = unquote(decoded)
    decoded = decoded.lower()
    pieces = {SECRET[i : i + 8].lower() for i in range(len(SECRET) - 7)}
    return sorted(piece for piece in pieces if piece in decoded) + [BASIC] * (BASIC in text)


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_every_encoding_of_a_credential_is_redacted(name: str) -> None:
    encoded = ENCODINGS[name]
    line = (
        f'GET /config-server/{encoded}/codex/config/bundle?token={encoded} HTTP/1.1 "{encoded}"'
        f" Authorization: Bearer {encoded}"
    )
    assert revealed(line), "the check would find nothing: the test would prove nothing"
    assert revealed(redact(line)) == []
    assert redact(line).count("…") == 4


@pytest.mark.parametrize(
    "prefix", [DEVICE_PREFIX, ENROLLMENT_PREFIX, API_TOKEN_PREFIX, INVITATION_PREFIX]
)
def test_every_kind_of_secret_is_redacted(prefix: str) -> None:
    for written in (prefix, percent(prefix).lower(), prefix.upper()):
        line = f"POST /accounts/invite?token={written}{SECRET}&next=/"
        assert revealed(redact(line)) == [] and f"token={written}…&next=/" in redact(line)


def test_authorization_values_are_redacted_whatever_they_carry() -> None:
    for value in (f"Basic {BASIC}", f"bearer {CREDENTIAL}", f"Bearer%20{BASIC}"):
        assert BASIC not in redact(f"auth={value}") and revealed(redact(f"auth={value}")) == []
    # What is not a secret stays readable.
    for text in ('WWW-Authenticate: Bearer realm="policyhub"', "GET /accounts/login/ 200"):
        assert redact(text) == text


def test_django_log_records_are_redacted() -> None:
    record = logging.LogRecord(
        "django.request",
        logging.WARNING,
        __file__,
        1,
        "Unauthorized: %s",
        (f"/config-server/{CREDENTIAL}/codex/config/bundle",),
        None,
    )
    RedactSecrets().filter(record)
    assert CREDENTIAL not in record.getMessage()
    assert "/config-server/phd_…/codex/config/bundle" in record.getMessage()


def test_a_traceback_quoting_a_credential_is_redacted() -> None:
    try:
        raise ValueError(f"no device for {ENCODINGS['prefix percent-encoded']}")
    except ValueError:
        record = logging.LogRecord(
            "django.request", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    RedactSecrets().filter(record)
    line = logging.Formatter().format(record)
    assert "ValueError: no device for %70hd_…" in line and revealed(line) == []


@pytest.mark.django_db
def test_a_refused_native_fetch_logs_no_credential(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    handler = logging.getLogger().handlers[0]
    with caplog.at_level(logging.WARNING, logger="django.request"):
        client.get(f"/config-server/{CREDENTIAL}/codex/config/bundle")
    assert caplog.records, "Django logged nothing: the test would prove nothing"
    for record in caplog.records:
        assert handler.filter(record)
        assert CREDENTIAL not in handler.format(record)


def test_gunicorn_access_lines_are_redacted() -> None:
    logger = RedactingGunicornLogger(Config())
    path = f"/config-server/{ENCODINGS['prefix percent-encoded']}/codex/config/bundle"
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = SimpleNamespace(status="401 Unauthorized", response_length=10, sent=10, headers=[])
    request = SimpleNamespace(headers=[("AUTHORIZATION", f"Bearer {CREDENTIAL}")])
    atoms = logger.atoms(response, request, environ, SimpleNamespace(seconds=0, microseconds=1))
    assert all(revealed(str(value)) == [] for value in atoms.values())
    assert "%70hd_…" in atoms["r"]


# --- the servers themselves, writing their logs as in production -----------------------------

GUNICORN_FORMAT = '%(h)s "%(r)s" %(s)s "%(f)s" "%({authorization}i)s" %(U)s %(q)s'
GRANIAN_FORMAT = (
    '%(addr)s "%(method)s %(path)s?%(query_string)s" %(status)d "%(header{referer})s" '
    '"%(header{authorization})s"'
)
BIN = Path(sys.executable).parent
SERVERS = {
    # gunicorn as README says to run it, and without the logger class (policyhub.wsgi redacts
    # its loggers all the same); granian with its access log on (off in docker/Dockerfile);
    # Django's development server (`make run`).
    "gunicorn": [
        *(str(BIN / "gunicorn"), "--workers", "1", "--no-control-socket"),
        *("--access-logfile", "-", "--error-logfile", "-"),
        *("--access-logformat", GUNICORN_FORMAT, "--log-level", "debug"),
        *("--logger-class", "policyhub.logfilters.RedactingGunicornLogger"),
        *("--bind", "127.0.0.1:{port}", "policyhub.wsgi:application"),
    ],
    "gunicorn, its own logger class": [
        *(str(BIN / "gunicorn"), "--workers", "1", "--no-control-socket"),
        *("--access-logfile", "-", "--error-logfile", "-"),
        *("--access-logformat", GUNICORN_FORMAT, "--log-level", "debug"),
        *("--bind", "127.0.0.1:{port}", "policyhub.wsgi:application"),
    ],
    "granian": [
        *(str(BIN / "granian"), "--interface", "wsgi", "--workers", "1", "--access-log"),
        *("--access-log-fmt", GRANIAN_FORMAT, "--log-level", "debug"),
        *("--host", "127.0.0.1", "--port", "{port}", "policyhub.wsgi:application"),
    ],
    "runserver": [
        *(sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks"),
        "127.0.0.1:{port}",
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, headers: dict[str, str], tls: ssl.SSLContext | None = None) -> int:
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls)
        if tls
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture
def server_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The server named by the test's parameter, on the test database; yields its port and the
    file its output (stdout and stderr) goes to, complete once the test's requests are done."""
    request.getfixturevalue("django_db_setup")
    db = connection.settings_dict
    port, log = free_port(), tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LOCAL")}
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        PYTHONUNBUFFERED="1",
    )
    argv = [part.replace("{port}", str(port)) for part in SERVERS[request.param]]
    with log.open("wb") as output:
        server = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(port, "/accounts/login/", {})
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{request.param} did not start:\n{log.read_text()}")
                time.sleep(0.2)
        yield port, log
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.server
@pytest.mark.database
@pytest.mark.parametrize("server_log", sorted(SERVERS), indirect=True)
def test_a_real_server_logs_no_credential_in_any_encoding(server_log: tuple[int, Path]) -> None:
    port, log = server_log
    sent = []
    for n, encoded in enumerate(ENCODINGS.values()):
        headers = {"Referer": f"https://example.com/config-server/{encoded}/codex?n={n}"}
        sent.append(get(port, f"/config-server/{encoded}/codex/config/bundle?n={n}", headers))
        headers["Authorization"] = f"Bearer {encoded}"
        sent.append(get(port, f"/api/v1/device/bundle?n={n}&token={encoded}", headers))
    headers = {"Authorization": f"Basic {BASIC}"}
    sent.append(get(port, f"/api/v1/device/bundle?n={len(ENCODINGS)}", headers))
    assert set(sent) == {401}, sent
    time.sleep(0.5)  # the access log is written after the answer
    text = log.read_text()
    # Every request was logged (the test would prove nothing otherwise), each with a redaction.
    for n in range(len(ENCODINGS) + 1):
        assert f"n={n}" in text, f"request {n} is not in the log:\n{text}"
    assert text.count("…") >= len(sent), text
    assert revealed(text) == [], text


@pytest.mark.server
def test_the_end_to_end_proxy_logs_no_credential_when_the_app_is_down(tmp_path: Path) -> None:
    """nginx's error log quotes the request line of a request it could not pass on: the stack's
    nginx (tests/e2e/stack.py) keeps the native channel's out of it, and only those."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed (make tools installs it)")
    tls = ssl.create_default_context(cafile=_write_tls(tmp_path))
    port, conf = free_port(), tmp_path / "nginx.conf"
    # No app behind it: every request is a 502 and an error log line.
    conf.write_text(NGINX_CONF.format(work=tmp_path, port=port, socket=tmp_path / "app.sock"))
    command = [nginx, "-c", str(conf), "-p", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True)
    try:
        statuses = [
            get(port, f"/config-server/{encoded}/codex/config/bundle?n={n}", {}, tls)
            for n, encoded in enumerate(ENCODINGS.values())
        ]
        statuses.append(get(port, "/accounts/login/?n=control", {}, tls))
    finally:
        subprocess.run([*command, "-s", "stop"], capture_output=True)
    assert set(statuses) == {502}, statuses
    text = (tmp_path / "nginx-error.log").read_text()
    assert "/accounts/login/?n=control" in text, f"nginx logged no request line:\n{text}"
    assert revealed(text) == [], text
