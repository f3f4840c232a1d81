"""The actor behind a web or API request, and the organisations it may open.

Pages and API views of every app call these instead of reading `request.user`: an API token acts
with its ceiling in its own organisation only, and an organisation that requires single sign-on
opens only to sessions that signed in through it.
"""

from __future__ import annotations

from typing import Any

from allauth.account.authentication import get_authentication_records
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from policyhub.accounts.models import ApiToken, Organization
from policyhub.accounts.permissions import Access, Permission, access
from policyhub.actors import Actor


def token_actor(token: ApiToken) -> Actor:
    """The actor an API token acts as: its person, at most at its role, in its organisation."""
    return Actor.for_token(
        user=token.user,
        token_id=token.pk,
        token_prefix=token.prefix,
        role=token.role,
        organization_id=token.organization_id,
    )


def request_actor(request: Any) -> Actor:
    """Who a request acts as: the API token it carries, or the signed-in person."""
    token = getattr(request, "auth", None)
    if isinstance(token, ApiToken):
        return token_actor(token)
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise PermissionDenied("sign in first")
    return Actor.for_user(user)


def signed_in_with_sso(request: HttpRequest) -> bool:
    """Whether this session's person signed in through the SSO provider (allauth keeps a record of
    how each step of the sign-in was made)."""
    records = get_authentication_records(request, request.user)
    return any(record.get("method") == "socialaccount" for record in records)


def organization_for_request(request: Any, slug: str) -> tuple[Organization, Actor]:
    """The organisation a request opens, with its actor: 404 for anyone who may not see it (so
    outsiders learn nothing), 403 when it requires single sign-on and this session did not use it."""
    organization, actor, _ = organization_access_for_request(request, slug)
    return organization, actor


def organization_access_for_request(request: Any, slug: str) -> tuple[Organization, Actor, Access]:
    """`organization_for_request`, with what the actor may do there (pages offer only that)."""
    actor = request_actor(request)
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        raise Http404("no such organisation")
    granted = access(actor, organization)
    if Permission.ORG_VIEW not in granted.permissions:
        raise Http404("no such organisation")
    session = getattr(request, "session", None)
    if (
        organization.sso_required
        and not isinstance(getattr(request, "auth", None), ApiToken)
        and session is not None
        and not signed_in_with_sso(request)
    ):
        raise PermissionDenied(f"{organization.name} requires single sign-on: sign in with it")
    return organization, actor, granted
