"""DRF authentication by API token (`Authorization: Bearer pht_...`), and how the OpenAPI
schema describes it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from policyhub import credentials
from policyhub.accounts.models import ApiToken
from policyhub.accounts.selectors import api_token_for_secret
from policyhub.accounts.services import api_token_used


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """request.user is the token's person, request.auth the token (accounts.access makes the
    actor of the two). Other bearer credentials (a device's) are left to their own class."""

    def authenticate(self, request: Any) -> tuple[User, ApiToken] | None:
        scheme, _, secret = str(request.META.get("HTTP_AUTHORIZATION", "")).partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret.startswith(credentials.API_TOKEN_PREFIX):
            return None
        token = api_token_for_secret(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("unknown, expired or revoked API token")
        api_token_used(token)
        return token.user, token

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="policyhub"'


class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the schema describes API tokens: an HTTP bearer credential."""

    target_class = ApiTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "pht_..."}
