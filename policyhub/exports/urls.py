from django.urls import path

from policyhub.exports import apis

ORG = "api/v1/orgs/<slug:slug>/"

urlpatterns = [
    path(f"{ORG}audit/events", apis.AuditEventListApi.as_view(), name="audit-events"),
    path(
        f"{ORG}audit/export/<str:file_format>",
        apis.AuditExportApi.as_view(),
        name="audit-export",
    ),
    path(
        f"{ORG}audit/export/<str:file_format>/manifest",
        apis.AuditExportManifestApi.as_view(),
        name="audit-export-manifest",
    ),
    path(
        f"{ORG}releases/<int:pk>/receipts/export/<str:file_format>",
        apis.ReceiptsExportApi.as_view(),
        name="receipts-export",
    ),
    path(
        f"{ORG}releases/<int:pk>/receipts/export/<str:file_format>/manifest",
        apis.ReceiptsExportManifestApi.as_view(),
        name="receipts-export-manifest",
    ),
]
