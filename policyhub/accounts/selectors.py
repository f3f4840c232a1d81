"""Reads of organisations and memberships."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from policyhub.accounts.models import Membership, Organization
from policyhub.teams.models import Team


def organizations_for(user: User | AnonymousUser) -> QuerySet[Organization]:
    """The organisations `user` is a member of (none for anonymous users)."""
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user_id=user.pk).order_by("slug")


def memberships_scoped_to(teams: QuerySet[Team]) -> QuerySet[Membership]:
    """The memberships (team editors) whose scope is one of `teams`, with user and team loaded."""
    return (
        Membership.objects.filter(team__in=teams)
        .select_related("user", "team")
        .order_by("team__path", "user__username")
    )
