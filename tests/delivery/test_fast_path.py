"""The fetch fast path (delivery/middleware.py) answers ahead of the stack, but never what the
stack would refuse: a Host outside ALLOWED_HOSTS gets 400, plain HTTP the HTTPS redirect
(SECURE_SSL_REDIRECT, read through SECURE_PROXY_SSL_HEADER), and an answer over HTTPS carries
HSTS, exactly as on every other path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from policyhub.fleet.models import Device

# Nothing here needs committed data: each test rolls back.
pytestmark = [pytest.mark.django_db]

Enrol = Callable[..., tuple[Device, str]]
FETCHES = ["native", "agent"]
# A device path the full stack answers (DRF, the same credential): what the fetches must match.
OTHER = "/api/v1/keys"
# What SecurityMiddleware sends that means something for a fetch (Referrer-Policy and
# Cross-Origin-Opener-Policy only matter to a browser showing a document).
SECURITY_HEADERS = ("Strict-Transport-Security", "X-Content-Type-Options")


@pytest.fixture
def device(publish: Callable[..., Any], enrol: Enrol) -> str:
    """The credential of a device whose team has a release: its fetches are 200s when served."""
    publish()
    return enrol("batch")[1]


def request(client: Client, which: str, credential: str, **headers: str) -> Any:
    """GET one of the fetch paths, or OTHER, as a device sends it, with extra headers."""
    bearer = {"Authorization": f"Bearer {credential}"}
    if which == "native":
        return client.get(f"/config-server/{credential}/codex/config/bundle", headers=headers)
    path = "/api/v1/device/bundle" if which == "agent" else OTHER
    return client.get(path, headers={**bearer, **headers})


@pytest.mark.parametrize("which", FETCHES)
def test_a_host_outside_allowed_hosts_gets_400_as_on_every_other_path(
    which: str, device: str, settings: Any
) -> None:
    for redirect, proto in ((False, "http"), (False, "https"), (True, "http"), (True, "https")):
        settings.SECURE_SSL_REDIRECT = redirect
        client = Client()  # its middleware set up with these settings
        evil = {"Host": "evil.example", "X-Forwarded-Proto": proto}
        assert request(client, OTHER, device, **evil).status_code == 400
        refused = request(client, which, device, **evil)
        assert refused.status_code == 400, (redirect, proto, refused.content[:200])
        assert b"enterprise_managed" not in refused.content and b'"files"' not in refused.content
        # The same request with an allowed Host is served: the Host alone made the difference.
        served = request(client, which, device, **{**evil, "Host": "testserver"})
        assert served.status_code == (301 if redirect and proto == "http" else 200)


@pytest.mark.parametrize("which", FETCHES)
def test_plain_http_is_redirected_to_https_as_on_every_other_path(
    which: str, device: str, client: Client, settings: Any
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    # No header, and headers that do not say HTTPS first (a client cannot append its way in).
    for headers in ({}, {"X-Forwarded-Proto": "http"}, {"X-Forwarded-Proto": "http, https"}):
        other = request(client, OTHER, device, **headers)
        assert other.status_code == 301 and other["Location"] == f"https://testserver{OTHER}"
        redirected = request(client, which, device, **headers)
        assert redirected.status_code == 301, (headers, redirected.content[:200])
        assert redirected["Location"] == f"https://testserver{redirected.request['PATH_INFO']}"
        assert redirected.content == b""


@pytest.mark.parametrize("which", FETCHES)
def test_answers_over_https_carry_hsts_as_on_every_other_path(
    which: str, device: str, client: Client, settings: Any
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = False
    other = request(client, OTHER, device, **{"X-Forwarded-Proto": "https"})
    served = request(client, which, device, **{"X-Forwarded-Proto": "https"})
    assert other.status_code == served.status_code == 200
    assert served["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    for header in SECURITY_HEADERS:
        assert served.get(header) == other.get(header), header
    # Still answered by the fast path, not the stack below it (whose first middleware names
    # each request with an id): its speed is the point of it.
    assert "X-Request-ID" in other and "X-Request-ID" not in served
    # Plain HTTP with no redirect configured (`make run`): no HSTS, as on every other path.
    settings.SECURE_SSL_REDIRECT = False
    plain = Client()
    assert "Strict-Transport-Security" not in request(plain, which, device)
    assert "Strict-Transport-Security" not in request(plain, OTHER, device)
