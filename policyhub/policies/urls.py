from django.urls import path

from policyhub.policies import apis

ORG = "api/v1/orgs/<slug:slug>"
urlpatterns = [
    path(f"{ORG}/endpoints", apis.EndpointListApi.as_view(), name="endpoints"),
    path(f"{ORG}/endpoints/<slug:name>", apis.EndpointApi.as_view(), name="endpoint"),
    path(f"{ORG}/teams", apis.TeamListApi.as_view(), name="teams"),
    path(f"{ORG}/teams/<int:pk>", apis.TeamApi.as_view(), name="team-api"),
    path(f"{ORG}/teams/<int:pk>/node", apis.TeamNodeApi.as_view(), name="team-node"),
    path(f"{ORG}/node", apis.RootNodeApi.as_view(), name="root-node"),
    path(f"{ORG}/codex-window", apis.CodexWindowApi.as_view(), name="codex-window"),
]
