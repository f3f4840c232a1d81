"""URLconf of bench/fetch.py's servers: every product route, plus bench-only views under floor/.

* `floor/304` and `floor/200`: the cheapest answers Django gives through the same middleware and
  URL resolution, the bar the fetch views are measured against. The 200 body is the bytes of the
  file named by POLICYHUB_BENCH_FLOOR_BODY (an agent bundle), read once at import.
* `floor/cache`: fills this process's delivery cache with every bench device and its team, so
  that every worker is warm before it is measured, and says how full it is (not hit while
  measuring).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

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


def floor_cache(request: HttpRequest) -> JsonResponse:
    """With ?fill=1, look up the credentials of the file named by POLICYHUB_BENCH_CREDENTIALS (one
    a line) and their releases, as a fetch does; then say how full this process's cache is."""
    state = delivery_cache.cache()
    if state is None:
        return JsonResponse({"pid": os.getpid(), "error": "delivery cache is off"}, status=500)
    # Entries read before the listener connects are not trusted once it does.
    if not state.listening.wait(10):
        return JsonResponse({"pid": os.getpid(), "error": "listener not connected"}, status=503)
    if request.GET.get("fill") == "1":
        # A few seconds at a time, well within a worker's timeout: the caller asks again.
        deadline = time.monotonic() + FILL_SECONDS
        for credential in Path(os.environ["POLICYHUB_BENCH_CREDENTIALS"]).read_text().split():
            if time.monotonic() > deadline:
                break
            device = selectors.device_for_credential(credential)
            if device is None:
                return JsonResponse({"pid": os.getpid(), "error": "unknown device"}, status=500)
            selectors.release_served(device)
    return JsonResponse(
        {"pid": os.getpid(), "devices": len(state.devices), "teams": len(state.teams)}
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
