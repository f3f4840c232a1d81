"""Writes of the team tree.

`policy_apply` is the one caller: it checks what its actor may change, plans the whole policy and
records one audit event per plan line in the same transaction, so these functions neither check
nor audit on their own (a team change would otherwise be recorded twice, once without its policy
context).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from policyhub.accounts.models import Organization
from policyhub.actors import Actor
from policyhub.errors import ApplicationError
from policyhub.teams.attachments import team_attachments
from policyhub.teams.models import Team
from policyhub.teams.selectors import memberships_scoped_to, team_subtrees
from providers.base import Issue

# Rows per INSERT when teams are made in bulk.
BATCH = 2000


@transaction.atomic
def team_create(*, organization: Organization, parent: Team | None, slug: str, name: str) -> Team:
    """Add a team under `parent` (or at the top); its path is the parent's path plus `slug`."""
    if parent is not None and parent.organization_id != organization.pk:
        raise ApplicationError(f"team {parent.path!r} belongs to another organisation")
    parent_path = parent.path if parent is not None else None
    made = team_create_many(organization=organization, teams=[(parent_path, slug, name)])
    return made[f"{parent_path}/{slug}" if parent_path else slug]


@transaction.atomic
def team_create_many(
    *, organization: Organization, teams: list[tuple[str | None, str, str]]
) -> dict[str, Team]:
    """Add many teams at once, each (parent path, slug, name); a parent is an existing team or
    one in the list. One INSERT per level of the tree, not one per team (an apply of a
    10,000-team document). Returns the new teams by path; all or none are made."""
    known = {t.path: t for t in Team.objects.filter(organization=organization)}
    made: dict[str, Team] = {}
    by_depth: dict[int, list[tuple[str | None, str, str]]] = {}
    for parent_path, slug, name in teams:
        depth = parent_path.count("/") + 1 if parent_path else 0
        by_depth.setdefault(depth, []).append((parent_path, slug, name))
    for depth in sorted(by_depth):
        level: list[Team] = []
        for parent_path, slug, name in by_depth[depth]:
            parent = (made.get(parent_path) or known.get(parent_path)) if parent_path else None
            if parent_path and parent is None:
                raise ApplicationError(
                    f"team {parent_path!r} does not exist",
                    [Issue("error", "parent", f"there is no team {parent_path!r}")],
                )
            path = f"{parent_path}/{slug}" if parent_path else slug
            if path in known or path in made:
                raise ApplicationError(
                    f"team {path!r} exists", [Issue("error", "slug", f"{slug!r} is taken here")]
                )
            team = Team(organization=organization, parent=parent, slug=slug, path=path, name=name)
            # Fields only: the organisation and parent are rows in hand, and the path was checked
            # against the teams read above, without a query per team.
            team.full_clean(
                exclude=["organization", "parent"],
                validate_unique=False,
                validate_constraints=False,
            )
            level.append(team)
            made[path] = team  # a second one at this path is refused above
        for team in Team.objects.bulk_create(level, batch_size=BATCH):
            made[team.path] = team
    return made


@transaction.atomic
def team_rename(*, team: Team, name: str) -> Team:
    """Change a team's display name (its slug path, and so its address, stays)."""
    team.name = name
    team.full_clean()
    team.save(update_fields=["name"])
    return team


@transaction.atomic
def team_reparent(*, team: Team, parent: Team | None) -> Team:
    """Move a team with its subtree under `parent` (None: the top level); every path below it
    follows. The caller checked that `parent` is not inside the moved subtree."""
    old = team.path
    new = f"{parent.path}/{team.slug}" if parent is not None else team.slug
    below = list(Team.objects.filter(organization=team.organization, path__startswith=f"{old}/"))
    team.parent, team.path = parent, new
    team.full_clean()
    team.save(update_fields=["parent", "path"])
    for child in below:
        child.path = new + child.path[len(old) :]
        child.full_clean()
    Team.objects.bulk_update(below, ["path"])
    return team


def team_delete_check(*, organization: Organization, paths: Iterable[str]) -> None:
    """Refuse deleting the teams at `paths` (with their subtrees) while something still needs
    them: an app attached to teams (enrolled machines, say) or a team editor scoped to one of them,
    whose membership would otherwise go with the team."""
    paths = sorted(paths)
    if not paths:
        return
    subtree = team_subtrees(organization, paths)
    for attachment in team_attachments():
        refusal = attachment.deletion_refusal(organization, subtree)
        if refusal is not None:
            raise refusal
    scoped: dict[str, list[str]] = {}
    for path, username in memberships_scoped_to(subtree).values_list(
        "team__path", "user__username"
    ):
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


@transaction.atomic
def team_delete(*, team: Team, actor: Actor) -> None:
    """Delete a team, its subtree and their policy nodes; refused while anything still needs
    them (team_delete_check). What attached apps still keep there goes first, each row with an
    audit event (their earlier events stay)."""
    organization = team.organization
    team_delete_check(organization=organization, paths=[team.path])
    subtree = team_subtrees(organization, [team.path])
    for attachment in team_attachments():
        attachment.delete_with(organization, subtree, actor, f"team {team.path} deleted")
    team.delete()
