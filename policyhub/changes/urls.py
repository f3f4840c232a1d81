"""The policy document and change sets under /api/v1/orgs/<slug>/."""

from django.urls import URLPattern, path

from policyhub.changes import apis

ORG = "api/v1/orgs/<slug:slug>"

urlpatterns: list[URLPattern] = [
    path(f"{ORG}/policy", apis.PolicyDocumentApi.as_view(), name="policy-document"),
    path(f"{ORG}/policy/plan", apis.PolicyPlanApi.as_view(), name="policy-plan"),
    path(f"{ORG}/policy/apply", apis.PolicyApplyApi.as_view(), name="policy-apply"),
    path(f"{ORG}/change-sets", apis.ChangeSetsApi.as_view(), name="change-sets"),
    path(f"{ORG}/change-sets/<int:pk>", apis.ChangeSetApi.as_view(), name="change-set"),
    path(
        f"{ORG}/change-sets/<int:pk>/plan",
        apis.ChangeSetPlanApi.as_view(),
        name="change-set-plan",
    ),
    path(
        f"{ORG}/change-sets/<int:pk>/diff",
        apis.ChangeSetDiffApi.as_view(),
        name="change-set-diff",
    ),
    path(
        f"{ORG}/change-sets/<int:pk>/submit",
        apis.ChangeSetSubmitApi.as_view(),
        name="change-set-submit",
    ),
    path(
        f"{ORG}/change-sets/<int:pk>/approve",
        apis.ChangeSetApproveApi.as_view(),
        name="change-set-approve",
    ),
    path(
        f"{ORG}/change-sets/<int:pk>/reject",
        apis.ChangeSetRejectApi.as_view(),
        name="change-set-reject",
    ),
    path(
        f"{ORG}/change-sets/<int:pk>/schedule",
        apis.ChangeSetScheduleApi.as_view(),
        name="change-set-schedule",
    ),
]
