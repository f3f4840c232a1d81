"""How a web process answers a fetch without PostgreSQL: from the host's delivery index.

The index (delivery/index.py) is one SQLite file per host holding every enrolled device and every
team's current release, read by all web processes of the host; its pages are shared in the
kernel's page cache, so no worker holds the fleet in its own memory. One process per host writes
it: every process runs a thread that tries to take a file lock beside the index, and the one that
holds it LISTENs on PostgreSQL. Triggers on the device and release tables (delivery migrations
0001 and 0002) announce every change that alters an answer; the writer reads what changed, a
batch at a time, and writes it to the index, so a revoked device gets 401 from every process a
few milliseconds after the commit. When the writer (re)connects it rebuilds the index whole:
announcements it missed meanwhile are unknown. If it dies, the lock passes to another process.

The index is trusted while the writer's heartbeat is fresh. Otherwise each fetch reads
PostgreSQL; and if PostgreSQL cannot answer, the index's last entry is served without retrying
the database for DATABASE_RETRY_SECONDS: fetches keep working with the last published release
through a database outage, also in a process started during it.

Each process keeps only small, bounded things of its own: the devices it looked up lately (valid
while the index's generation is unchanged, so a steady fleet's fetches skip SQLite), decoded
team entries (checked against the index's version of the entry at every use), credentials
PostgreSQL said are no device, and its fetch counts. A thread writes those counts (last seen, revision served) in one batched UPDATE
every DELIVERY_FLUSH_SECONDS, and in the same transaction the release receipts (which device
fetched which release, first and last) in one batched upsert, so the request path never writes
to PostgreSQL.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import multiprocessing.util
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, connections, transaction

from policyhub.delivery.entries import DeviceEntry, TeamEntry, team_entry_loads
from policyhub.delivery.index import CAUGHT_UP, HEARTBEAT, HostIndex, TeamKey, index_path
from policyhub.delivery.loaders import (
    NO_RELEASE,
    devices_all,
    devices_load,
    teams_all,
    teams_load,
)

log = logging.getLogger(__name__)

CHANNEL = "policyhub_delivery"
# Bounds on each process's own memory: past them a map starts over. Credentials PostgreSQL said
# are no device (someone spraying random ones) live apart from the decoded team entries.
MAX_UNKNOWN_ENTRIES = 20_000
# After a failed read, the database is left alone this long (answers come from the index).
DATABASE_RETRY_SECONDS = 5.0
# The index is trusted while the writer's heartbeat is younger than this (the writer beats at
# least every DELIVERY_FLUSH_SECONDS; see _live_seconds); each process looks at the heartbeat at
# most every LIVE_CHECK_SECONDS.
LIVE_SECONDS = 10.0
LIVE_CHECK_SECONDS = 0.5
# How long a process reads a device it changed itself from PostgreSQL, not the index: the
# writer applies the change within milliseconds.
CHANGED_SECONDS = 5.0
# How often catch_up and clear repeat their announcement while they wait for the writer.
RESEND_SECONDS = 1.0
# Announcements the writer applies in one batch (one read per table, one index transaction).
MAX_BATCH = 2000
# Dead connections (a failover, a cut network) are noticed within about this many seconds.
_CONNECTION_OPTIONS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}
_DEVICE_NOTE = re.compile(r"[0-9a-f]{64}")


def _live_seconds() -> float:
    return max(LIVE_SECONDS, 3.0 * settings.DELIVERY_FLUSH_SECONDS + 4.0)


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

    def __init__(self, index: HostIndex) -> None:
        self.index = index
        # credential hash -> when PostgreSQL said it is no device (trusted while the index is).
        self.unknown: dict[str, float] = {}
        # credential hash -> when this process changed the device (see forget_device).
        self.changed: dict[str, float] = {}
        # team -> when PostgreSQL said it has no release (trusted while the index is).
        self.no_release: dict[TeamKey, float] = {}
        # team -> (the index's version of its entry, the entry decoded).
        self.teams: dict[TeamKey, tuple[int, TeamEntry]] = {}
        # credential hash -> (the index's generation before the lookup, when, the device found);
        # kept at most DELIVERY_CACHE_SECONDS even while the generation holds.
        self.devices: dict[str, tuple[bytes, float, DeviceEntry]] = {}
        self.pending = Pending()
        # Set while this process is the host's writer and its index is complete.
        self.listening = threading.Event()
        self._live = False
        self._live_checked = float("-inf")
        self._database_down_until = 0.0
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # The thread's connection for fetch counts, kept from one flush to the next (see _flush).
        self._counts: Any = None

    # Lookups -----------------------------------------------------------------------------------

    def live(self) -> bool:
        """Whether the index is complete and kept current (the writer's heartbeat is fresh)."""
        now = time.monotonic()
        if now - self._live_checked >= LIVE_CHECK_SECONDS:
            self.index.check_generation()
            age = time.time() - (self.index.meta(HEARTBEAT) or 0.0)
            # A heartbeat from the future (a clock stepped back) proves nothing either.
            self._live = -1.0 <= age < _live_seconds()
            self._live_checked = now
        return self._live

    def _database_down(self, now: float) -> None:
        if now >= self._database_down_until:
            log.warning("database unavailable: serving the delivery index's last answers")
        self._database_down_until = now + DATABASE_RETRY_SECONDS

    def device(
        self, credential_hash: str, load: Callable[[], DeviceEntry | None]
    ) -> DeviceEntry | None:
        """The device holding this credential (hash), or None.

        A device the index does not hold yet (enrolled a moment ago) is read from PostgreSQL;
        credentials it says are no device are remembered, so a sprayer costs one query each."""
        now = time.monotonic()
        changed = self.changed.get(credential_hash)
        if changed is not None and now - changed < CHANGED_SECONDS:
            return load()  # this process changed it a moment ago: the database's word
        try:
            live = self.live()  # first: it maps the generation file again if it was replaced
            entry = self._indexed(credential_hash, now)
        except sqlite3.Error:
            self._index_failed()
            return load()
        if entry is not None and (live or now < self._database_down_until):
            return entry
        if entry is None and live:
            seen = self.unknown.get(credential_hash)
            if seen is not None and now - seen < settings.DELIVERY_CACHE_SECONDS:
                return None
        try:
            found = load()
        except Exception:
            if entry is None:
                raise
            self._database_down(now)
            return entry
        if found is None and live:
            with self._lock:
                if len(self.unknown) >= MAX_UNKNOWN_ENTRIES:
                    self.unknown.clear()
                self.unknown[credential_hash] = now
        return found

    def _indexed(self, credential_hash: str, now: float) -> DeviceEntry | None:
        generation = self.index.generation()  # before the lookup: a change after it is seen
        hit = self.devices.get(credential_hash)
        if (
            hit is not None
            and hit[0] == generation
            and now - hit[1] < settings.DELIVERY_CACHE_SECONDS
        ):
            return hit[2]
        entry = self.index.device(credential_hash)
        if entry is not None:
            with self._lock:
                if len(self.devices) >= settings.DELIVERY_DEVICE_ENTRIES:
                    self.devices.clear()
                self.devices[credential_hash] = (generation, now, entry)
        return entry

    def team(
        self, key: TeamKey, load: Callable[[], TeamEntry], version: int | None = None
    ) -> TeamEntry:
        """The team's entry: from the index while it is trusted, else from PostgreSQL, else the
        index's last one. A team the index does not hold is read from PostgreSQL (its first
        release may be a moment old), and one without a release is remembered as such.
        `version`: the entry's version in the index as the device's lookup found it."""
        now = time.monotonic()
        try:
            live = self.live()
            if version is None:
                version = self.index.team_version(key)
            if version is not None and (live or now < self._database_down_until):
                return self._decoded(key, version)
        except (sqlite3.Error, ValueError, KeyError):  # unreadable file or entry
            self._index_failed()
            return load()
        if version is None and live:
            seen = self.no_release.get(key)
            if seen is not None and now - seen < settings.DELIVERY_CACHE_SECONDS:
                return NO_RELEASE
        try:
            found = load()
        except Exception:
            if version is None:
                raise
            self._database_down(now)
            try:
                return self._decoded(key, version)
            except (sqlite3.Error, ValueError, KeyError):
                raise RuntimeError("neither PostgreSQL nor the delivery index answers") from None
        if found.current is None and live:
            with self._lock:
                if len(self.no_release) >= MAX_UNKNOWN_ENTRIES:
                    self.no_release.clear()
                self.no_release[key] = now
        return found

    def _index_failed(self) -> None:
        """The index cannot be read (a damaged or vanished file): PostgreSQL answers instead,
        and the writer rebuilds the index when it next (re)connects."""
        log.warning("cannot read the delivery index; reading PostgreSQL", exc_info=True)
        self._live, self._live_checked = False, time.monotonic()

    def _decoded(self, key: TeamKey, version: int) -> TeamEntry:
        hit = self.teams.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        stored = self.index.team(key)
        if stored is None:  # gone since the version was read
            return NO_RELEASE
        version, text = stored
        entry = team_entry_loads(text)
        with self._lock:
            if len(self.teams) >= settings.DELIVERY_TEAM_ENTRIES:
                self.teams.clear()
            self.teams[key] = (version, entry)
        return entry

    def forget_device(self, credential_hashes: list[str], *, revoked: bool) -> None:
        """A device this process just changed (revoked, moved, rotated): for a few seconds it
        is read from PostgreSQL here, so not even this process's next fetch sees the old answer
        before the writer has put the change in the index. A revoked device also leaves the
        index at once, for every process (never wrong for a revoked one; any other change only
        the writer writes, which also orders it after what it already applied)."""
        now = time.monotonic()
        with self._lock:
            if len(self.changed) >= MAX_UNKNOWN_ENTRIES:
                self.changed.clear()
            for digest in credential_hashes:
                self.unknown.pop(digest, None)
                self.changed[digest] = now
        if revoked:
            try:
                self.index.forget_devices(credential_hashes)
            except sqlite3.Error:
                log.warning(
                    "could not drop a revoked device from the delivery index now; the writer will",
                    exc_info=True,
                )

    def stats(self) -> dict[str, Any]:
        """What the index and this process hold (benchmarks and diagnostics)."""
        devices, teams = self.index.counts()
        return {
            "pid": os.getpid(),
            "live": self.live(),
            "writer": self.listening.is_set(),
            "index_devices": devices,
            "index_teams": teams,
            "decoded_teams": len(self.teams),
            "recent_devices": len(self.devices),
            "unknown": len(self.unknown),
            "index": str(self.index.path),
        }

    # Waiting for the writer ----------------------------------------------------------------------

    def catch_up(self, timeout: float = 10.0) -> bool:
        """Wait until the host's index holds every change committed before the call, so that
        this process's answers are the database's (read your own writes).

        PostgreSQL delivers notifications in commit order: a marker sent now reaches the writer
        after all of them, and it writes the marker with them. False when no writer wrote it in
        time (none listens, or the database is out of reach)."""
        return self._announce([], timeout)

    def clear(self, timeout: float = 10.0) -> bool:
        """Forget everything and have the writer rebuild the index from the database (tests
        empty tables without announcing it)."""
        with self._lock:
            self.unknown.clear()
            self.no_release.clear()
            self.teams.clear()
            self.devices.clear()
            self.changed.clear()
        return self._announce(["*"], timeout)

    def _announce(self, payloads: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.time() - (self.index.meta(HEARTBEAT) or 0.0) >= _live_seconds():
            # No writer yet: wait for one while this process's thread may become it.
            if self._thread is None or time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        token = uuid.uuid4().hex
        sent = float("-inf")
        while self.index.meta(CAUGHT_UP + token) is None:
            now = time.monotonic()
            if now > deadline:
                return False
            if now - sent > RESEND_SECONDS:
                # Again after a while: a writer that took over since may not have heard it.
                with self._connect() as sender, sender.transaction():
                    for payload in [*payloads, f"caught-up:{token}"]:
                        sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                sent = now
            time.sleep(0.002)
        self._live_checked = float("-inf")
        return True

    # The thread --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._run, name="policyhub-delivery", daemon=True
            )
            self._thread.start()
            atexit.register(self._flush_at_exit)
            # Some servers' workers end without running atexit hooks (granian's do); this
            # finaliser runs there too, so a worker's last fetch counts are written when it stops.
            multiprocessing.util.Finalize(None, self._flush_at_exit, exitpriority=10)

    def stop(self) -> None:
        """Write what is pending, let go of the writer's lock and the connections (tests,
        shutdown)."""
        self._stopping.set()
        if self.listening.is_set():
            # Wake the writer now rather than at its next timeout (any note does).
            with suppress(Exception), self._connect() as sender:
                sender.execute("SELECT pg_notify(%s, 'wake')", (CHANNEL,))
        if self._thread is not None:
            self._thread.join(timeout=settings.DELIVERY_FLUSH_SECONDS + 10)
            if self._thread.is_alive():
                # Still writing (a long rebuild): it lets go of the lock itself when it ends;
                # taking the lock and connections from under it would make two writers.
                log.warning("the delivery thread did not stop in time; leaving it to end")
                return
            self._thread = None
        self._unlock()
        self.index.close()

    def _connect(self) -> Any:
        params = {**connections["default"].get_connection_params(), **_CONNECTION_OPTIONS}
        return psycopg.connect(**params, autocommit=True)

    def _locked(self) -> bool:
        """Whether this process holds (or now took) the host's writer lock."""
        if self._lock_fd is None:
            fd = os.open(self.index.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._lock_fd = fd
        return True

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                locked = self._locked()
            except OSError:
                log.warning("cannot open the delivery index's lock", exc_info=True)
                locked = False
            if locked:
                self._write()
            else:
                self._stopping.wait(settings.DELIVERY_FLUSH_SECONDS)
                self._flush()
        self._flush()
        self._counts_close()
        if self.listening.is_set():
            self.listening.clear()
            with suppress(sqlite3.Error):
                self.index.heartbeat(0.0)  # nobody keeps the index current until the next writer
        self._unlock()

    def _write(self) -> None:
        """The writer: rebuild the index, then apply every announcement, until stopped."""
        while not self._stopping.is_set():
            try:
                with self._connect() as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    self._rebuild()
                    while not self._stopping.is_set():
                        notes = [
                            n.payload
                            for n in listener.notifies(
                                timeout=settings.DELIVERY_FLUSH_SECONDS, stop_after=1
                            )
                        ]
                        if notes:  # and whatever came with it
                            notes += [
                                n.payload
                                for n in listener.notifies(timeout=0.01, stop_after=MAX_BATCH)
                            ]
                        # A heartbeat: a silently dead connection fails here, not never.
                        listener.execute("SELECT 1")
                        if any(n.startswith("caught-up:") for n in notes):
                            # Counts first: whoever waits for a marker (catch_up) finds the
                            # fetches made before it written too.
                            self._flush()
                            self._apply(notes)
                        else:  # changes first: a slow write of counts never delays a revocation
                            self._apply(notes)
                            self._flush()
            except Exception:
                self.listening.clear()
                log.warning("delivery index writer lost PostgreSQL; retrying", exc_info=True)
                try:
                    self.index.heartbeat(0.0)  # readers stop trusting the index at once
                except sqlite3.Error:
                    log.warning("cannot write the delivery index", exc_info=True)
                self._stopping.wait(1.0)
            finally:
                connection.close()  # this thread's own, for the reads of changed rows

    def _rebuild(self) -> None:
        started = time.monotonic()
        self.index.replace_all(devices_all(), teams_all())
        self.index.heartbeat(time.time())
        self.listening.set()
        log.info("delivery index rebuilt in %.1f s", time.monotonic() - started)

    def _apply(self, notes: list[str]) -> None:
        """Read what the announcements name and write it to the index, with their markers."""
        hashes: set[str] = set()
        teams: set[TeamKey] = set()
        markers: list[str] = []
        rebuild = False
        for note in notes:
            kind, _, rest = note.partition(":")
            if kind == "device" and _DEVICE_NOTE.fullmatch(rest):
                hashes.add(rest)
            elif kind == "team":
                organization_id, _, path = rest.partition(":")
                if organization_id.isdigit():
                    teams.add((int(organization_id), path))
            elif kind == "caught-up":
                markers.append(rest)
            elif note == "*":
                rebuild = True
        if rebuild:
            self._rebuild()
            hashes, teams = set(), set()
        devices: dict[str, DeviceEntry | None] = dict.fromkeys(hashes)
        if hashes:
            devices.update(devices_load(hashes))
        entries: dict[TeamKey, TeamEntry | None] = dict.fromkeys(teams)
        if teams:
            entries.update(teams_load(teams))
        self.index.apply(devices, entries, markers, time.time())

    def _flush(self) -> None:
        """Write pending fetch counts and receipts on a connection of their own: a failed write
        (a lock timeout, say) costs a retry later, never the LISTEN connection. One transaction:
        a batch is written whole or given back whole, so a retry counts no fetch twice.

        The connection stays open between flushes. Opening one per flush, as this did, had
        PostgreSQL start a backend, load its catalogs and plan both statements afresh every
        DELIVERY_FLUSH_SECONDS in every web process (9 ms of planning alone per flush): CPU
        taken from the fetches wherever both share a machine. A connection PostgreSQL dropped
        fails the flush and is replaced at the next one."""
        rows, receipts = self.pending.take()
        if not rows and not receipts:
            return
        try:
            if self._counts is None or self._counts.closed:
                self._counts = self._connect()
                self._counts.execute("SET lock_timeout = '2s'")
            with self._counts.transaction():
                if rows:
                    self._counts.execute(FLUSH_SQL, _flush_params(rows))
                if receipts:
                    self._counts.execute(RECEIPTS_SQL, _receipts_params(receipts))
        except Exception:
            self._counts_close()  # whatever state the failure left it in
            self.pending.give_back(rows, receipts)
            log.warning("could not write %d fetch count(s); will retry", len(rows))

    def _counts_close(self) -> None:
        if self._counts is not None:
            with suppress(Exception):
                self._counts.close()
            self._counts = None

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
# An index that cannot be opened is tried again after this long.
UNUSABLE_RETRY_SECONDS = 60.0
_unusable_until = 0.0


# What a forked child inherited: never used there, and never closed there either (SQLite must not
# touch a connection across fork; closing it in the child could disturb the parent's).
_inherited: list[DeliveryCache] = []


def _forget_after_fork() -> None:
    """A forked worker starts its own cache and thread: threads do not survive fork. The lock
    descriptor it inherited is closed, or the writer's lock would outlive the writer."""
    global _cache, _cache_lock
    if _cache is not None:
        _cache._unlock()
        _inherited.append(_cache)
    _cache, _cache_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def cache() -> DeliveryCache | None:
    """This process's cache, its listener started; None when caching is off (SQLite)."""
    global _cache, _unusable_until
    if not settings.DELIVERY_CACHE:
        return None
    if _cache is None:
        if time.monotonic() < _unusable_until:
            return None
        with _cache_lock:
            if _cache is None:
                path = index_path(settings.DELIVERY_INDEX_DIR, settings.DATABASES["default"])
                try:
                    index = HostIndex(path)
                except (OSError, sqlite3.Error):
                    # Fetches read PostgreSQL meanwhile: slower, never wrong.
                    log.error("cannot use the delivery index %s", path, exc_info=True)
                    _unusable_until = time.monotonic() + UNUSABLE_RETRY_SECONDS
                    return None
                _cache = DeliveryCache(index)
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
