"""The API's JSON parser: bodies are read strictly, so a malformed one is a 400 with a reason.

Its own module (not policyhub.apis) because DRF imports the parser named in settings while
loading its views, which policyhub.apis itself imports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser

# JSON nested deeper than this is refused: no API body PolicyHub takes needs more than ten.
MAX_JSON_DEPTH = 32


class StrictJSONParser(JSONParser):
    """JSON bodies as a 400 with a reason, never a 500: bytes that are not UTF-8, nesting past
    MAX_JSON_DEPTH (Python's parser would otherwise recurse until it crashes), NaN or Infinity
    (not JSON), and an object that names a key twice (which value would win is a guess)."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"the body is not UTF-8 (byte {exc.start})") from None
        _check_depth(text)
        try:
            return json.loads(
                text, parse_constant=_no_constant, object_pairs_hook=_no_duplicate_keys
            )
        except ValueError as exc:
            raise exceptions.ParseError(f"the body is not valid JSON: {exc}") from None


def _check_depth(text: str) -> None:
    """Refuse nesting past MAX_JSON_DEPTH before parsing (brackets inside strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise exceptions.ParseError(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out
