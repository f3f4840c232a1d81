"""How every page names Codex versions: a file set is labelled with the versions it serves."""

from __future__ import annotations

from collections.abc import Iterable

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
