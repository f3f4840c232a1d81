"""`{{ text|visible }}`: text with every character that would not show as itself (controls,
zero-width and direction characters, overrides, unusual spaces, blank letters) written as a
visible, named marker, so a diff or a document cannot hide or reorder what it says. Linear in the
text: one escape, one scan, one replacement per distinct character."""

from __future__ import annotations

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from providers.fields import BLANK_LETTERS, char_name, is_hidden_char

register = template.Library()


@register.filter(is_safe=True)
def visible(text: object) -> SafeString:
    value = escape(str(text))  # escaping leaves every hidden character as it is
    if value.replace("\n", "").replace("\t", "").isprintable() and BLANK_LETTERS.isdisjoint(value):
        return value  # the common case, checked at C speed
    hidden = {c for c in value if c not in "\t\n" and (not c.isprintable() or is_hidden_char(c))}
    for char in hidden:
        marker = format_html(
            '<span class="hidden-char" title="{}">&lang;{}&rang;</span>',
            char_name(char),
            f"U+{ord(char):04X}",
        )
        value = mark_safe(value.replace(char, marker))
    return value
