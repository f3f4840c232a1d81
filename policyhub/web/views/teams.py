"""Team (placeholder until built)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from policyhub.web.pages import OrgPage, org_page


@org_page()
def teams_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    return render(request, "web/placeholder.html", {"page": page, "nav": "teams", "title": "Teams"})


urlpatterns = [
    path("orgs/<slug:slug>/teams/", teams_page, name="web-teams"),
]
