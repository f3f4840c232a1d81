"""Where a change came from: the source address and request id every audit event carries.

The middleware sets them for each request (and answers with the request id, so a person quoting
it finds the events); Celery tasks run under their task id; commands under none. Services never
pass them: `audit_event` reads them here, so no change can be recorded without its origin.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from rest_framework.throttling import BaseThrottle

# A request id a proxy in front of us assigned: kept if it looks like one, replaced otherwise
# (it is only ever text in the trail, but a bounded, plain one).
INCOMING_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
HEADER = "X-Request-ID"


@dataclass(frozen=True)
class Origin:
    source_address: str | None = None
    request_id: str = ""


NO_ORIGIN = Origin()
_origin: ContextVar[Origin | None] = ContextVar("audit_origin", default=None)


def current_origin() -> Origin:
    return _origin.get() or NO_ORIGIN


@contextmanager
def origin(source_address: str | None = None, request_id: str = "") -> Iterator[Origin]:
    """Record changes made inside as coming from `source_address` under `request_id`."""
    value = Origin(source_address, request_id)
    token = _origin.set(value)
    try:
        yield value
    finally:
        _origin.reset(token)


def client_address(request: HttpRequest) -> str | None:
    """The client's address as the rate limits see it (DRF's reading of REMOTE_ADDR and the
    X-Forwarded-For of NUM_PROXIES trusted proxies); None if that is not an address."""
    address = BaseThrottle().get_ident(request)  # type: ignore[arg-type]  # reads only META
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


class RequestOrigin:
    """Sets the origin for the request's changes and returns its id in `X-Request-ID`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(HEADER, "")
        request_id = incoming if INCOMING_ID.match(incoming) else uuid.uuid4().hex
        with origin(client_address(request), request_id):
            response = self.get_response(request)
        response[HEADER] = request_id
        return response


# A job's changes carry its task id: the publish run's page shows it, and a worker's log names it.
_task_tokens: dict[str, Token[Origin | None]] = {}


def task_started(task_id: str | None = None, **_: object) -> None:
    if task_id:
        _task_tokens[task_id] = _origin.set(Origin(None, f"task:{task_id}"[:64]))


def task_finished(task_id: str | None = None, **_: object) -> None:
    token = _task_tokens.pop(task_id or "", None)
    if token is not None:
        _origin.reset(token)
