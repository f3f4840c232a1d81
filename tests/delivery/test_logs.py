"""No device credential or enrolment token reaches a log line: Django's nor gunicorn's."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from django.test import Client
from gunicorn.config import Config

from policyhub.logfilters import RedactingGunicornLogger, RedactSecrets

CREDENTIAL = "phd_" + "S3cr3t-" * 6 + "x"


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
    path = f"/config-server/{CREDENTIAL}/codex/config/bundle"
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
    assert all(CREDENTIAL not in str(value) for value in atoms.values())
    assert "phd_…" in atoms["r"]
