"""What an export holds: its rows, pinned so that the file and its manifest (read in another
request, or a year later) describe the very same rows, and the facts its manifest states.

An audit export is pinned to the organisation's chain as it stood when it began (`through`, the
position of the last committed event): events are never changed or removed and later ones lie
beyond the pin, so the same request gives the same bytes every time. A receipts export is pinned
to a moment (`as_of`): it shows the first fetch and the apply of each device as they stood then,
which later fetches and reports never change.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Case, F, Func, Q, QuerySet, TextField, Value, When
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from policyhub.accounts.models import Organization
from policyhub.audit.chain import canonical_value
from policyhub.audit.filters import AuditFilter
from policyhub.audit.selectors import audit_chain_head, audit_events
from policyhub.errors import ApplicationError
from policyhub.exports.formats import CHUNK, FORMATS, Column, write
from policyhub.fleet.selectors import receipts_of_release
from policyhub.releases.models import Release
from providers.base import Issue

AUDIT_COLUMNS = (
    Column("id", "int"),
    Column("seq", "int"),
    Column("created_at", "time"),
    Column("actor_kind"),
    Column("actor_label"),
    Column("actor_id", "int"),
    Column("action"),
    Column("object_type"),
    Column("object_key"),
    Column("before", "json"),
    Column("after", "json"),
    Column("reason"),
    Column("source_address", "address"),
    Column("request_id"),
    Column("prev_hash"),
    Column("hash"),
)
# Filters that keep an audit export one unbroken run of the chain (each row links to the one
# before it); the others pick events out of it.
RANGE_FILTERS = frozenset({"since", "until"})
BATCH = 2000


@dataclass(frozen=True)
class Link:
    """One end of an audit export: the event's position, its link and its hash."""

    seq: int
    prev_hash: str
    hash: str


@dataclass
class Export:
    """One export: its rows in order (a queryset of the model, filtered and pinned) and the
    columns it writes; `chunks()` gives the file, `ends()` what the manifest says of its rows."""

    kind: str
    file_format: str
    organization: Organization
    filter: dict[str, str]  # the filters as given, for the manifest
    pin: dict[str, Any]  # {"through": chain position} or {"as_of": ISO time}, for the manifest
    contiguous: bool  # an unbroken run of the audit chain
    columns: Sequence[Column]
    rows: QuerySet[Any]
    sha256: str = ""  # of the bytes, once `chunks()` ran to the end

    @property
    def filename(self) -> str:
        (name, value), *_ = self.pin.items()
        pinned = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{name}-{value}")
        return f"{self.organization.slug}-{self.kind}-{pinned}.{self.file_format}"

    def chunks(self) -> Iterator[bytes]:
        """The file in chunks of about 64 kB, hashed on the way. On PostgreSQL the database
        writes the rows itself (COPY ... TO STDOUT) and this process only frames and relays
        them; elsewhere (SQLite, `make run`) Python writes them, row by row."""
        digest = hashlib.sha256()
        if connections[self.rows.db].vendor == "postgresql":
            parts = _copied(self.file_format, self.columns, self.rows)
        else:
            parts = write(self.file_format, self.columns, _python_rows(self.columns, self.rows))
        for chunk in parts:
            digest.update(chunk)
            yield chunk
        self.sha256 = digest.hexdigest()

    def ends(self) -> tuple[int, Link | None, Link | None]:
        """The row count and, for the audit trail, the first and last rows' chain links, read
        by index."""
        if self.kind != "audit":
            return self.rows.count(), None, None
        links = self.rows.values_list("seq", "prev_hash", "hash")
        first, last = links.first(), links.reverse().first()
        return self.rows.count(), Link(*first) if first else None, Link(*last) if last else None


def _python_rows(columns: Sequence[Column], rows: QuerySet[Any]) -> Iterator[tuple[Any, ...]]:
    names = [column.field for column in columns]
    for row in rows.values_list(*names).iterator(chunk_size=BATCH):
        yield tuple(_as_written(column, value) for column, value in zip(columns, row, strict=True))


def _as_written(column: Column, value: Any) -> Any:
    if value is None:
        return "null" if column.type == "json" else None
    if column.type == "time":
        return canonical_value("created_at", value)
    if column.type == "json":
        return json.dumps(value, ensure_ascii=False)
    if column.type in ("text", "address"):
        return str(value)  # a UUID, say, as PostgreSQL writes it
    return value


def _copy_expression(column: Column, *, in_json: bool = False) -> Any:
    """A column as PostgreSQL writes it: the same text `_as_written` gives (in a JSON object, a
    JSON value stays a value, null included)."""
    if column.type == "time":
        return Func(F(column.field), template=UTC_TEXT, output_field=TextField())
    if column.type == "json" and not in_json:
        return Coalesce(Cast(column.field, TextField()), Value("null"), output_field=TextField())
    if column.type == "address":
        return Func(F(column.field), function="host", output_field=TextField())
    return F(column.field)


# A time as `canonical_value` prints it: UTC, microseconds, "Z".
UTC_TEXT = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
# COPY's CSV format with a delimiter and quote that JSON text never holds unescaped writes each
# JSON object exactly as it is, one per line.
AS_IS = "(FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"


def _copied(file_format: str, columns: Sequence[Column], rows: QuerySet[Any]) -> Iterator[bytes]:
    if file_format == "csv":
        selected = rows.values_list(*(_copy_expression(c) for c in columns))
        header = ",".join(column.name for column in columns) + "\n"
        return _framed(_copy(selected, "(FORMAT csv)"), header.encode())
    pairs: list[Any] = []
    for column in columns:
        pairs += [Value(column.name), _copy_expression(column, in_json=True)]
    objects = rows.values_list(Func(*pairs, function="json_build_object", output_field=TextField()))
    lines = _copy(objects, AS_IS)
    if file_format == "ndjson":
        return _framed(lines)
    return _framed(_array(lines), b"[", b"\n]\n")


def _copy(rows: QuerySet[Any], options: str) -> Iterator[bytes]:
    """COPY of the queryset's SQL: one block per row, as PostgreSQL sends them."""
    sql, params = rows.query.sql_with_params()
    with (
        connections[rows.db].cursor() as cursor,
        cursor.copy(f"COPY ({sql}) TO STDOUT {options}", params) as copy,
    ):
        for block in copy:
            yield bytes(block)


def _array(lines: Iterator[bytes]) -> Iterator[bytes]:
    separator = b"\n"
    for line in lines:
        yield separator + line[:-1]
        separator = b",\n"


def _framed(rows: Iterator[bytes], head: bytes = b"", tail: bytes = b"") -> Iterator[bytes]:
    buffer, size = [head], len(head)
    for row in rows:
        buffer.append(row)
        size += len(row)
        if size >= CHUNK:
            yield b"".join(buffer)
            buffer, size = [], 0
    buffer.append(tail)
    yield b"".join(buffer)


def audit_export(
    organization: Organization,
    file_format: str,
    params: Mapping[str, str],
    *,
    through: int | None = None,
) -> Export:
    """The organisation's events matching `params` (the audit page's filters: actor, team,
    object_type, since, until), in chain order, up to `through` (default: the chain's head now).
    Refuses unknown formats and bad filters with the field named."""
    if file_format not in FORMATS:
        raise _refusal("format", "must be one of " + ", ".join(FORMATS))
    given = {name: str(value) for name, value in params.items() if value not in (None, "")}
    found = AuditFilter(
        given, queryset=audit_events(organization.pk), organization_id=organization.pk
    )
    unknown = sorted(set(given) - set(found.filters))
    if unknown:
        raise _refusal(unknown[0], "not a filter of the audit trail")
    if not found.is_valid():
        name, errors = next(iter(found.errors.items()))
        raise _refusal(name, " ".join(errors))
    length, _ = audit_chain_head(organization.pk)
    if through is None:
        through = length
    elif not 0 <= through <= length:
        raise _refusal("through", f"must be between 0 and {length}, the events the chain holds")
    # Chain order: an organisation's events take their ids and positions under the same lock,
    # so id order is chain order, and the trail's indexes all end in the id.
    rows = found.qs.filter(seq__lte=through).order_by("id")
    return Export(
        kind="audit",
        file_format=file_format,
        organization=organization,
        filter=given,
        pin={"through": through},
        contiguous=set(given) <= RANGE_FILTERS,
        columns=AUDIT_COLUMNS,
        rows=rows,
    )


def _refusal(field: str, text: str) -> ApplicationError:
    return ApplicationError(f"{field}: {text}", [Issue("error", field, text)])


RECEIPT_COLUMNS = (
    Column("id", "int"),
    Column("release_id", "int"),
    Column("team"),
    Column("revision", "int"),
    Column("device_id"),
    Column("hostname"),
    Column("fetched_at", "time"),
    Column("channel"),
    Column("applied_at", "time", source="applied_then"),
)


# Fetches reach the database a few seconds after they happen (written behind in batches, with
# the time of the fetch), and a status report commits a moment after its time: a receipts
# export describes the receipts as of at least this long ago, whose values no longer change.
RECEIPTS_SETTLE = timedelta(minutes=1)


def receipts_export(
    organization: Organization,
    file_format: str,
    release: Release,
    *,
    as_of: datetime | None = None,
) -> Export:
    """The devices that fetched or applied `release` by `as_of` (default: a minute ago, see
    RECEIPTS_SETTLE), with when they first fetched it, through which channel, and when they
    applied it, as of then."""
    if file_format not in FORMATS:
        raise _refusal("format", "must be one of " + ", ".join(FORMATS))
    settled = timezone.now() - RECEIPTS_SETTLE
    as_of = as_of or settled
    if as_of > settled:
        raise _refusal("as_of", "must be a minute ago or earlier: receipts still being written")
    fetched = Q(first_fetched_at__lte=as_of)
    applied = Q(applied_at__lte=as_of)
    rows = (
        receipts_of_release(release)
        .filter(fetched | applied)
        .annotate(
            fetched_at=Case(When(fetched, then=F("first_fetched_at"))),
            channel=Case(When(fetched, then=F("first_channel")), default=Value("")),
            applied_then=Case(When(applied, then=F("applied_at"))),
        )
        .order_by("id")
    )
    return Export(
        kind="receipts",
        file_format=file_format,
        organization=organization,
        filter={"team": release.team_path, "revision": str(release.revision)},
        pin={"as_of": canonical_value("created_at", as_of)},
        contiguous=False,
        columns=RECEIPT_COLUMNS,
        rows=rows,
    )
