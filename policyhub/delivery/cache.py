"""What each web process keeps so that serving a fetch is a dictionary lookup.

Two maps: device credential hash -> device (team, revoked), and team -> the bodies of its current
and previous release. A thread per process LISTENs on PostgreSQL: triggers on the device and
release tables (delivery migration 0001) announce every change that alters an answer, and the
thread drops that entry the moment the change commits, so a revoked device gets 401 at once from
every process. While the thread is not listening (start-up, PostgreSQL down) entries are re-read
on use, and if PostgreSQL cannot answer the last known entry is served: fetches keep working
with the last published release through a database outage.

The same thread writes fetch counts (last seen, revision served) in one batched UPDATE every
DELIVERY_FLUSH_SECONDS, so the request path never writes.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections

log = logging.getLogger(__name__)

CHANNEL = "policyhub_delivery"
# A bound on memory if someone sprays random credentials: past it the device map starts over.
MAX_DEVICE_ENTRIES = 500_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    device_id: str
    organization_id: int
    team_path: str


@dataclass(frozen=True, slots=True)
class Served:
    """One release as it goes out: quoted ETag and both bodies, already encoded."""

    release_id: int
    revision: int
    etag: str
    agent_body: bytes
    native_body: bytes


@dataclass(frozen=True, slots=True)
class TeamEntry:
    current: Served | None
    previous: Served | None
    rollout_percent: int


class Pending:
    """Fetches not yet written: device id -> (last seen, revision served, channel, count)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, int | None, str, int]] = {}
        self.lock = threading.Lock()

    def add(self, device_id: str, revision: int | None, channel: str) -> None:
        with self.lock:
            previous = self.rows.get(device_id)
            count = previous[3] + 1 if previous else 1
            self.rows[device_id] = (time.time(), revision, channel, count)

    def take(self) -> dict[str, tuple[float, int | None, str, int]]:
        with self.lock:
            rows, self.rows = self.rows, {}
        return rows

    def give_back(self, rows: dict[str, tuple[float, int | None, str, int]]) -> None:
        """Rows a failed write took: merged back so no fetch is lost."""
        with self.lock:
            for device_id, (seen, revision, channel, count) in rows.items():
                newer = self.rows.get(device_id)
                if newer is None:
                    self.rows[device_id] = (seen, revision, channel, count)
                else:
                    self.rows[device_id] = (*newer[:3], newer[3] + count)


class DeliveryCache:
    """The per-process state; `cache()` returns the one for this process."""

    def __init__(self) -> None:
        self.devices: dict[str, tuple[float, DeviceEntry | None]] = {}
        self.teams: dict[tuple[int, str], tuple[float, TeamEntry]] = {}
        self.pending = Pending()
        self.listening = threading.Event()
        self._generation = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # Lookups -----------------------------------------------------------------------------------

    def lookup(self, table: dict[Any, tuple[float, T]], key: Any, load: Callable[[], T]) -> T:
        """The cached value for `key`, loading it when missing, old or unconfirmed."""
        hit = table.get(key)
        if (
            hit is not None
            and self.listening.is_set()
            and time.monotonic() - hit[0] < settings.DELIVERY_CACHE_SECONDS
        ):
            return hit[1]
        generation = self._generation
        try:
            value = load()
        except Exception:
            if hit is not None:
                log.warning("database unavailable; serving the last known delivery answer")
                return hit[1]
            raise
        with self._lock:
            # An invalidation that arrived while we read may concern what we read: keep nothing.
            if generation == self._generation:
                if table is self.devices and len(table) >= MAX_DEVICE_ENTRIES:
                    table.clear()
                table[key] = (time.monotonic(), value)
        return value

    # Invalidation ------------------------------------------------------------------------------

    def invalidate(self, payload: str) -> None:
        """Apply one announcement: `device:<credential hash>`, `team:<org id>:<path>` or `*`."""
        kind, _, rest = payload.partition(":")
        with self._lock:
            self._generation += 1
            if kind == "device":
                self.devices.pop(rest, None)
            elif kind == "team":
                org_id, _, path = rest.partition(":")
                if org_id.isdigit():
                    self.teams.pop((int(org_id), path), None)
            else:
                self.devices.clear()
                self.teams.clear()

    def clear(self) -> None:
        self.invalidate("*")

    # The listening thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="policyhub-delivery-listener", daemon=True
            )
            self._thread.start()
            atexit.register(self._flush_at_exit)

    def stop(self) -> None:
        """Write what is pending and close the listening connection (tests, shutdown)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=settings.DELIVERY_FLUSH_SECONDS + 5)
            self._thread = None
        self.listening.clear()

    def _run(self) -> None:
        import psycopg

        params = connections["default"].get_connection_params()
        while not self._stopping.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Whatever changed while nobody listened is unknown: start over.
                    self.clear()
                    self.listening.set()
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=settings.DELIVERY_FLUSH_SECONDS):
                            self.invalidate(note.payload)
                        self._flush(conn)
            except Exception:
                self.listening.clear()
                log.warning("delivery listener lost PostgreSQL; retrying", exc_info=True)
                self._stopping.wait(1.0)

    def _flush(self, conn: Any) -> None:
        rows = self.pending.take()
        if not rows:
            return
        try:
            conn.execute(FLUSH_SQL, _flush_params(rows))
        except Exception:
            self.pending.give_back(rows)
            raise

    def _flush_at_exit(self) -> None:
        rows = self.pending.take()
        if rows:
            try:
                with connections["default"].cursor() as cursor:
                    cursor.execute(FLUSH_SQL, _flush_params(rows))
            except Exception:
                log.warning("could not write %d fetch count(s) at exit", len(rows))


FLUSH_SQL = """
UPDATE fleet_device AS d
SET last_seen_at = GREATEST(d.last_seen_at, v.seen), revision_served = v.rev,
    last_channel = v.ch, fetch_count = d.fetch_count + v.n
FROM unnest(%s::uuid[], %s::timestamptz[], %s::integer[], %s::text[], %s::bigint[])
    AS v(id, seen, rev, ch, n)
WHERE d.id = v.id
"""


def _flush_params(rows: dict[str, tuple[float, int | None, str, int]]) -> list[list[Any]]:
    ids, seen, revisions, channels, counts = [], [], [], [], []
    for device_id, (at, revision, channel, count) in rows.items():
        ids.append(device_id)
        seen.append(datetime.fromtimestamp(at, tz=UTC))
        revisions.append(revision)
        channels.append(channel)
        counts.append(count)
    return [ids, seen, revisions, channels, counts]


_cache: DeliveryCache | None = None
_cache_pid: int | None = None


def cache_stop() -> None:
    """Stop this process's listener, if it runs; the next `cache()` starts a new one."""
    global _cache
    if _cache is not None and _cache_pid == os.getpid():
        _cache.stop()
    _cache = None


def cache() -> DeliveryCache | None:
    """This process's cache, its listener started; None when caching is off (SQLite)."""
    global _cache, _cache_pid
    if not settings.DELIVERY_CACHE:
        return None
    if _cache is None or _cache_pid != os.getpid():  # a forked worker starts its own
        _cache, _cache_pid = DeliveryCache(), os.getpid()
        _cache.start()
    return _cache
