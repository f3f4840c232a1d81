"""The two fetch paths, as plain Django views: every microsecond here is multiplied by the fleet.

* Codex's config-server protocol (docs/codex.md): `GET /config-server/<credential>/codex/config/bundle`.
* The agent's `GET /api/v1/device/bundle` with `Authorization: Bearer <credential>`.

Both answer from delivery/cache.py: no rendering, no database write, normally no query. Both
honour `If-None-Match` with 304. Anything that is not a valid, unrevoked credential gets 401.

And the downloads of a team's current release for admins: the MDM profile and the zip.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.http import parse_etags
from django.views.decorators.csrf import csrf_exempt

from policyhub.accounts.access import organization_for_request
from policyhub.delivery import exports
from policyhub.delivery.selectors import bearer_credential, device_for_credential, release_served
from policyhub.delivery.services import fetch_record
from policyhub.fleet.models import Device
from policyhub.releases.models import Release
from policyhub.releases.selectors import current_release_of_team
from policyhub.validators import is_plain_text
from providers.codex_versions import Version, parse_version

JSON = "application/json"
# A machine must revalidate every time, and no shared cache may keep a device's bundle.
CACHE_CONTROL = "private, no-cache"


def _json_error(status: int, detail: str) -> HttpResponse:
    response = HttpResponse(json.dumps({"detail": detail}), status=status, content_type=JSON)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="policyhub"'
    return response


def _not_modified(request: HttpRequest, etag: str) -> bool:
    """If-None-Match, compared weakly (RFC 9110 §13.1.2): a proxy that compresses the body may
    hand the client `W/"<tag>"`, which must still match."""
    header = request.META.get("HTTP_IF_NONE_MATCH")
    if not header:
        return False
    if header == etag:  # what the agent sends: no parsing needed
        return True
    tags = [tag.removeprefix("W/") for tag in parse_etags(header)]
    return etag in tags or "*" in tags


def _codex_version(request: HttpRequest) -> Version | None:
    """The Codex version the agent reports (`X-Codex-Version: 0.130.0`); None if absent or odd."""
    header = request.META.get("HTTP_X_CODEX_VERSION")
    try:
        return parse_version(header) if header else None
    except ValueError:
        return None


def _answer(request: HttpRequest, credential: object, channel: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = _json_error(405, "method not allowed")
        response["Allow"] = "GET, HEAD"
        return response
    try:
        device = device_for_credential(credential, fetch_only=channel == NATIVE)
        served = release_served(device) if device is not None else None
    except DatabaseError:
        # Nothing known about this device yet and the database cannot tell: try again later.
        response = _json_error(503, "temporarily unavailable")
        response["Retry-After"] = "5"
        return response
    if device is None:
        return _json_error(401, "unknown or revoked device credential")
    fetch_record(
        device_id=device.device_id,
        revision=served.revision if served else None,
        channel=channel,
        release_id=served.release_id if served else None,
    )
    if served is None:
        if channel == NATIVE:
            # No release yet: an empty bundle, so Codex starts instead of failing closed.
            return HttpResponse(b"{}", content_type=JSON)
        return _json_error(404, "this team has no published release yet")
    if channel == NATIVE:
        # Only Codex 0.166 and later fetch this: the release's own set is the newest versions'.
        etag, body = served.etag, served.native_body
    else:
        etag, body = served.for_agent(_codex_version(request))
    if _not_modified(request, etag):
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(body, content_type=JSON)
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response


# Plain strings, not the model's enum members: they go into the pending fetch counts, and enum
# members there kept the garbage collector busy with full collections (bench/fetch.py).
NATIVE, AGENT = str(Device.Channel.NATIVE.value), str(Device.Channel.AGENT.value)


@csrf_exempt
def config_server_bundle(request: HttpRequest, credential: str) -> HttpResponse:
    return _answer(request, credential, NATIVE)


@csrf_exempt
def device_bundle(request: HttpRequest) -> HttpResponse:
    credential = bearer_credential(request.META)
    if credential is None:
        return _json_error(401, "send Authorization: Bearer <device credential>")
    return _answer(request, credential, AGENT)


def _current_release(request: HttpRequest, slug: str, path: str) -> Release:
    """The team's current release, for those who may see its organisation (404 for others)."""
    organization, _ = organization_for_request(request, slug)
    release = current_release_of_team(organization, path) if is_plain_text(path) else None
    if release is None:
        raise Http404("no published release for this team")
    return release


def _download(body: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
def team_mobileconfig(request: HttpRequest, slug: str, path: str) -> HttpResponse:
    release = _current_release(request, slug, path)
    name = f"{slug}-{path.replace('/', '-')}-r{release.revision}.mobileconfig"
    return _download(exports.mobileconfig(release), "application/x-apple-aspen-config", name)


@login_required
def team_files_zip(request: HttpRequest, slug: str, path: str) -> HttpResponse:
    release = _current_release(request, slug, path)
    name = f"{slug}-{path.replace('/', '-')}-r{release.revision}.zip"
    return _download(exports.files_zip(release), "application/zip", name)
