from django.urls import path

from policyhub.web import views

urlpatterns = [
    path("", views.home, name="home"),
    path("orgs/<slug:slug>/", views.organization_detail, name="organization"),
    path("orgs/<slug:slug>/teams/<path:path>/", views.team_detail, name="team"),
]
