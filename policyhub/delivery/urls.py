from django.urls import path, re_path

from policyhub.delivery import apis, views

urlpatterns = [
    # The credential is matched loosely here and checked by the view, so that any garbage in
    # that place gets the same 401 as a wrong credential.
    re_path(
        r"^config-server/(?P<credential>[^/]{1,512})/codex/config/bundle$",
        views.config_server_bundle,
        name="config-server-bundle",
    ),
    path("api/v1/device/bundle", views.device_bundle, name="device-bundle"),
    path("api/v1/device/enroll", apis.EnrollApi.as_view(), name="device-enroll"),
    path("api/v1/device/status", apis.StatusApi.as_view(), name="device-status"),
    path("api/v1/device/credential", apis.CredentialApi.as_view(), name="device-credential"),
    path("api/v1/keys", apis.KeysApi.as_view(), name="signing-keys"),
    path("api/v1/device/assignment", apis.AssignmentApi.as_view(), name="device-assignment"),
    path(
        "orgs/<slug:slug>/teams/<path:path>/codex.mobileconfig",
        views.team_mobileconfig,
        name="team-mobileconfig",
    ),
    path("orgs/<slug:slug>/teams/<path:path>/files.zip", views.team_files_zip, name="team-zip"),
]
