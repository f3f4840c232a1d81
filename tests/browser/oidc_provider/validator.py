"""Claims the provider puts in ID tokens and userinfo: who the person is, and a verified email."""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_validators import OAuth2Validator


class EmailClaims(OAuth2Validator):  # type: ignore[misc]
    oidc_claim_scope = None  # every claim below, whatever scopes were asked

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "email": user.email,
            "email_verified": True,
            "name": user.get_full_name() or user.get_username(),
            "preferred_username": user.get_username(),
        }
