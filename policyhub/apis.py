"""What every JSON API shares: one error shape, `{"detail": ..., "errors": {path: [...]}}`, for
ApplicationError and for DRF's own validation and authentication errors."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from policyhub.errors import ApplicationError


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
        return application_error_response(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": "invalid request", "errors": _flatten(exc.detail)}
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"])}
    return response
