"""What each web process keeps so that serving a fetch is a dictionary lookup.

Maps: device credential hash -> device (team), credential hashes known to be no device, and
team -> the bodies of its current and previous release. A thread per process LISTENs on
PostgreSQL: triggers on the device and release tables (delivery migration 0001) announce every
change that alters an answer, and the thread drops that entry the moment the change commits, so a
revoked device gets 401 at once from every process.

Entries are trusted only while the thread is listening and only if they were read after it last
(re)connected: announcements missed in between are unknown, so such entries are re-read on use.
If PostgreSQL cannot answer, the last known entry is served instead, without retrying the
database for DATABASE_RETRY_SECONDS: fetches keep working with the last published release through
a database outage.

A second connection, in the same thread, writes fetch counts (last seen, revision served) in one
batched UPDATE every DELIVERY_FLUSH_SECONDS, and in the same transaction the release receipts
(which device fetched which release, first and last) in one batched upsert, so the request path
never writes.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import connection, connections, transaction

from policyhub.delivery.entries import DeviceEntry, TeamEntry
from policyhub.delivery.loaders import delivery_snapshot

log = logging.getLogger(__name__)

CHANNEL = "policyhub_delivery"
# Bounds on memory if someone sprays random credentials: past them a map starts over. Negative
# answers live apart, so spraying never evicts the real devices' entries.
MAX_DEVICE_ENTRIES = 1_000_000
MAX_UNKNOWN_ENTRIES = 20_000
# After a failed read, the database is left alone this long (answers come from memory).
DATABASE_RETRY_SECONDS = 5.0
# Dead connections (a failover, a cut network) are noticed within about this many seconds.
_CONNECTION_OPTIONS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}

T = TypeVar("T")


Row = tuple[float, int | None, str, int]
# A device's fetches of one release within a batch: (device id, release id) -> (first seen, its
# channel, last seen). Kept apart from Row: a device given another release within one batch (a
# publish, a move) has fetched both, and each gets its receipt.
ReceiptKey = tuple[str, int]
Receipt = tuple[float, str, float]


class Pending:
    """Fetches not yet written: device id -> (last seen, revision served, channel, count), and
    the release receipts they make."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.receipts: dict[ReceiptKey, Receipt] = {}
        self.lock = threading.Lock()

    def add(
        self, device_id: str, revision: int | None, channel: str, release_id: int | None
    ) -> None:
        now = time.time()
        with self.lock:
            previous = self.rows.get(device_id)
            count = previous[3] + 1 if previous else 1
            self.rows[device_id] = (now, revision, channel, count)
            if release_id is not None:
                key = (device_id, release_id)
                first = self.receipts.get(key)
                self.receipts[key] = (now, channel, now) if first is None else (*first[:2], now)

    def take(self) -> tuple[dict[str, Row], dict[ReceiptKey, Receipt]]:
        with self.lock:
            rows, self.rows = self.rows, {}
            receipts, self.receipts = self.receipts, {}
        return rows, receipts

    def give_back(self, rows: dict[str, Row], receipts: dict[ReceiptKey, Receipt]) -> None:
        """What a failed write took: merged back so no fetch is lost."""
        with self.lock:
            for device_id, (seen, revision, channel, count) in rows.items():
                newer = self.rows.get(device_id)
                if newer is None:
                    self.rows[device_id] = (seen, revision, channel, count)
                else:
                    self.rows[device_id] = (*newer[:3], newer[3] + count)
            for key, (first, channel, last) in receipts.items():
                later = self.receipts.get(key)
                # What was taken is older than anything added since: its first fetch stays.
                self.receipts[key] = (first, channel, later[2] if later else last)


class DeliveryCache:
    """The per-process state; `cache()` returns the one for this process."""

    def __init__(self) -> None:
        self.devices: dict[str, tuple[float, DeviceEntry | None]] = {}
        self.unknown: dict[str, tuple[float, DeviceEntry | None]] = {}
        self.teams: dict[tuple[int, str], tuple[float, TeamEntry]] = {}
        self.pending = Pending()
        self.listening = threading.Event()
        # Entries read before this moment may have missed an announcement.
        self._valid_since = float("inf")
        self._database_down_until = 0.0
        self._generation = 0
        self._catching_up: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # Lookups -----------------------------------------------------------------------------------

    def lookup(self, table: dict[Any, tuple[float, T]], key: Any, load: Callable[[], T]) -> T:
        """The cached value for `key`, loading it when missing, old or unconfirmed."""
        hit = table.get(key)
        now = time.monotonic()
        if hit is not None and (
            (
                self.listening.is_set()
                and hit[0] >= self._valid_since
                and now - hit[0] < settings.DELIVERY_CACHE_SECONDS
            )
            or now < self._database_down_until
        ):
            return hit[1]
        generation = self._generation
        try:
            value = load()
        except Exception:
            if hit is None:
                raise
            if now >= self._database_down_until:
                log.warning("database unavailable: serving last known delivery answers")
            self._database_down_until = now + DATABASE_RETRY_SECONDS
            return hit[1]
        with self._lock:
            # An invalidation that arrived while we read may concern what we read: keep nothing.
            if generation == self._generation:
                limit = MAX_UNKNOWN_ENTRIES if table is self.unknown else MAX_DEVICE_ENTRIES
                if len(table) >= limit:
                    table.clear()
                table[key] = (now, value)
        return value

    def device(
        self, credential_hash: str, load: Callable[[], DeviceEntry | None]
    ) -> DeviceEntry | None:
        """The device holding this credential (hash); unknown ones are remembered apart."""
        if credential_hash in self.unknown:
            return self.lookup(self.unknown, credential_hash, load)
        found = self.lookup(self.devices, credential_hash, load)
        if found is None:
            with self._lock:
                self.devices.pop(credential_hash, None)
                if len(self.unknown) >= MAX_UNKNOWN_ENTRIES:
                    self.unknown.clear()
                self.unknown[credential_hash] = (time.monotonic(), None)
        return found

    # Invalidation ------------------------------------------------------------------------------

    def invalidate(self, payload: str) -> None:
        """Apply one announcement: `device:<credential hash>`, `team:<org id>:<path>`,
        `caught-up:<token>` (see catch_up) or `*`."""
        kind, _, rest = payload.partition(":")
        if kind == "caught-up":
            with self._lock:
                waiting = self._catching_up.get(rest)
            if waiting is not None:
                waiting.set()
            return  # another process's marker, or one whose waiter gave up: nothing changed
        with self._lock:
            self._generation += 1
            if kind == "device":
                self.devices.pop(rest, None)
                self.unknown.pop(rest, None)
            elif kind == "team":
                org_id, _, path = rest.partition(":")
                if org_id.isdigit():
                    self.teams.pop((int(org_id), path), None)
            else:
                self.devices.clear()
                self.unknown.clear()
                self.teams.clear()

    def clear(self) -> None:
        self.invalidate("*")

    def catch_up(self, timeout: float = 5.0) -> bool:
        """Wait until this process has applied every announcement of changes committed before
        the call, so that its answers are the database's (read your own writes).

        PostgreSQL delivers notifications in commit order: a marker sent now arrives after all of
        them. False when the listener does not run or the marker did not come back in time.
        """
        if not self.listening.wait(timeout):
            return False
        token, arrived = uuid.uuid4().hex, threading.Event()
        with self._lock:
            self._catching_up[token] = arrived
        try:
            with self._connect() as sender:
                sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"caught-up:{token}"))
            return arrived.wait(timeout)
        finally:
            with self._lock:
                self._catching_up.pop(token, None)

    def _listening_from_now(self) -> None:
        """(Re)connected: older entries stay as a fallback but are re-read before being trusted.
        Then every device and team is read at once, so that this process can answer any device
        through a later database outage, not only the devices it happened to serve. Changes made
        meanwhile are announced on the listening connection and applied right after."""
        with self._lock:
            self._generation += 1
            self._valid_since = time.monotonic()
        try:
            devices, teams = delivery_snapshot()
        finally:
            connection.close()  # this thread's own; it is not used again until the next warm-up
        loaded = time.monotonic()
        with self._lock:
            for digest, entry in devices.items():
                self.devices[digest] = (loaded, entry)
            for key, team in teams.items():
                self.teams[key] = (loaded, team)
        self.listening.set()

    # The listening thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="policyhub-delivery-listener", daemon=True
            )
            self._thread.start()
            atexit.register(self._flush_at_exit)
            # Some servers' workers end without running atexit hooks (granian's do); this
            # finaliser runs there too, so a worker's last fetch counts are written when it stops.
            multiprocessing.util.Finalize(None, self._flush_at_exit, exitpriority=10)

    def stop(self) -> None:
        """Write what is pending and close the connections (tests, shutdown)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=settings.DELIVERY_FLUSH_SECONDS + 5)
            self._thread = None
        self.listening.clear()

    def _connect(self) -> Any:
        params = {**connections["default"].get_connection_params(), **_CONNECTION_OPTIONS}
        return psycopg.connect(**params, autocommit=True)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._connect() as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    self._listening_from_now()
                    while not self._stopping.is_set():
                        for note in listener.notifies(timeout=settings.DELIVERY_FLUSH_SECONDS):
                            self.invalidate(note.payload)
                        # A heartbeat: a silently dead connection fails here, not never.
                        listener.execute("SELECT 1")
                        self._flush()
                    self._flush()
            except Exception:
                self.listening.clear()
                log.warning("delivery listener lost PostgreSQL; retrying", exc_info=True)
                self._stopping.wait(1.0)

    def _flush(self) -> None:
        """Write pending fetch counts and receipts on a connection of their own: a failed write
        (a lock timeout, say) costs a retry later, never the LISTEN connection. One transaction:
        a batch is written whole or given back whole, so a retry counts no fetch twice."""
        rows, receipts = self.pending.take()
        if not rows and not receipts:
            return
        try:
            with self._connect() as writer:
                writer.execute("SET lock_timeout = '2s'")
                with writer.transaction():
                    if rows:
                        writer.execute(FLUSH_SQL, _flush_params(rows))
                    if receipts:
                        writer.execute(RECEIPTS_SQL, _receipts_params(receipts))
        except Exception:
            self.pending.give_back(rows, receipts)
            log.warning("could not write %d fetch count(s); will retry", len(rows))

    def _flush_at_exit(self) -> None:
        rows, receipts = self.pending.take()
        if rows or receipts:
            try:
                with transaction.atomic(), connections["default"].cursor() as cursor:
                    if rows:
                        cursor.execute(FLUSH_SQL, _flush_params(rows))
                    if receipts:
                        cursor.execute(RECEIPTS_SQL, _receipts_params(receipts))
            except Exception:
                log.warning("could not write %d fetch count(s) at exit", len(rows))


# Rows are sorted by id so two processes writing overlapping batches lock them in the same order
# (no deadlock); an older fetch never overwrites what a newer one recorded. Each column travels as
# one comma-joined string: adapting thousands of list items one by one held the interpreter lock
# for tens of milliseconds per batch, which showed in the fetches' p99 (bench/fetch.py).
FLUSH_SQL = """
UPDATE fleet_device AS d
SET last_seen_at = GREATEST(d.last_seen_at, to_timestamp(v.seen)),
    revision_served = CASE WHEN d.last_seen_at IS NULL OR to_timestamp(v.seen) >= d.last_seen_at
                           THEN v.rev ELSE d.revision_served END,
    last_channel = CASE WHEN d.last_seen_at IS NULL OR to_timestamp(v.seen) >= d.last_seen_at
                        THEN v.ch ELSE d.last_channel END,
    fetch_count = d.fetch_count + v.n
FROM unnest(
    string_to_array(%s, ',')::uuid[],
    string_to_array(%s, ',')::float8[],
    string_to_array(%s, ',', '')::integer[],
    string_to_array(%s, ','),
    string_to_array(%s, ',')::bigint[]
) AS v(id, seen, rev, ch, n)
WHERE d.id = v.id
"""


def _flush_params(rows: Mapping[str, Row]) -> list[str]:
    ordered = sorted(rows)
    columns = zip(*(rows[device_id] for device_id in ordered), strict=True)
    seen, revisions, channels, counts = columns
    return [
        ",".join(ordered),
        ",".join(map(repr, seen)),
        ",".join("" if r is None else str(r) for r in revisions),
        ",".join(channels),
        ",".join(map(str, counts)),
    ]


# A device's receipt of each release it fetched, in (device, release) order for the same reason
# as FLUSH_SQL (the device rows are locked first there, then these, as a status report does). The joins
# leave out devices and releases deleted since the fetch: their rows would fail the batch. The
# earliest first fetch keeps its channel and the latest last fetch wins, whichever batch comes
# first; LEAST and GREATEST skip the NULLs of a receipt a status report made before any fetch.
RECEIPTS_SQL = """
INSERT INTO fleet_devicereceipt AS r
    (organization_id, device_id, release_id, first_fetched_at, first_channel, last_fetched_at,
     errors)
SELECT d.organization_id, v.id, v.release, to_timestamp(v.first), v.ch,
       to_timestamp(COALESCE(v.last, v.first)), '[]'::jsonb
FROM unnest(
    string_to_array(%s, ',')::uuid[],
    string_to_array(%s, ',')::bigint[],
    string_to_array(%s, ',')::float8[],
    string_to_array(%s, ','),
    string_to_array(%s, ',', '')::float8[]
) AS v(id, release, first, ch, last)
JOIN fleet_device AS d ON d.id = v.id
JOIN releases_release AS rel ON rel.id = v.release AND rel.organization_id = d.organization_id
ORDER BY v.id, v.release
ON CONFLICT (device_id, release_id) DO UPDATE
SET first_fetched_at = LEAST(r.first_fetched_at, EXCLUDED.first_fetched_at),
    first_channel = CASE WHEN r.first_fetched_at IS NULL
                          OR EXCLUDED.first_fetched_at < r.first_fetched_at
                         THEN EXCLUDED.first_channel ELSE r.first_channel END,
    last_fetched_at = GREATEST(r.last_fetched_at, EXCLUDED.last_fetched_at)
"""


def _receipts_params(receipts: Mapping[ReceiptKey, Receipt]) -> list[str]:
    # Not sorted here: the statement's ORDER BY does it, off this process's interpreter lock.
    # Most devices fetch once a batch: their last fetch is the first and is not sent again
    # (formatting the times is most of the cost).
    devices, releases = zip(*receipts, strict=True)
    return [
        ",".join(devices),
        ",".join(map(str, releases)),
        ",".join(repr(first) for first, _, _ in receipts.values()),
        ",".join(channel for _, channel, _ in receipts.values()),
        ",".join("" if last == first else repr(last) for first, _, last in receipts.values()),
    ]


_cache: DeliveryCache | None = None
_cache_lock = threading.Lock()


def _forget_after_fork() -> None:
    """A forked worker starts its own cache and listener: threads do not survive fork."""
    global _cache, _cache_lock
    _cache, _cache_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def cache() -> DeliveryCache | None:
    """This process's cache, its listener started; None when caching is off (SQLite)."""
    global _cache
    if not settings.DELIVERY_CACHE:
        return None
    if _cache is None:
        with _cache_lock:
            if _cache is None:
                _cache = DeliveryCache()
                _cache.start()
    return _cache


def cache_running() -> DeliveryCache | None:
    """This process's cache if it serves fetches already; never starts one (management
    commands and workers change devices without serving them)."""
    return _cache


def cache_stop() -> None:
    """Stop this process's listener, if it runs; the next `cache()` starts a new one."""
    global _cache
    if _cache is not None:
        _cache.stop()
    _cache = None
