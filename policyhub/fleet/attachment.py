"""The fleet's part in deleting teams (teams/attachments.py): machines enrolled in a team keep it
alive; revoked machines and enrolment tokens go with it."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from policyhub.accounts.models import Organization
from policyhub.actors import Actor
from policyhub.audit.services import audit_record
from policyhub.errors import ApplicationError
from policyhub.fleet.models import Device, EnrollmentToken
from policyhub.teams.models import Team
from providers.base import Issue


class FleetOnTeams:
    """Registered by FleetConfig.ready()."""

    def deletion_refusal(
        self, organization: Organization, subtree: QuerySet[Team]
    ) -> ApplicationError | None:
        enrolled = dict(
            Device.objects.filter(team__in=subtree, revoked_at__isnull=True)
            .values_list("team__path")
            .annotate(count=Count("pk"))
            .order_by("team__path")
        )
        if not enrolled:
            return None
        return ApplicationError(
            f"cannot delete team(s) {', '.join(enrolled)}: devices are enrolled in them; "
            "move or revoke those devices first",
            [
                Issue("error", f"teams.{path}", f"has {count} enrolled device(s)")
                for path, count in enrolled.items()
            ],
        )

    def delete_with(
        self, organization: Organization, subtree: QuerySet[Team], actor: Actor, reason: str
    ) -> None:
        for kind, rows in (
            ("device", Device.objects.filter(team__in=subtree, revoked_at__isnull=False)),
            ("enrollment_token", EnrollmentToken.objects.filter(team__in=subtree)),
        ):
            for key, path in rows.values_list("pk", "team__path"):
                audit_record(
                    organization_id=organization.pk,
                    actor=actor,
                    action=f"{kind}.delete",
                    object_type=kind,
                    object_key=str(key),
                    before={"team": path},
                    reason=reason,
                )
            rows.delete()
