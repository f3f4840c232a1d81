"""Reads of the team tree."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet

from policyhub.accounts.models import Membership, Organization
from policyhub.teams.models import Team


def team_subtrees(organization: Organization, paths: Iterable[str]) -> QuerySet[Team]:
    """The teams at `paths` and every team below them."""
    match = Q(pk__in=[])
    for path in paths:
        match |= Q(path=path) | Q(path__startswith=f"{path}/")
    return Team.objects.filter(match, organization=organization)


def memberships_scoped_to(teams: QuerySet[Team]) -> QuerySet[Membership]:
    """The memberships (team editors) whose scope is one of `teams`, with user and team loaded."""
    return (
        Membership.objects.filter(team__in=teams)
        .select_related("user", "team")
        .order_by("team__path", "user__username")
    )
