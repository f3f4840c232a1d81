"""What pages show alike: the Codex versions a file set serves, and the lines of a diff."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from providers.codex_versions import Span, Version, version_text


def _last_before(until: Version) -> str:
    """The last version before `until`, with "x" for any patch (or minor) release."""
    major, minor, patch = until
    if patch:
        return version_text((major, minor, patch - 1))
    if minor:
        return f"{major}.{minor - 1}.x"
    return f"{major - 1}.x"


def codex_label(spans: Iterable[Span]) -> str:
    """The Codex versions a file set serves: "Codex 0.125.0 to 0.130.x, 0.134.0 and later",
    with an en dash for "to"."""
    parts = []
    for start, until in spans:
        if until is None:
            parts.append(f"{version_text(start)} and later")
            continue
        last = _last_before(until)
        first = version_text(start)
        if last == first:
            parts.append(first)
        elif start[2] == 0 and until == (start[0], start[1] + 1, 0):
            parts.append(last)  # every release of one minor version: "0.142.x"
        else:
            parts.append(f"{first} \N{EN DASH} {last}")
    return "Codex " + (", ".join(parts) if parts else "(no versions)")


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff, classed for the `diff` styles."""

    kind: str  # add, del, hunk (the file header lines too) or "" (context)
    text: str


def diff_lines(diff: str, *, headers: bool = True) -> list[DiffLine]:
    """A unified diff's lines, classed. The two file header lines (`---`, `+++`, before the first
    hunk; a removed line "-- x" inside one is a line like any other) are kept as hunk lines, or
    left out with `headers=False` where the page names both sides itself."""
    shown: list[DiffLine] = []
    in_hunk = False
    for text in diff.splitlines():
        if not in_hunk and text.startswith(("--- ", "+++ ")):
            if headers:
                shown.append(DiffLine("hunk", text))
            continue
        in_hunk = in_hunk or text.startswith("@@")
        shown.append(DiffLine({"+": "add", "-": "del", "@": "hunk"}.get(text[:1], ""), text))
    return shown
