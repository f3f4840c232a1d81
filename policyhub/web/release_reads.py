"""What the publishes and releases pages read and how they word it: revisions as "revision N",
Codex file sets by the versions they serve, a team's history, diffs line by line, and how far a
staged rollout got across the team's devices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, OuterRef, QuerySet, Subquery

from policyhub.accounts.models import Organization
from policyhub.fleet.selectors import device_states
from policyhub.releases import selectors
from policyhub.releases.models import Release
from policyhub.web.labels import DiffLine, codex_label, diff_lines
from providers.codex_versions import LEGACY_RELEASE_VERSION, parse_version


def duration(elapsed: timedelta) -> str:
    """ "42 s", "3 min 5 s", "2 h 10 min"."""
    seconds = max(int(elapsed.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(frozen=True)
class FileShown:
    name: str
    status: str
    lines: list[DiffLine]


@dataclass(frozen=True)
class SetShown:
    label: str
    files: list[FileShown]

    @property
    def changed(self) -> bool:
        return any(f.status != "unchanged" for f in self.files)


@dataclass(frozen=True)
class Rollout:
    """A staged rollout of the team's current release and how far its devices got."""

    release: Release
    previous_revision: int | None
    targeted: int  # devices inside the rollout's share
    on_new: int  # devices that have the new revision
    on_previous: int  # devices that have the previous one
    other: int  # devices with neither (not heard from yet, or older)

    @property
    def total(self) -> int:
        return self.on_new + self.on_previous + self.other


def team_history(organization: Organization, team_path: str) -> QuerySet[Release]:
    """The team's releases, each with `content_of`: for a rollback (no publish run), the
    newest earlier revision with the same content."""
    same_content = Release.objects.filter(
        organization=organization,
        team_path=team_path,
        content_digest=OuterRef("content_digest"),
        revision__lt=OuterRef("revision"),
    ).order_by("-revision")
    return selectors.release_list(organization, team_path=team_path).annotate(
        content_of=Subquery(same_content.values("revision")[:1])
    )


def rollout_progress(organization: Organization, current: Release) -> Rollout:
    """How many of the team's devices have the new revision and how many the previous one:
    one GROUP BY over the team's devices."""
    previous = current.previous.revision if current.previous else None
    rows = (
        device_states(organization)
        .filter(team__path=current.team_path)
        .values_list("expected_revision", "applied")
        .annotate(devices=Count("pk"))
        .order_by()
    )
    targeted = on_new = on_previous = other = 0
    for expected, applied, count in rows:
        if expected == current.revision:
            targeted += count
        if applied == current.revision:
            on_new += count
        elif previous is not None and applied == previous:
            on_previous += count
        else:
            other += count
    return Rollout(current, previous, targeted, on_new, on_previous, other)


def diff_sets(before: Release, after: Release) -> list[SetShown]:
    """What changed between two releases (read with their files), per Codex file set."""
    return [
        SetShown(
            codex_label(versions.spans),
            [
                FileShown(f.name, f.status, diff_lines(f.diff, headers=False))
                for f in versions.files
            ],
        )
        for versions in selectors.release_diff(before, after)
    ]


@dataclass(frozen=True)
class Serving:
    """What a release's file sets are for: the window, each set's versions, and the newest Codex
    release measured when it was made (later releases get the files made for that one)."""

    window: tuple[str, str]
    sets: list[str]
    measured_until: str

    @property
    def unmeasured(self) -> str | None:
        """The warning when the window reaches past the measured end, else None."""
        newest, measured = parse_version(self.window[1]), parse_version(self.measured_until)
        if newest <= measured:
            return None
        return (
            f"Codex {self.window[1]} is newer than {self.measured_until}, the newest release "
            f"PolicyHub had measured: its files were rendered as for {self.measured_until}"
        )


def serving(release: Release) -> Serving:
    """The release's `Serving`; one made before the end of measurement was recorded was made
    when it was LEGACY_RELEASE_VERSION."""
    sets = selectors.codex_sets(release)
    labels = [
        codex_label(
            (parse_version(start), parse_version(until) if until else None)
            for start, until in codex["versions"]
        )
        for codex in sorted(sets, key=lambda codex: parse_version(codex["versions"][0][0]))
    ]
    own = sets[0]
    window = (own["window"][0], own["window"][1])
    return Serving(window, labels, own.get("measured_until", LEGACY_RELEASE_VERSION))
