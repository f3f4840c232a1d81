"""URLconf of bench/fetch.py's servers: every product route, plus bench-only views under floor/.

* `floor/304` and `floor/200`: the cheapest answers Django gives through the same middleware and
  URL resolution, the bar the fetch views are measured against. The 200 body is the bytes of the
  file named by POLICYHUB_BENCH_FLOOR_BODY (an agent bundle), read once at import.
* `floor/cache`: with ?fill=1, looks up the devices of wrk's sample (the file named by
  POLICYHUB_BENCH_DEVICES, a device a line: its credential, then its team's ETag) and their
  teams, as a fetch does, so that every worker is warm before it is measured; says how far this
  process got through the sample and what its delivery cache says of itself (not hit while
  measuring).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from policyhub.delivery import cache as delivery_cache
from policyhub.delivery import selectors
from policyhub.delivery.views import CACHE_CONTROL, JSON

_BODY_PATH = os.environ.get("POLICYHUB_BENCH_FLOOR_BODY", "")
FLOOR_BODY = Path(_BODY_PATH).read_bytes() if _BODY_PATH else b"{}"
FLOOR_ETAG = '"' + "0" * 32 + '"'
FILL_SECONDS = 5


@csrf_exempt
def floor_304(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(status=304)
    response["ETag"] = FLOOR_ETAG
    response["Cache-Control"] = CACHE_CONTROL
    return response


@csrf_exempt
def floor_200(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(FLOOR_BODY, content_type=JSON)
    response["ETag"] = FLOOR_ETAG
    response["Cache-Control"] = CACHE_CONTROL
    return response


class _Fill:
    """This process's way through the sample: each fill resumes where the last one stopped; one
    request fills at a time (the others only report)."""

    lock = threading.Lock()
    done = 0  # credentials looked up
    complete = False


def _cache_stats(state: object) -> dict[str, Any]:
    """What the delivery cache says of itself: its own `stats()` when it has one."""
    if state is None:
        return {"cache": "off"}
    stats = getattr(state, "stats", None)
    if stats is not None:
        return dict(stats())
    return {
        "devices": len(getattr(state, "devices", ())),
        "teams": len(getattr(state, "teams", ())),
    }


def _fill() -> None:
    """Look up the sample's credentials from where the last fill stopped, for FILL_SECONDS at
    most (well within a worker's timeout: the caller asks again). The file is read as it goes,
    so that the sample does not sit in this process's memory."""
    deadline = time.monotonic() + FILL_SECONDS
    with open(os.environ["POLICYHUB_BENCH_DEVICES"]) as lines:
        for number, line in enumerate(lines):
            if number < _Fill.done:
                continue
            if time.monotonic() > deadline:
                return
            device = selectors.device_for_credential(line.split(" ", 1)[0])
            if device is None:
                raise LookupError(f"no device holds credential {number + 1} of the sample")
            selectors.release_served(device)
            _Fill.done += 1
    _Fill.complete = True


def floor_cache(request: HttpRequest) -> JsonResponse:
    """With ?fill=1, look up the devices of the file named by POLICYHUB_BENCH_DEVICES and their
    releases, as a fetch does; then say how many of them this process has looked up, whether
    that is all of them, and what its delivery cache says of itself."""
    state = delivery_cache.cache()
    # A per-process cache without stats() trusts no entry read before its listener connects:
    # the fill waits for that. A cache with stats() is asked nothing else.
    if state is not None and getattr(state, "stats", None) is None:
        listening = getattr(state, "listening", None)
        if listening is not None and not listening.wait(10):
            return JsonResponse({"pid": os.getpid(), "error": "listener not connected"}, status=503)
    if request.GET.get("fill") == "1" and not _Fill.complete and _Fill.lock.acquire(blocking=False):
        try:
            _fill()
        except LookupError as error:
            return JsonResponse({"pid": os.getpid(), "error": str(error)}, status=500)
        finally:
            _Fill.lock.release()
    return JsonResponse(
        {
            "pid": os.getpid(),
            "filled": _Fill.done,
            "complete": _Fill.complete,
            "cache": _cache_stats(state),
        }
    )


urlpatterns = [
    path(
        "floor/",
        include(
            [
                path("304", floor_304),
                path("200", floor_200),
                path("cache", floor_cache),
            ]
        ),
    ),
    path("", include("policyhub.urls")),
]
