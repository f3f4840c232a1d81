"""Starting an export: the permission, the pin, and the audit event that says who took what."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from policyhub.accounts.models import Organization
from policyhub.accounts.permissions import Permission, authorize
from policyhub.actors import Actor
from policyhub.audit.services import audit_record
from policyhub.exports.files import Export, audit_export
from policyhub.exports.manifest import manifest_signed

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
            after={"filter": export.filter, "through": export.through},
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
