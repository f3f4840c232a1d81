"""Settings (placeholder until built)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from policyhub.web.pages import OrgPage, org_page


@org_page()
def settings_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    return render(
        request, "web/placeholder.html", {"page": page, "nav": "settings", "title": "Settings"}
    )


urlpatterns = [
    path("orgs/<slug:slug>/settings/", settings_page, name="web-settings"),
]
