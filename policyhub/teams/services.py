"""Writes of the team tree.

`policy_apply` is the one caller: it plans the whole policy and records one audit event per plan
line in the same transaction, so these functions do not audit on their own (a team change would
otherwise be recorded twice, once without its policy context).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import transaction

from policyhub.accounts.models import Organization
from policyhub.accounts.selectors import memberships_scoped_to
from policyhub.audit.services import audit_record
from policyhub.errors import ApplicationError
from policyhub.fleet.models import Device, EnrollmentToken
from policyhub.teams.models import Team
from policyhub.teams.selectors import team_subtrees
from providers.base import Issue


@transaction.atomic
def team_create(*, organization: Organization, parent: Team | None, slug: str, name: str) -> Team:
    """Add a team under `parent` (or at the top); its path is the parent's path plus `slug`."""
    if parent is not None and parent.organization_id != organization.pk:
        raise ApplicationError(f"team {parent.path!r} belongs to another organisation")
    path = f"{parent.path}/{slug}" if parent is not None else slug
    team = Team(organization=organization, parent=parent, slug=slug, path=path, name=name)
    team.full_clean()
    team.save()
    return team


@transaction.atomic
def team_rename(*, team: Team, name: str) -> Team:
    """Change a team's display name (its slug path, and so its address, stays)."""
    team.name = name
    team.full_clean()
    team.save(update_fields=["name"])
    return team


def team_delete_check(*, organization: Organization, paths: Iterable[str]) -> None:
    """Refuse deleting the teams at `paths` (with their subtrees) while team editors are scoped to
    any of them: deleting the team would otherwise take the editor's membership with it."""
    paths = sorted(paths)
    if not paths:
        return
    _devices_check(organization, paths)
    scoped: dict[str, list[str]] = {}
    scopes = memberships_scoped_to(team_subtrees(organization, paths))
    for path, username in scopes.values_list("team__path", "user__username"):
        scoped.setdefault(path, []).append(username)
    if not scoped:
        return
    issues = []
    for path, usernames in scoped.items():
        deleted_with = [p for p in paths if path.startswith(f"{p}/")]
        via = f" (deleted with team {deleted_with[0]})" if deleted_with else ""
        issues.append(
            Issue(
                "error",
                f"teams.{path}",
                f"is the scope of team editor(s) {', '.join(usernames)}{via}; "
                "reassign or remove these team editors first",
            )
        )
    raise ApplicationError(
        f"cannot delete team(s) {', '.join(scoped)}: team editor(s) "
        f"{', '.join(u for users in scoped.values() for u in users)} are scoped to them; "
        "reassign or remove these team editors first",
        issues,
    )


def _devices_check(organization: Organization, paths: list[str]) -> None:
    """Refuse deleting teams that machines are enrolled in: they would lose their policy."""
    enrolled: dict[str, int] = {}
    subtree = team_subtrees(organization, paths)
    for path in Device.objects.filter(team__in=subtree, revoked_at__isnull=True).values_list(
        "team__path", flat=True
    ):
        enrolled[path] = enrolled.get(path, 0) + 1
    if enrolled:
        raise ApplicationError(
            f"cannot delete team(s) {', '.join(sorted(enrolled))}: devices are enrolled in them; "
            "move or revoke those devices first",
            [
                Issue("error", f"teams.{path}", f"has {count} enrolled device(s)")
                for path, count in sorted(enrolled.items())
            ],
        )


@transaction.atomic
def team_delete(*, team: Team, actor: User | None = None) -> None:
    """Delete a team, its subtree and their policy nodes; refused while editors are scoped there
    or devices are enrolled. Revoked devices and enrolment tokens of the subtree go with it, each
    with an audit event (their earlier events stay)."""
    organization = team.organization
    team_delete_check(organization=organization, paths=[team.path])
    subtree = team_subtrees(organization, [team.path])
    for kind, rows in (
        ("device", Device.objects.filter(team__in=subtree, revoked_at__isnull=False)),
        ("enrollment_token", EnrollmentToken.objects.filter(team__in=subtree)),
    ):
        for key, path in rows.values_list("pk", "team__path"):
            audit_record(
                organization=organization,
                actor=actor,
                action=f"{kind}.delete",
                object_type=kind,
                object_key=str(key),
                before={"team": path},
                reason=f"team {team.path} deleted",
            )
        rows.delete()
    team.delete()
