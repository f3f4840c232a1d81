"""How allauth fits PolicyHub: nobody signs up uninvited, by password or through single sign-on.

A person arrives with an invitation link (accounts/views.py keeps which invitation in their
session), signs up with the invited address or signs in, and accepts it. Without a usable
invitation in the session the sign-up pages are closed; existing people sign in as usual, and
through SSO when their verified address matches.
"""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.http import HttpRequest

from policyhub.accounts.models import Invitation
from policyhub.accounts.selectors import invitation_refusal

INVITATION_SESSION_KEY = "policyhub_invitation"


def pending_invitation(request: HttpRequest | None) -> Invitation | None:
    """The invitation this browser arrived with, if it can still be accepted. The session holds
    its id, not its secret: opening the link proved the browser had the secret."""
    if request is None or not hasattr(request, "session"):
        return None
    invitation_id = request.session.get(INVITATION_SESSION_KEY)
    if not isinstance(invitation_id, int):
        return None
    invitation = Invitation.objects.filter(pk=invitation_id).first()
    return invitation if invitation_refusal(invitation) is None else None


class InvitationOnlyAccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]  # untyped
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return pending_invitation(request) is not None

    def clean_email(self, email: str) -> str:
        """An invitation opens sign-up for the address it was sent to, not for any address."""
        email = super().clean_email(email)
        signing_up = self.request is not None and not self.request.user.is_authenticated
        invitation = pending_invitation(self.request) if signing_up else None
        if invitation is not None and email.strip().lower() != invitation.email:
            raise forms.ValidationError(
                f"This invitation is for {invitation.email}: sign up with that address."
            )
        return str(email)
