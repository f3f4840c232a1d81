"""One team's page (placeholder until built)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from policyhub.web.pages import OrgPage, org_page


@org_page()
def team_page(request: HttpRequest, page: OrgPage, path: str) -> HttpResponse:
    return render(request, "web/placeholder.html", {"page": page, "nav": "teams", "title": "Team"})


urlpatterns = [
    path("orgs/<slug:slug>/teams/<path:path>/", team_page, name="team"),
]
