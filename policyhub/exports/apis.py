"""The audit API: the organisation's events (cursor-paginated, filtered like the audit page), an
export of them streamed in CSV, JSON or NDJSON, and the export's signed manifest; the same for a
release's receipts (which devices fetched and applied it, as of a moment).

An export answers with `X-Audit-Through` (the chain position it is pinned to) and a `Link` to its
manifest at that position: fetching the manifest later describes exactly the bytes received.
Auditors, admins and owners may read and export (`audit.view`); nobody can delete.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import Http404, StreamingHttpResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from policyhub.accounts.apiviews import OrgApiView
from policyhub.accounts.permissions import Permission
from policyhub.apis import ERRORS, CursorPage
from policyhub.audit.filters import AuditFilter
from policyhub.audit.models import AuditEvent
from policyhub.audit.selectors import audit_events
from policyhub.errors import ApplicationError
from policyhub.exports.files import Export
from policyhub.exports.formats import CONTENT_TYPES
from policyhub.exports.services import (
    audit_export_manifest,
    audit_export_start,
    receipts_export_manifest,
    receipts_export_start,
)
from policyhub.releases.models import Release
from providers.base import Issue

TAGS = ["audit"]
FILTER_PARAMETERS = [
    OpenApiParameter(
        name,
        OpenApiTypes.STR,
        description=str(item.label)
        + (f" ({item.extra['help_text']})" if item.extra.get("help_text") else ""),
    )
    for name, item in AuditFilter.base_filters.items()
]
THROUGH = OpenApiParameter(
    "through",
    OpenApiTypes.INT,
    description="The chain position to stop at (an export's X-Audit-Through); default: now.",
)


FILE_RESPONSES: dict[Any, OpenApiResponse] = {
    (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The export."),
    (200, "application/json"): OpenApiResponse(OpenApiTypes.BINARY),
    (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY),
    **ERRORS,
}
MANIFEST_RESPONSES: dict[Any, OpenApiResponse] = {
    200: OpenApiResponse(OpenApiTypes.OBJECT, description="The manifest."),
    **ERRORS,
}


def _streamed(
    request: Request, export: Export, manifest: str, header: str, pin: str
) -> StreamingHttpResponse:
    """The file as it is written, with its pin in `header` and a `Link` to its manifest at
    that pin (the request's own filters kept)."""
    response = StreamingHttpResponse(
        export.chunks(), content_type=CONTENT_TYPES[export.file_format]
    )
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response[header] = str(export.pin[pin])
    query = request.GET.copy()
    query[pin] = str(export.pin[pin])
    link = request.build_absolute_uri(f"{manifest}?{query.urlencode()}")
    response["Link"] = f'<{link}>; rel="describedby"'
    return response


class AuditEventOut(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "seq",
            "created_at",
            "actor_kind",
            "actor_label",
            "action",
            "object_type",
            "object_key",
            "before",
            "after",
            "reason",
            "source_address",
            "request_id",
            "prev_hash",
            "hash",
        ]


def _filtered(organization_id: int, params: Any) -> QuerySet[AuditEvent]:
    found = AuditFilter(
        params, queryset=audit_events(organization_id), organization_id=organization_id
    )
    if not found.is_valid():
        issues = [Issue("error", name, " ".join(texts)) for name, texts in found.errors.items()]
        raise ApplicationError("the filters are not valid", issues)
    return found.qs


def _through(request: Request) -> int | None:
    value = request.query_params.get("through")
    if value is None:
        return None
    if not value.isdigit():
        raise ApplicationError(
            "through: not a position", [Issue("error", "through", "not a position")]
        )
    return int(value)


def _params(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in request.query_params.items() if k not in ("through", "cursor")}


class AuditEventListApi(OrgApiView):
    """The organisation's events, newest first."""

    required = {"GET": Permission.AUDIT_VIEW}
    doing = "read the audit trail"
    queryset = AuditEvent.objects.none()  # the model, for the schema
    serializer_class = AuditEventOut
    pagination_class = CursorPage

    @extend_schema(
        tags=TAGS, parameters=FILTER_PARAMETERS, responses={200: AuditEventOut(many=True), **ERRORS}
    )
    def get(self, request: Request, slug: str) -> Response:
        params = {k: v for k, v in request.query_params.items() if k not in ("cursor", "page_size")}
        page = self.paginate_queryset(_filtered(self.organization.pk, params))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class AuditExportApi(OrgApiView):
    """The events matching the filters, oldest first, streamed in the format the path names."""

    required = {"GET": Permission.AUDIT_VIEW}
    doing = "export the audit trail"

    @extend_schema(
        tags=TAGS,
        parameters=[*FILTER_PARAMETERS, THROUGH],
        responses=FILE_RESPONSES,
    )
    def get(self, request: Request, slug: str, file_format: str) -> StreamingHttpResponse:
        export = audit_export_start(
            actor=self.actor,
            organization=self.organization,
            file_format=file_format,
            params=_params(request),
            through=_through(request),
        )
        manifest = reverse(
            "audit-export-manifest", kwargs={"slug": slug, "file_format": file_format}
        )
        return _streamed(request, export, manifest, "X-Audit-Through", "through")


class AuditExportManifestApi(OrgApiView):
    """The signed manifest of the export with these filters, format and `through`."""

    required = {"GET": Permission.AUDIT_VIEW}
    doing = "export the audit trail"

    @extend_schema(
        tags=TAGS,
        parameters=[*FILTER_PARAMETERS, THROUGH],
        responses=MANIFEST_RESPONSES,
    )
    def get(self, request: Request, slug: str, file_format: str) -> Response:
        through = _through(request)
        if through is None:
            raise ApplicationError("through: required", [Issue("error", "through", "required")])
        return Response(
            audit_export_manifest(
                actor=self.actor,
                organization=self.organization,
                file_format=file_format,
                params=_params(request),
                through=through,
            )
        )


AS_OF = OpenApiParameter(
    "as_of",
    OpenApiTypes.DATETIME,
    description="The moment the receipts are shown as of (an export's X-Export-As-Of); "
    "a minute ago or earlier, the default.",
)


def _as_of(request: Request) -> datetime | None:
    value = request.query_params.get("as_of")
    if value is None:
        return None
    moment = parse_datetime(value)
    if moment is None or moment.tzinfo is None:
        text = "not a time with its zone (2026-03-01T12:00:00Z)"
        raise ApplicationError(f"as_of: {text}", [Issue("error", "as_of", text)])
    return moment


def _release(organization_id: int, pk: int) -> Release:
    release = Release.objects.filter(organization_id=organization_id, pk=pk).first()
    if release is None:
        raise Http404("no such release")
    return release


class ReceiptsExportApi(OrgApiView):
    """The devices that fetched or applied the release, as of a moment, streamed."""

    required = {"GET": Permission.AUDIT_VIEW}
    doing = "export release receipts"

    @extend_schema(
        tags=TAGS,
        parameters=[AS_OF],
        responses=FILE_RESPONSES,
    )
    def get(self, request: Request, slug: str, pk: int, file_format: str) -> StreamingHttpResponse:
        export = receipts_export_start(
            actor=self.actor,
            organization=self.organization,
            release=_release(self.organization.pk, pk),
            file_format=file_format,
            as_of=_as_of(request),
        )
        manifest = reverse(
            "receipts-export-manifest", kwargs={"slug": slug, "pk": pk, "file_format": file_format}
        )
        return _streamed(request, export, manifest, "X-Export-As-Of", "as_of")


class ReceiptsExportManifestApi(OrgApiView):
    """The signed manifest of the receipts export at `as_of`."""

    required = {"GET": Permission.AUDIT_VIEW}
    doing = "export release receipts"

    @extend_schema(
        tags=TAGS,
        parameters=[AS_OF],
        responses=MANIFEST_RESPONSES,
    )
    def get(self, request: Request, slug: str, pk: int, file_format: str) -> Response:
        as_of = _as_of(request)
        if as_of is None:
            raise ApplicationError("as_of: required", [Issue("error", "as_of", "required")])
        return Response(
            receipts_export_manifest(
                actor=self.actor,
                organization=self.organization,
                release=_release(self.organization.pk, pk),
                file_format=file_format,
                as_of=as_of,
            )
        )
