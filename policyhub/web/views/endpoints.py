"""Provider endpoints (placeholder until built)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from policyhub.web.pages import OrgPage, org_page


@org_page()
def endpoints_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    return render(
        request,
        "web/placeholder.html",
        {"page": page, "nav": "endpoints", "title": "Provider endpoints"},
    )


urlpatterns = [
    path("orgs/<slug:slug>/endpoints/", endpoints_page, name="web-endpoints"),
]
