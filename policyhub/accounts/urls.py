"""The accounts API's routes: organisations, their members, invitations and API tokens."""

from django.urls import path

from policyhub.accounts import apis

ORG = "api/v1/orgs/<slug:slug>"
urlpatterns = [
    path("api/v1/orgs", apis.OrganizationListApi.as_view(), name="org-list"),
    path(ORG, apis.OrganizationApi.as_view(), name="org-detail"),
    path(f"{ORG}/members", apis.MemberListApi.as_view(), name="member-list"),
    path(
        f"{ORG}/members/transfer-ownership",
        apis.OwnershipTransferApi.as_view(),
        name="member-transfer-ownership",
    ),
    path(f"{ORG}/members/<int:pk>", apis.MemberApi.as_view(), name="member-detail"),
    path(f"{ORG}/invitations", apis.InvitationListApi.as_view(), name="invitation-list"),
    path(
        f"{ORG}/invitations/<int:pk>/revoke",
        apis.InvitationRevokeApi.as_view(),
        name="invitation-revoke",
    ),
    path(f"{ORG}/api-tokens", apis.ApiTokenListApi.as_view(), name="api-token-list"),
    path(
        f"{ORG}/api-tokens/<int:pk>/revoke",
        apis.ApiTokenRevokeApi.as_view(),
        name="api-token-revoke",
    ),
]
