"""Arrays are made in one go (tomlkit's append is quadratic) and read exactly as tomlkit's own
append would write them."""

from __future__ import annotations

from typing import Any

import tomlkit
from hypothesis import given
from hypothesis import strategies as st

from policyhub.policies.tomlio import _array, _inline, toml_text

scalars = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.just(1.5)
)
keys = st.text("abcdefghij_-", min_size=1, max_size=8)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


def appended(items: list[Any], *, multiline: bool) -> str:
    """The array as tomlkit writes it when built by appending, one item at a time."""
    array = tomlkit.array()
    for item in items:
        array.append(_inline(item, nested=True))
    return array.multiline(multiline).as_string()


@given(st.lists(values, max_size=8), st.booleans())
def test_an_array_reads_as_tomlkit_writes_it_item_by_item(
    items: list[Any], multiline: bool
) -> None:
    made = _array([_inline(item, nested=True) for item in items], multiline=multiline)
    assert made.as_string() == appended(items, multiline=multiline)


@given(st.dictionaries(keys, values, max_size=6))
def test_a_document_parses_back_to_its_values(doc: dict[str, Any]) -> None:
    toml_text(doc)  # raises RenderError when the text does not parse back to `doc`
