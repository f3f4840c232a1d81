"""One team's page and the organisation's own node (`policy/`): the effective policy with
provenance, the node's editor with live validation, the files per Codex version set, what is
published and the diff to it, devices and child teams (see `page`, `edit`, `files`); a team's
history (`history`)."""

from __future__ import annotations

from django.urls import path

from policyhub.web.views.team.edit import root_edit, root_validate, team_edit, team_validate
from policyhub.web.views.team.history import team_history_page
from policyhub.web.views.team.page import root_page, team_page

# A team's own sub-routes come before the team page, whose <path:path> would take them too.
urlpatterns = [
    path("orgs/<slug:slug>/policy/", root_page, name="web-root"),
    path("orgs/<slug:slug>/policy/-/edit/<str:section>/", root_edit, name="web-root-edit"),
    path(
        "orgs/<slug:slug>/policy/-/validate/<str:section>/",
        root_validate,
        name="web-root-validate",
    ),
    path("orgs/<slug:slug>/teams/<path:path>/-/edit/<str:section>/", team_edit, name="team-edit"),
    path(
        "orgs/<slug:slug>/teams/<path:path>/-/validate/<str:section>/",
        team_validate,
        name="team-validate",
    ),
    path("orgs/<slug:slug>/teams/<path:path>/-/history/", team_history_page, name="team-history"),
    path("orgs/<slug:slug>/teams/<path:path>/", team_page, name="team"),
]
