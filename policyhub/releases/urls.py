from django.urls import path

from policyhub.releases import apis

ORG = "api/v1/orgs/<slug:slug>/"

urlpatterns = [
    path(f"{ORG}publish-runs", apis.PublishRunListApi.as_view(), name="publish-runs"),
    path(f"{ORG}publish-runs/<int:pk>", apis.PublishRunApi.as_view(), name="publish-run"),
    path(f"{ORG}releases", apis.ReleaseListApi.as_view(), name="releases"),
    path(f"{ORG}releases/diff", apis.ReleaseDiffApi.as_view(), name="release-diff"),
    path(f"{ORG}releases/rollback", apis.ReleaseRollbackApi.as_view(), name="release-rollback"),
    path(f"{ORG}releases/<int:pk>", apis.ReleaseApi.as_view(), name="release"),
    path(f"{ORG}releases/<int:pk>/files", apis.ReleaseFilesApi.as_view(), name="release-files"),
    path(f"{ORG}rollouts/start", apis.RolloutStartApi.as_view(), name="rollout-start"),
    path(f"{ORG}rollouts/promote", apis.RolloutPromoteApi.as_view(), name="rollout-promote"),
    path(f"{ORG}rollouts/abort", apis.RolloutAbortApi.as_view(), name="rollout-abort"),
    path(f"{ORG}signing-keys", apis.SigningKeyListApi.as_view(), name="org-signing-keys"),
    path(
        f"{ORG}signing-keys/rotate", apis.SigningKeyRotateApi.as_view(), name="signing-key-rotate"
    ),
    path(
        f"{ORG}signing-keys/<str:key_id>/revoke",
        apis.SigningKeyRevokeApi.as_view(),
        name="signing-key-revoke",
    ),
]
