"""Reads of change sets: lists, the live policy's digest, and a change set's preview."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import QuerySet

from policyhub.accounts.models import Organization
from policyhub.changes.models import ChangeSet
from policyhub.errors import ApplicationError
from policyhub.policies import document
from policyhub.policies.domain import OrgPolicy
from policyhub.policies.selectors import org_policy
from policyhub.rendering.render import render_team
from providers.base import Issue

# One label for both sides, so the file headers differ only where the content does.
PREVIEW_REVISION = "preview"


def change_set_list(organization: Organization) -> QuerySet[ChangeSet]:
    return ChangeSet.objects.filter(organization=organization)


def change_set_get(change_set_id: int) -> ChangeSet | None:
    return ChangeSet.objects.filter(pk=change_set_id).select_related("organization").first()


def organizations_with_due_change_sets(now: datetime) -> QuerySet[Organization]:
    """Organisations with an approved change set scheduled for `now` or earlier."""
    return Organization.objects.filter(
        change_sets__status=ChangeSet.Status.APPROVED, change_sets__publish_at__lte=now
    ).distinct()


def policy_digest(policy: OrgPolicy) -> str:
    """sha256 of the policy's export text: equal policies, equal digest."""
    return hashlib.sha256(document.dump(policy).encode()).hexdigest()


def live_policy_digest(organization: Organization) -> str:
    return policy_digest(org_policy(organization))


def policy_plan(organization: Organization, wanted: OrgPolicy) -> list[document.Change]:
    """The plan from the live policy to `wanted`, one change per line."""
    return document.plan(org_policy(organization), wanted)


@dataclass(frozen=True)
class FileDiff:
    """One file of a team: its unified diff from the live to the proposed content."""

    name: str
    diff: str


@dataclass(frozen=True)
class TeamDiff:
    """An affected team: the files that differ, or the errors that keep it from rendering."""

    path: str
    files: list[FileDiff] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)


@dataclass(frozen=True)
class ChangeSetPreview:
    """What publishing the change set would do: its plan and every affected team's diff."""

    plan: list[str]
    teams: list[TeamDiff]
    stale: bool  # the live policy moved on since the change set was planned

    @property
    def team_paths(self) -> list[str]:
        return [team.path for team in self.teams]


def change_set_preview(change_set: ChangeSet) -> ChangeSetPreview:
    """Render every team of the live and the proposed policy and diff the files. A change at a
    node reaches its whole subtree; teams whose files come out identical are left out."""
    live = org_policy(change_set.organization)
    wanted = document.parse(change_set.document)
    teams = []
    for path in sorted(set(live.teams) | set(wanted.teams)):
        before, _ = _render(live, path)
        after, errors = _render(wanted, path)
        if errors:
            teams.append(TeamDiff(path, errors=errors))
            continue
        if before == after:
            continue
        files = []
        for name in sorted(set(before) | set(after)):
            old, new = before.get(name), after.get(name)
            if old == new:
                continue
            diff = difflib.unified_diff(
                (old or b"").decode().splitlines(keepends=True),
                (new or b"").decode().splitlines(keepends=True),
                fromfile=f"live/{path}/{name}" if old is not None else "/dev/null",
                tofile=f"proposed/{path}/{name}" if new is not None else "/dev/null",
            )
            files.append(FileDiff(name, "".join(diff)))
        teams.append(TeamDiff(path, files=files))
    return ChangeSetPreview(
        plan=list(change_set.plan),
        teams=teams,
        stale=policy_digest(live) != change_set.base_digest,
    )


def _render(policy: OrgPolicy, path: str) -> tuple[dict[str, bytes], list[Issue]]:
    if path not in policy.teams:
        return {}, []
    try:
        return render_team(policy, path, revision=PREVIEW_REVISION).files, []
    except ApplicationError as exc:
        return {}, exc.issues
