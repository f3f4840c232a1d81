from django.urls import path

from policyhub.fleet import apis

urlpatterns = [
    path("api/v1/orgs/<slug:slug>/fleet/teams", apis.FleetTeamsApi.as_view(), name="fleet-teams"),
    path(
        "api/v1/orgs/<slug:slug>/fleet/devices",
        apis.FleetDevicesApi.as_view(),
        name="fleet-devices",
    ),
    path(
        "api/v1/orgs/<slug:slug>/fleet/codex-versions",
        apis.FleetCodexVersionsApi.as_view(),
        name="fleet-codex-versions",
    ),
    path(
        "api/v1/orgs/<slug:slug>/devices/<str:device_id>/revoke",
        apis.DeviceRevokeApi.as_view(),
        name="device-revoke",
    ),
    path(
        "api/v1/orgs/<slug:slug>/devices/<str:device_id>/move",
        apis.DeviceMoveApi.as_view(),
        name="device-move",
    ),
    path(
        "api/v1/orgs/<slug:slug>/enrollment-tokens",
        apis.EnrollmentTokensApi.as_view(),
        name="enrollment-tokens",
    ),
    path(
        "api/v1/orgs/<slug:slug>/enrollment-tokens/<int:token_id>/revoke",
        apis.EnrollmentTokenRevokeApi.as_view(),
        name="enrollment-token-revoke",
    ),
]
