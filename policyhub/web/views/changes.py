"""Change sets (placeholder until built)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from policyhub.web.pages import OrgPage, org_page


@org_page()
def change_sets_page(request: HttpRequest, page: OrgPage) -> HttpResponse:
    return render(
        request, "web/placeholder.html", {"page": page, "nav": "changes", "title": "Change sets"}
    )


urlpatterns = [
    path("orgs/<slug:slug>/changes/", change_sets_page, name="web-change-sets"),
]
