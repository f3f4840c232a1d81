"""Request bodies, bounded per endpoint before anything reads them.

Django refuses a body past DATA_UPLOAD_MAX_MEMORY_SIZE when it is read (DRF reads it whole to
parse JSON); that setting is the largest any endpoint takes (a whole policy document). Each view
takes less: an API view's `max_body_bytes` (bytes, or the name of the setting that holds them),
every other view FORM_BODY_MAX_BYTES. A body declared larger is answered 413 before it is read
(a WSGI server hands Django no body without a declared length). docs/limits.md lists them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase


def body_limit(view_func: Callable[..., Any]) -> int:
    """The most bytes this view reads from a request body."""
    api_view = getattr(view_func, "cls", None)  # DRF's as_view() names the class there
    limit = getattr(api_view or getattr(view_func, "view_class", None), "max_body_bytes", None)
    if isinstance(limit, str):
        return int(getattr(settings, limit))
    if isinstance(limit, int):
        return limit
    return int(settings.API_BODY_MAX_BYTES if api_view else settings.FORM_BODY_MAX_BYTES)


class BodyLimit:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], *args: Any
    ) -> HttpResponseBase | None:
        limit = body_limit(view_func)
        try:
            size = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = limit + 1  # an unreadable length counts as too large
        if size <= limit:
            return None
        detail = f"the request body may be at most {limit:,} bytes"
        return HttpResponse(
            json.dumps({"detail": detail}), status=413, content_type="application/json"
        )
