"""Publishes and releases (placeholder until built)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from policyhub.web.pages import OrgPage, org_page


@org_page()
def publishes_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    return render(
        request,
        "web/placeholder.html",
        {"page": page, "nav": "releases", "title": "Publishes and releases"},
    )


urlpatterns = [
    path("orgs/<slug:slug>/publishes/", publishes_page, name="web-publishes"),
]
