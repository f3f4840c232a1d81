"""DRF authentication by device credential (`Authorization: Bearer phd_...`), and how the
OpenAPI schema describes it."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from policyhub.delivery.entries import DeviceEntry
from policyhub.delivery.selectors import bearer_credential, device_for_credential


class DeviceCaller:
    """request.user for a device: authenticated, and never a person."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, device: DeviceEntry) -> None:
        self.device = device


class DeviceCredentialAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Any) -> tuple[DeviceCaller, DeviceEntry] | None:
        credential = bearer_credential(request.META)
        if credential is None:
            return None
        device = device_for_credential(credential)
        if device is None:
            raise exceptions.AuthenticationFailed("unknown or revoked device credential")
        return DeviceCaller(device), device

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="policyhub"'


def calling_device(request: Any) -> DeviceEntry:
    """The device behind a request authenticated by DeviceCredentialAuthentication."""
    if not isinstance(request.auth, DeviceEntry):
        raise exceptions.NotAuthenticated()
    return request.auth


class DeviceCredentialScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the schema describes device credentials: an HTTP bearer credential, the one a
    machine got when it enrolled."""

    target_class = DeviceCredentialAuthentication
    name = "deviceCredential"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "phd_..."}
