from django.urls import path

from policyhub.history import apis

ORG = "api/v1/orgs/<slug:slug>/"

urlpatterns = [
    path(f"{ORG}teams/<path:path>/as-of", apis.TeamAsOfApi.as_view(), name="team-as-of"),
    path(f"{ORG}teams/<path:path>/timeline", apis.TeamTimelineApi.as_view(), name="team-timeline"),
]
