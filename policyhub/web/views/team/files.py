"""A team's files as the team page shows them: the unpublished file sets (rendered from the
policy as it stands), the published ones (the current release), and the diff between the two,
each labelled with the Codex versions it serves.

The files' own header names their revision ("revision 3", "revision unpublished") and the
sha256 of what follows; the diff compares what follows, so equal content says "no difference"
whatever the revisions are called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from policyhub.releases.models import Release
from policyhub.releases.selectors import file_diffs, file_sets
from policyhub.rendering.render import HEADER_RE, RenderedRelease
from policyhub.web.labels import DiffLine, codex_label, diff_lines
from providers.codex_versions import Span, Version, in_spans

# What the page calls files rendered from the policy but not published (also in their header).
UNPUBLISHED = "unpublished"


@dataclass(frozen=True)
class FileSet:
    """One file set and the Codex versions it serves."""

    spans: list[Span]
    files: dict[str, str]

    @property
    def label(self) -> str:
        return codex_label(self.spans)

    @property
    def listed(self) -> list[tuple[str, str]]:
        return sorted(self.files.items())


def unpublished_sets(rendered: RenderedRelease) -> list[FileSet]:
    return [
        FileSet(list(variant.spans), {n: b.decode() for n, b in variant.team.files.items()})
        for variant in rendered.variants
    ]


def published_sets(release: Release) -> list[FileSet]:
    """Every file set of `release` (one row: its label and its files never come apart)."""
    return [FileSet(stored.spans, dict(stored.files)) for stored in file_sets(release)]


@dataclass(frozen=True)
class FileDiff:
    name: str
    status: str  # added, removed, changed or unchanged
    lines: list[DiffLine]


@dataclass(frozen=True)
class SetDiff:
    """How the files of some Codex versions change from the published to the unpublished."""

    label: str
    files: list[FileDiff]

    @property
    def changed(self) -> bool:
        return any(f.status != "unchanged" for f in self.files)


def body(text: str) -> str:
    """A file's content below its PolicyHub header (the whole text when it has none)."""
    header = HEADER_RE.match(text)
    if header is None:
        return text
    rest = text[header.end() :]
    return rest[1:] if rest.startswith("\n") else rest


def _serving(sets: Sequence[FileSet], version: Version) -> int | None:
    return next((n for n, s in enumerate(sets) if in_spans(version, s.spans)), None)


def sets_diff(
    published: Sequence[FileSet], unpublished: Sequence[FileSet], revision: int
) -> list[SetDiff]:
    """The diff for every Codex version either side serves: the versions are cut at every
    boundary of either side, and cuts served by the same pair of sets are compared once."""
    points = sorted(
        {p for s in (*published, *unpublished) for span in s.spans for p in span if p is not None}
    )
    pairs: dict[tuple[int | None, int | None], list[Span]] = {}
    for start, until in zip(points, [*points[1:], None], strict=True):
        pair = (_serving(published, start), _serving(unpublished, start))
        if pair == (None, None):
            continue
        spans = pairs.setdefault(pair, [])
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], until)
        else:
            spans.append((start, until))
    return [
        SetDiff(
            codex_label(spans),
            _file_diffs(
                published[old].files if old is not None else {},
                unpublished[new].files if new is not None else {},
                f"revision {revision}",
            ),
        )
        for (old, new), spans in pairs.items()
    ]


def _file_diffs(old: Mapping[str, str], new: Mapping[str, str], old_label: str) -> list[FileDiff]:
    """The published and the unpublished files compared by what follows their headers."""
    found = file_diffs(
        {name: body(text) for name, text in old.items()},
        {name: body(text) for name, text in new.items()},
        old_label,
        UNPUBLISHED,
    )
    return [FileDiff(f.name, f.status, diff_lines(f.diff)) for f in found]
