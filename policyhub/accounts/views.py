"""The invitation page: where an invitation link leads, before and after signing in."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from policyhub.accounts.access import request_actor
from policyhub.accounts.adapters import INVITATION_SESSION_KEY
from policyhub.accounts.selectors import invitation_for_secret, invitation_refusal
from policyhub.accounts.services import invitation_accept
from policyhub.errors import ApplicationError


def invitation(request: HttpRequest, secret: str) -> HttpResponse:
    found = invitation_for_secret(secret)
    problem = invitation_refusal(found)
    if found is None or problem:
        return render(request, "accounts/invitation.html", {"problem": problem}, status=404)
    # Signing up is open to this browser while it holds a usable invitation (accounts.adapters).
    request.session[INVITATION_SESSION_KEY] = found.pk
    here = reverse("invitation", args=[secret])
    if request.method == "POST" and request.user.is_authenticated:
        try:
            membership = invitation_accept(actor=request_actor(request), secret=secret)
        except ApplicationError as refused:
            messages.error(request, refused.message)
        else:
            request.session.pop(INVITATION_SESSION_KEY, None)
            messages.success(
                request, f"You joined {membership.organization.name} as {membership.role}."
            )
            return redirect("organization", membership.organization.slug)
    context = {"invitation": found, "next": here}
    return render(request, "accounts/invitation.html", context)
