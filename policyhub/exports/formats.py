"""The three export formats, written as a stream of bytes and read back for verification.

CSV (a header, then one line per row; JSON-valued columns as JSON text, null as `null`), JSON (an
array with one object per line) and NDJSON (one object per line). Writing is a generator of
chunks of about CHUNK bytes: a file of any length costs the server one chunk of memory. The same
rows always give the same bytes, which is what the manifest's sha256 relies on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

FORMATS = ("csv", "json", "ndjson")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Column:
    """One column: an integer (empty when missing), text, or a JSON value; a time (UTC, ISO
    8601 with microseconds and Z) and an address are text to a reader. Rows given to `write`
    hold a JSON value as its JSON text, a time as that text."""

    name: str
    type: Literal["int", "text", "json", "time", "address"] = "text"
    source: str = ""  # the field or annotation it is read from, when not `name`

    @property
    def field(self) -> str:
        return self.source or self.name


def write(
    file_format: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]
) -> Iterator[bytes]:
    """The file, in chunks: `rows` are tuples in `columns` order."""
    if file_format == "csv":
        return _chunks(_csv_lines(columns, rows))
    lines = _json_lines(columns, rows)
    if file_format == "ndjson":
        return _chunks(line + "\n" for line in lines)
    if file_format == "json":
        return _chunks(_json_array(lines))
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def _chunks(parts: Iterable[str]) -> Iterator[bytes]:
    buffer: list[str] = []
    size = 0
    for part in parts:
        buffer.append(part)
        size += len(part)
        if size >= CHUNK:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()


def _csv_lines(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([column.name for column in columns])
    json_at = [i for i, column in enumerate(columns) if column.type == "json"]
    for row in rows:
        if json_at:
            row = list(row)
            for i in json_at:
                row[i] = "null" if row[i] is None else row[i]
        writer.writerow(row)
        if out.tell() >= CHUNK:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _json_lines(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    # Each object is assembled from pre-quoted names and values, the JSON columns' text spliced
    # in as it is: a third of the time json.dumps of a dict took with parsed values.
    names = [json.dumps(column.name) + ":" for column in columns]
    kinds = [column.type for column in columns]
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for row in rows:
        parts = []
        for name, kind, value in zip(names, kinds, row, strict=True):
            if value is None:
                text = "null"
            elif kind == "json":
                text = value
            else:
                text = dumps(value)
            parts.append(name + text)
        yield "{" + ",".join(parts) + "}"


def _json_array(lines: Iterable[str]) -> Iterator[str]:
    yield "["
    first = True
    for line in lines:
        yield ("\n" if first else ",\n") + line
        first = False
    yield "\n]\n"


def read(file_format: str, columns: Sequence[Column], stream: TextIO) -> Iterator[dict[str, Any]]:
    """The rows of a file as values (integers, text, parsed JSON), whatever the format, so a
    check reads CSV, JSON and NDJSON alike. Raises ValueError naming the line of a bad row."""
    if file_format == "csv":
        yield from _read_csv(columns, stream)
    elif file_format == "ndjson":
        for number, line in enumerate(stream, start=1):
            if line.strip():
                yield _object(columns, _loads(line, number), number)
    elif file_format == "json":
        if stream.readline().strip() == "[":
            # As written here: one object a line, read a line at a time.
            yield from _json_array_lines(columns, stream)
            return
        stream.seek(0)  # reformatted by someone: read whole
        try:
            items = json.load(stream)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(items, list):
            raise ValueError("a JSON export is an array of rows")
        for number, item in enumerate(items, start=1):
            yield _object(columns, item, number)
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def _json_array_lines(columns: Sequence[Column], stream: TextIO) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(stream, start=1):
        text = line.strip()
        if text == "]":
            if stream.read().strip():
                raise ValueError("text after the end of the JSON array")
            return
        yield _object(columns, _loads(text.removesuffix(","), number), number)
    raise ValueError("the JSON array does not end")


def _loads(text: str, number: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"row {number}: not JSON ({exc})") from None


def _read_csv(columns: Sequence[Column], stream: TextIO) -> Iterator[dict[str, Any]]:
    reader = csv.reader(stream)
    header = next(reader, None)
    names = [column.name for column in columns]
    if header != names:
        raise ValueError(f"the CSV header is not {','.join(names)}")
    for number, values in enumerate(reader, start=1):
        if len(values) != len(columns):
            raise ValueError(f"row {number}: {len(values)} fields, not {len(columns)}")
        row: dict[str, Any] = {}
        for column, value in zip(columns, values, strict=True):
            if column.type == "int":
                row[column.name] = _integer(value, column.name, number) if value else None
            elif column.type == "json":
                row[column.name] = _loads(value, number)
            else:
                row[column.name] = value
        yield row


def _object(columns: Sequence[Column], item: Any, number: int) -> dict[str, Any]:
    if not isinstance(item, dict) or set(item) != {column.name for column in columns}:
        raise ValueError(f"row {number}: not an object with the export's columns")
    for column in columns:
        value = item[column.name]
        if column.type == "int" and value is not None and type(value) is not int:
            raise ValueError(f"row {number}: {column.name} is not an integer")
        if column.type in ("text", "time", "address") and value is None:
            item[column.name] = ""
    return item


def _integer(value: str, name: str, number: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"row {number}: {name} is not an integer") from None
