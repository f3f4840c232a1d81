"""What every JSON API shares.

- One error shape, `{"detail": ..., "errors": {path: [...]}}`, for ApplicationError and for DRF's
  own validation, parse and authentication errors; a malformed request is a 400, never a 500.
- Cursor pagination for lists: constant work per page however long the list.
- ETags and `If-Match`: a write of an edited object names the version it read (412 when another
  write came first, 428 when it names none).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import DataError
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from policyhub.errors import ApplicationError, NotPermitted

# The largest integer any API field takes is a PostgreSQL integer.
MAX_INT = 2**31 - 1


class CursorPage(CursorPagination):
    """`{"next": url, "previous": url, "results": [...]}`: the cursor is opaque and each page
    costs one indexed query, whatever the page's position in a list of a million."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-pk"


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "the object changed since you read it: read it again and retry"
    default_code = "precondition_failed"


class PreconditionRequired(exceptions.APIException):
    status_code = status.HTTP_428_PRECONDITION_REQUIRED
    default_detail = "send If-Match with the ETag of your last read of this object"
    default_code = "precondition_required"


def etag_of(representation: Any) -> str:
    """A strong ETag: the digest of the object's representation as the API shows it, so any
    change to what a reader saw is a new ETag."""
    canonical = json.dumps(representation, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def require_if_match(request: Request, current: str, *, any_version: bool = True) -> None:
    """428 unless the request sends If-Match; 412 unless it names `current` (or is `*`, where
    `any_version` allows it: not where the write says which version someone read). Call it
    under the lock that the write takes, after reading the object again."""
    header = request.headers.get("If-Match", "").strip()
    if not header:
        raise PreconditionRequired()
    if header == "*" and any_version:
        return
    # A weak tag never matches for a write (RFC 9110 §13.1.1: If-Match compares strongly).
    if current not in (tag.strip() for tag in header.split(",")):
        raise PreconditionFailed()


def with_etag(data: Any, code: int = status.HTTP_200_OK) -> Response:
    """The representation of one edited object, with its ETag."""
    response = Response(data, status=code)
    response["ETag"] = etag_of(data)
    return response


# For the schema: the error body every refusal has, and the If-Match header of writes.
ErrorOut = inline_serializer(
    "Error",
    {
        "detail": serializers.CharField(),
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()), required=False
        ),
    },
)
IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="The ETag of your last read of this object.",
)
ERRORS = {
    code: OpenApiResponse(ErrorOut, description=text)
    for code, text in (
        (400, "The request is malformed or refused; `errors` names each field."),
        (401, "No or an unknown credential."),
        (403, "Your role does not allow this."),
        (404, "No such object (or organisation you may see)."),
    )
}
WRITE_ERRORS = {
    **ERRORS,
    412: OpenApiResponse(ErrorOut, description="The object changed since your read."),
    428: OpenApiResponse(ErrorOut, description="If-Match is missing."),
}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as field paths (`errors.0`, `team.path`)."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            path = str(key) if key != "non_field_errors" else ""
            out.update(_flatten(value, f"{prefix}.{path}".strip(".") if path else prefix))
        return out
    if isinstance(detail, list) and detail and all(not isinstance(d, dict | list) for d in detail):
        return {prefix or "body": [str(d) for d in detail]}
    if isinstance(detail, list):
        out = {}
        for index, value in enumerate(detail):
            out.update(_flatten(value, f"{prefix}.{index}".strip(".")))
        return out
    return {prefix or "body": [str(detail)]}


def application_error_response(error: ApplicationError, code: int = 400) -> Response:
    errors: dict[str, list[str]] = {}
    for issue in error.issues:
        if issue.severity == "error":
            errors.setdefault(issue.path, []).append(issue.message)
    return Response({"detail": error.message, "errors": errors}, status=code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return application_error_response(exc, 403 if isinstance(exc, NotPermitted) else 400)
    if isinstance(exc, DataError):
        # The last line of defence: a value the database cannot hold (each serializer bounds
        # its own fields; this catches what one forgot) is the client's error, not ours.
        return Response(
            {"detail": "a value is out of range or malformed for storage"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "invalid request", "errors": _flatten(exc.detail)}
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"])}
    return response


class ResilientScopedRateThrottle(ScopedRateThrottle):
    """Rate limits kept in the cache (Redis); when the cache is unreachable the request passes
    rather than failing: a limit on abuse must not become an outage."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            return True
