"""HTML pages for policies."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from policyhub.accounts.selectors import organizations_for


@login_required
def home(request: HttpRequest) -> HttpResponse:
    organizations = organizations_for(request.user)
    return render(request, "policies/home.html", {"organizations": organizations})
