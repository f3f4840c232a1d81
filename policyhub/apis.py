"""What every JSON API shares: one error shape, `{"detail": ..., "errors": {path: [...]}}`, for
ApplicationError and for DRF's own validation and authentication errors."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from policyhub.errors import ApplicationError, NotPermitted


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
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "invalid request", "errors": _flatten(exc.detail)}
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"])}
    return response


def body_too_large(request: Any, limit: int) -> Response | None:
    """413 when the declared body exceeds `limit` (an unreadable length counts as too large).
    DRF's parsers read the stream themselves, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE."""
    try:
        size = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        size = limit + 1
    if size <= limit:
        return None
    return Response(
        {"detail": f"the request body may be at most {limit} bytes"},
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


class ResilientScopedRateThrottle(ScopedRateThrottle):
    """Rate limits kept in the cache (Redis); when the cache is unreachable the request passes
    rather than failing: a limit on abuse must not become an outage."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            return True
