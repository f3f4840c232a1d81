"""Writing TOML with a real writer (tomlkit), checked by parsing it back.

Shared by the policy document and the rendered Codex files: scalars and arrays come before
tables (a key after a `[table]` header would belong to it), arrays are inline, and the text is
parsed back and compared with what was meant, so no value can ever add or change a key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.items import Array, InlineTable, Trivia, Whitespace

Json = dict[str, Any]


class RenderError(RuntimeError):
    """The TOML did not parse back to the intended values: a bug, never a user's input."""


def canonical(value: Any) -> Any:
    """Plain dicts and lists with every mapping's keys sorted, whatever order they were stored in."""
    if isinstance(value, Mapping):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def toml_text(doc: Json) -> str:
    """TOML for `doc`, parsed back and compared: a value can never add or change a key."""
    body = tomlkit.dumps(_toml_document(doc))
    if tomllib.loads(body) != canonical(doc):
        raise RenderError("rendered TOML does not parse back to the intended values")
    return body


def _toml_document(doc: Json) -> tomlkit.TOMLDocument:
    out = tomlkit.document()
    _fill(out, doc)
    return out


def _fill(container: Any, values: Mapping[str, Any]) -> None:
    """Scalars and arrays first, then tables: a key after a [table] header would belong to it."""
    for key, value in values.items():
        if not isinstance(value, Mapping):
            container.add(key, _inline(value))
    for key, value in values.items():
        if isinstance(value, Mapping):
            table = tomlkit.table(
                is_super_table=bool(value) and all(isinstance(v, Mapping) for v in value.values())
            )
            _fill(table, value)
            container.add(key, table)


def _inline(value: Any, *, nested: bool = False) -> Any:
    """Arrays are written inline, tables inside them as inline tables; an outer array of tables
    gets one table per line so a reviewer can read it."""
    if isinstance(value, list):
        return _array(
            [_inline(item, nested=True) for item in value],
            multiline=not nested and any(isinstance(item, Mapping) for item in value),
        )
    if isinstance(value, Mapping):
        inline: InlineTable = tomlkit.inline_table()
        for key, item in value.items():
            inline.append(key, _inline(item, nested=True))
        return inline
    return value


def _array(items: list[Any], *, multiline: bool) -> Array:
    """An array made in one go. tomlkit's `Array.append` re-indexes the whole array at every
    call, so appending is quadratic (8,000 prefix rules took 21 s); its constructor groups the
    items once. The items and separators are the ones `append` would make, so the text is the
    same (tests/policies/test_tomlio.py)."""
    values: list[Any] = []
    for n, item in enumerate(items):
        if n:
            values += [Whitespace(","), Whitespace(" ")]
        values.append(tomlkit.item(item))
    return Array(values, Trivia(), multiline)
