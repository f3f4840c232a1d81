"""Reads of the team tree."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet

from policyhub.accounts.models import Organization
from policyhub.teams.models import Team


def team_subtrees(organization: Organization, paths: Iterable[str]) -> QuerySet[Team]:
    """The teams at `paths` and every team below them."""
    match = Q(pk__in=[])
    for path in paths:
        match |= Q(path=path) | Q(path__startswith=f"{path}/")
    return Team.objects.filter(match, organization=organization)
