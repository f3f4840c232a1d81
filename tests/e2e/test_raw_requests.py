"""Bytes no HTTP client library would send, straight to the production server (granian): each
gets a 4xx and never a bundle."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest

from policyhub.fleet.services import device_enroll, enrollment_token_create
from tests.conftest import OPERATOR, acting
from tests.e2e.stack import Stack, running_stack

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Stack]:
    with running_stack() as running:
        yield running


def raw(stack: Stack, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(stack.work / "app.sock"))
        # As nginx sends it: the request came over TLS (else production redirects to https).
        line, _, rest = request.partition(b"\r\n")
        with suppress(BrokenPipeError, ConnectionResetError):
            # A server may answer (413) and close before it has read an oversize body.
            client.sendall(line + b"\r\nX-Forwarded-Proto: https\r\n" + rest)
        answer = b""
        with suppress(ConnectionResetError):
            while chunk := client.recv(65536):
                answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


REQUESTS = {
    "non-utf-8 bearer": b"GET /api/v1/device/bundle HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Authorization: Bearer phd_\xff\xfe\xfd" + b"A" * 40 + b"\r\nConnection: close\r\n\r\n",
    "non-utf-8 path": b"GET /config-server/phd_\xff\xfe" + b"A" * 41 + b"/codex/config/bundle "
    b"HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "oversize header": b"GET /api/v1/device/bundle HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Authorization: Bearer phd_" + b"A" * 20000 + b"\r\nConnection: close\r\n\r\n",
    "oversize path": b"GET /config-server/" + b"A" * 9000 + b"/codex/config/bundle HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n",
    "bad content-length": b"POST /api/v1/device/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Authorization: Bearer phd_" + b"A" * 43 + b"\r\nContent-Length: abc\r\n"
    b"Connection: close\r\n\r\n{}",
    "enrol with binary body": b"POST /api/v1/device/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 6\r\nConnection: close\r\n\r\n\x00\xff{}\xfe\x01",
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_raw_garbage_gets_a_4xx(name: str, stack: Stack) -> None:
    answer = raw(stack, REQUESTS[name])
    assert 400 <= status_of(answer) < 500, answer[:300]
    assert b"enterprise_managed" not in answer and b'"files"' not in answer


def test_oversize_status_body_from_a_real_device_gets_413(
    stack: Stack, cast: dict[str, Any]
) -> None:
    from policyhub.policies.services import policy_apply
    from tests.conftest import make_policy

    policy_apply(
        organization=cast["acme"], wanted=make_policy("[teams.web]\n"), actor=acting(cast["admin"])
    )
    _, token = enrollment_token_create(organization=cast["acme"], team_path="web", actor=OPERATOR)
    _, credential = device_enroll(token_secret=token, hostname="raw")
    body = b'{"os": "' + b"x" * 2_000_000 + b'"}'
    head = (
        b"POST /api/v1/device/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + credential.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    answer = raw(stack, head + body)
    assert answer, "the server dropped the connection without an answer"
    assert status_of(answer) == 413, answer[:300]
