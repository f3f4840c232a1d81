"""`{{ text|visible }}`: text with every character that would not show (controls, zero-width and
direction characters, overrides) written as a visible, named marker, so a diff or a document
cannot hide or reorder what it says."""

from __future__ import annotations

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from providers.fields import char_name, is_hidden_char

register = template.Library()


@register.filter(is_safe=True)
def visible(text: object) -> SafeString:
    value = str(text)
    if not any(is_hidden_char(char) and char not in "\t\n" for char in value):
        return escape(value)  # the common case: one scan, no rebuilding
    return mark_safe(  # noqa: S308 - every piece is escaped or built by format_html
        "".join(
            format_html(
                '<span class="hidden-char" title="{}">&lang;{}&rang;</span>',
                char_name(char),
                f"U+{ord(char):04X}",
            )
            if is_hidden_char(char) and char not in "\t\n"
            else escape(char)
            for char in value
        )
    )
