from django.urls import path

from policyhub.fleet import apis

ORG = "api/v1/orgs/<slug:slug>"
urlpatterns = [
    path(f"{ORG}/fleet/teams", apis.FleetTeamsApi.as_view(), name="fleet-teams"),
    path(f"{ORG}/fleet/devices", apis.FleetDevicesApi.as_view(), name="fleet-devices"),
    path(
        f"{ORG}/fleet/codex-versions",
        apis.FleetCodexVersionsApi.as_view(),
        name="fleet-codex-versions",
    ),
    path(f"{ORG}/devices/<uuid:device_id>", apis.DeviceApi.as_view(), name="device"),
    path(
        f"{ORG}/devices/<uuid:device_id>/revoke",
        apis.DeviceRevokeApi.as_view(),
        name="device-revoke",
    ),
    path(f"{ORG}/devices/<uuid:device_id>/move", apis.DeviceMoveApi.as_view(), name="device-move"),
    path(
        f"{ORG}/releases/<int:pk>/receipts",
        apis.ReleaseReceiptsApi.as_view(),
        name="release-receipts",
    ),
    path(f"{ORG}/enrollment-tokens", apis.EnrollmentTokensApi.as_view(), name="enrollment-tokens"),
    path(
        f"{ORG}/enrollment-tokens/<int:token_id>/revoke",
        apis.EnrollmentTokenRevokeApi.as_view(),
        name="enrollment-token-revoke",
    ),
]
