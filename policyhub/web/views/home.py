"""The start page: the organisations the signed-in person belongs to."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from policyhub.accounts.selectors import organizations_for


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "web/home.html", {"organizations": organizations_for(request.user)})


urlpatterns = [path("", home, name="home")]
