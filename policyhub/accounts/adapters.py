"""How allauth fits PolicyHub: nobody signs up uninvited, by password or through single sign-on.

A person arrives with an invitation link (accounts/views.py keeps it in their session), signs up
or signs in, and accepts it. Without a usable invitation in the session the sign-up pages are
closed; existing people sign in as usual, and through SSO when their verified address matches.
"""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest

from policyhub.accounts.selectors import invitation_for_secret, invitation_refusal

INVITATION_SESSION_KEY = "policyhub_invitation"


def pending_invitation_secret(request: HttpRequest) -> str | None:
    """The invitation this browser arrived with, if it can still be accepted."""
    secret = request.session.get(INVITATION_SESSION_KEY)
    if secret and invitation_refusal(invitation_for_secret(secret)) is None:
        return str(secret)
    return None


class InvitationOnlyAccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]  # untyped
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return pending_invitation_secret(request) is not None
