"""The `visible` filter: every character that would not show as itself becomes a named marker;
everything else is escaped and left as it was."""

from __future__ import annotations

import pytest

from policyhub.web.templatetags.visible import visible


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\u200f", "RIGHT-TO-LEFT MARK"),
        ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),
        ("\u3164", "HANGUL FILLER"),  # a letter that renders as nothing
        ("\u00a0", "NO-BREAK SPACE"),
        ("\u2028", "LINE SEPARATOR"),
    ],
)
def test_a_hidden_character_becomes_a_named_marker(char: str, name: str) -> None:
    code = f"U+{ord(char):04X}"
    assert visible(f"a{char}b") == (
        f'a<span class="hidden-char" title="{code} {name}">&lang;{code}&rang;</span>b'
    )


def test_text_is_escaped_and_lines_and_tabs_stay() -> None:
    text = "\u05e9\u05dc\u05d5\u05dd \u6f22\u5b57 \U0001f389"  # Hebrew, kanji, an emoji
    assert visible(f'<b>"x"</b>\n\t{text}') == f"&lt;b&gt;&quot;x&quot;&lt;/b&gt;\n\t{text}"
