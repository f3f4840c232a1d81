"""Starting an export: the permission, the pin, and the audit event that says who took what."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.actors import Actor
from policyhub.audit.services import audit_record
from policyhub.exports.files import Export, audit_export, receipts_export
from policyhub.exports.manifest import manifest_signed
from policyhub.releases.models import Release

DOING = "export the audit trail"


def audit_export_start(
    *,
    actor: Actor,
    organization: Organization,
    file_format: str,
    params: Mapping[str, str],
    through: int | None = None,
) -> Export:
    """An export of the trail for someone allowed to read it (auditors, admins, owners),
    recorded in the trail itself just past the export's pin: the export shows who took the
    exports before it, never itself."""
    authorize(actor, organization, Permission.AUDIT_VIEW, doing=DOING)
    export = audit_export(organization, file_format, params, through=through)
    with transaction.atomic():
        audit_record(
            organization_id=organization.pk,
            actor=actor,
            action="audit.export",
            object_type="audit",
            object_key=f"{export.kind} {export.file_format}",
            after={"filter": export.filter, **export.pin},
        )
    return export


def audit_export_manifest(
    *,
    actor: Actor,
    organization: Organization,
    file_format: str,
    params: Mapping[str, str],
    through: int,
) -> dict[str, Any]:
    """The signed manifest of the export that `audit_export_start` pinned at `through`: the
    same rows give the same bytes, which are hashed here without being kept."""
    authorize(actor, organization, Permission.AUDIT_VIEW, doing=DOING)
    export = audit_export(organization, file_format, params, through=through)
    for _ in export.chunks():
        pass
    return manifest_signed(export, actor)


def receipts_export_start(
    *,
    actor: Actor,
    organization: Organization,
    release: Release,
    file_format: str,
    as_of: datetime | None = None,
) -> Export:
    """An export of a release's receipts, for those who may export the trail; recorded."""
    authorize(actor, organization, Permission.AUDIT_VIEW, doing="export release receipts")
    export = receipts_export(organization, file_format, release, as_of=as_of)
    with transaction.atomic():
        audit_record(
            organization_id=organization.pk,
            actor=actor,
            action="audit.export",
            object_type="release",
            object_key=f"{release.team_path} r{release.revision}",
            after={"export": "receipts", "format": file_format, **export.pin},
        )
    return export


def receipts_export_manifest(
    *,
    actor: Actor,
    organization: Organization,
    release: Release,
    file_format: str,
    as_of: datetime,
) -> dict[str, Any]:
    """The signed manifest of the receipts export pinned at `as_of`."""
    authorize(actor, organization, Permission.AUDIT_VIEW, doing="export release receipts")
    export = receipts_export(organization, file_format, release, as_of=as_of)
    for _ in export.chunks():
        pass
    return manifest_signed(export, actor)
