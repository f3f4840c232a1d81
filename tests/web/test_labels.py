"""What pages show alike: diff lines classed the same on every page."""

from __future__ import annotations

import difflib

from policyhub.web.labels import diff_lines


def test_diff_lines_tell_file_headers_from_lines_that_look_like_them() -> None:
    before = ["a\n", "-- a comment that was removed\n"]
    after = ["a\n", "++ one that was added\n"]
    diff = "".join(difflib.unified_diff(before, after, "old/x", "new/x"))
    kinds = [(line.kind, line.text) for line in diff_lines(diff)]
    assert kinds == [
        ("hunk", "--- old/x"),
        ("hunk", "+++ new/x"),
        ("hunk", "@@ -1,2 +1,2 @@"),
        ("", " a"),
        ("del", "--- a comment that was removed"),
        ("add", "+++ one that was added"),
    ]
    assert [line.text for line in diff_lines(diff, headers=False)][:1] == ["@@ -1,2 +1,2 @@"]
