"""The host's delivery index: every enrolled device and every team's current release, in one
SQLite file that all web processes of a host read.

One process per host writes it (delivery/cache.py elects it with a file lock); the others only
read. SQLite in WAL mode lets them read while it writes, each read sees a committed state, and the
file's pages live once in the kernel's page cache, shared by every worker, instead of in each
worker's heap: a worker's own memory no longer grows with the fleet (bench/fetch.py measures it).
The index outlives the processes, so a worker started during a database outage still answers.

Tables:
* `devices`: sha256 of a credential (raw bytes) -> device id, organisation, team path. A device
  is listed under its credential and its fetch credential.
* `teams`: (organisation, team path) -> the entry fetches are answered from (entries.py), and a
  version that changes with every write, so processes can keep decoded entries and know when
  one is stale.
* `meta`: the writer's heartbeat (when it last confirmed it hears every change) and the markers
  of `DeliveryCache.catch_up`.

Beside it, an 8-byte generation file, mapped into every process's memory, changes after every
committed write to `devices` or `teams` (to a random value: two processes writing at once never
write the same one). A process may keep what it read while the generation it read *before* the
read is unchanged: reading the generation costs a fraction of a microsecond, a SQLite lookup ten.

It is a cache of PostgreSQL: nothing in it is the only copy, and it is rebuilt whole each time a
writer starts listening.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import sqlite3
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from policyhub.delivery.entries import DeviceEntry, TeamEntry, team_entry_dumps

TeamKey = tuple[int, str]
log = logging.getLogger(__name__)

# The layout of the file: a change of it is a new file name, so an old file is never misread.
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    hash BLOB PRIMARY KEY,
    device_id TEXT NOT NULL,
    organization_id INTEGER NOT NULL,
    team_path TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS teams (
    organization_id INTEGER NOT NULL,
    team_path TEXT NOT NULL,
    version INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (organization_id, team_path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL) WITHOUT ROWID;
"""
# One statement for both lookups of a fetch (each costs about 5 µs from Python).
DEVICE_SQL = """
SELECT d.device_id, d.organization_id, d.team_path, t.version
FROM devices AS d
LEFT JOIN teams AS t ON t.organization_id = d.organization_id AND t.team_path = d.team_path
WHERE d.hash = ?
"""
# SQLite's own page cache per connection; the kernel's page cache holds the rest, shared.
CACHE_KIB = 2048
BUSY_MS = 5000
FORGET_BUSY_MS = 200
HEARTBEAT = "heartbeat"
CAUGHT_UP = "caught-up:"
# Rows a snapshot writes per statement.
BATCH = 5000
GENERATION_BYTES = 8


def index_path(directory: str, database: Mapping[str, Any]) -> Path:
    """The index of one database on this host: one file per database, so two deployments (or
    test runs) on one machine never share one."""
    where = f"{database.get('HOST') or ''}:{database.get('PORT') or ''}/{database.get('NAME')}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:16]
    return Path(directory) / f"delivery-v{SCHEMA_VERSION}-{digest}.sqlite3"


def _hash(digest: str) -> bytes:
    return bytes.fromhex(digest)


def _alive(thread: weakref.ref[threading.Thread]) -> bool:
    found = thread()
    return found is not None and found.is_alive()


def _private(path: Path, kind: Callable[[int], bool]) -> None:
    """The index answers who a credential belongs to: its directory and file must be this
    user's own, not a link, and closed to everyone else (a directory in a shared temporary
    directory could have been made by another user first)."""
    info = os.lstat(path)
    if not kind(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PermissionError(
            f"{path} must be owned by this user (uid {os.geteuid()}), not a link, and closed "
            "to group and others; remove it or set DELIVERY_INDEX_DIR elsewhere"
        )


FileId = tuple[int, int]


def _map_generation(path: Path) -> tuple[mmap.mmap, FileId]:
    """The generation file mapped, and which file it is (device, inode)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        _private(path, stat.S_ISREG)
        info = os.fstat(fd)
        if info.st_size < GENERATION_BYTES:
            os.ftruncate(fd, GENERATION_BYTES)
        mapped = mmap.mmap(fd, GENERATION_BYTES)
        if info.st_size < GENERATION_BYTES:  # a new file: a value no process has read before
            mapped[:GENERATION_BYTES] = os.urandom(GENERATION_BYTES)
        return mapped, (info.st_dev, info.st_ino)
    finally:
        os.close(fd)  # the mapping keeps the file


def _write_ahead_log(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode (a no-op once it is). While another process holds the write
    lock, as when a server's workers boot and create a new index at once, SQLite answers this
    "database is locked" at once rather than calling its busy handler (waiting could deadlock),
    so it is tried again here, for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + BUSY_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class HostIndex:
    """The index file, with one SQLite connection per thread that uses it."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the index; OSError or sqlite3.Error when it cannot be trusted."""
        self.path = path
        self._local = threading.local()
        # (the thread, its connection): a connection whose thread ended is closed.
        self._connections: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._lock = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private(path.parent, stat.S_ISDIR)
        self.connection().executescript(SCHEMA)
        self.generation_path = path.with_suffix(".gen")
        self._generation: mmap.mmap | None
        self._generation, self._generation_id = _map_generation(self.generation_path)

    def generation(self) -> bytes:
        """A value that changes whenever a device or team changes in the index; read it before
        the lookup whose answer it vouches for. Without a generation file, a new value each time
        (nothing read before is ever reused)."""
        mapped = self._generation
        return mapped[:GENERATION_BYTES] if mapped is not None else os.urandom(GENERATION_BYTES)

    def check_generation(self) -> None:
        """Map the generation file again if it is no longer the one mapped (removed, replaced):
        writes to another file would never reach this process. Called every half second."""
        try:
            info = os.lstat(self.generation_path)
            if (info.st_dev, info.st_ino) == self._generation_id and self._generation is not None:
                return
        except FileNotFoundError:
            pass  # made anew below, at a value no process has read
        try:
            self._generation, self._generation_id = _map_generation(self.generation_path)
        except OSError:
            log.warning("cannot map the delivery index's generation file", exc_info=True)
            self._generation = None

    def _changed(self) -> None:
        """After the commit: whoever read the old generation reads the index again."""
        self.check_generation()
        if self._generation is not None:
            self._generation[:GENERATION_BYTES] = os.urandom(GENERATION_BYTES)

    def connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # Autocommit: every read is its own snapshot, every write an explicit transaction.
            db = sqlite3.connect(
                self.path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False
            )
            try:
                os.chmod(self.path, 0o600)
                _private(self.path, stat.S_ISREG)
                _write_ahead_log(db)
                db.execute("PRAGMA synchronous = NORMAL")  # a cache: durable enough in WAL mode
                db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            except BaseException:
                db.close()
                raise
            self._local.db = db
            with self._lock:
                ended = [(t, c) for t, c in self._connections if not _alive(t)]
                for _, old in ended:
                    old.close()
                self._connections = [(t, c) for t, c in self._connections if _alive(t)] + [
                    (weakref.ref(threading.current_thread()), db)
                ]
        return db

    def close(self) -> None:
        with self._lock:
            for _, db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    class _Transaction:
        def __init__(self, db: sqlite3.Connection, committed: Callable[[], None] | None) -> None:
            self.db = db
            self.committed = committed

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: object, *_: object) -> None:
            if kind is None:
                try:
                    self.db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT (a full disk) leaves the transaction open: end it, or every
                    # later write on this connection fails.
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise
                if self.committed is not None:
                    self.committed()
            elif self.db.in_transaction:  # SQLite may have rolled it back already
                self.db.execute("ROLLBACK")

    def _write(self, committed: Callable[[], None] | None = None) -> HostIndex._Transaction:
        return HostIndex._Transaction(self.connection(), committed)

    # Reads (any process) ------------------------------------------------------------------------

    def device(self, digest: str) -> DeviceEntry | None:
        """The device with this credential hash, with the version of its team's entry."""
        row = self.connection().execute(DEVICE_SQL, (_hash(digest),)).fetchone()
        return DeviceEntry(*row) if row else None

    def team_version(self, key: TeamKey) -> int | None:
        row = (
            self.connection()
            .execute("SELECT version FROM teams WHERE organization_id = ? AND team_path = ?", key)
            .fetchone()
        )
        return row[0] if row else None

    def team(self, key: TeamKey) -> tuple[int, str] | None:
        """(version, the entry as stored) of a team with a current release; None otherwise."""
        row: tuple[int, str] | None = (
            self.connection()
            .execute(
                "SELECT version, entry FROM teams WHERE organization_id = ? AND team_path = ?",
                key,
            )
            .fetchone()
        )
        return row

    def meta(self, key: str) -> float | None:
        row = self.connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def counts(self) -> tuple[int, int]:
        db = self.connection()
        devices = db.execute("SELECT count(*) FROM devices").fetchone()[0]
        teams = db.execute("SELECT count(*) FROM teams").fetchone()[0]
        return devices, teams

    # Writes (the host's writer, and a process forgetting a device it just changed) ------------

    def forget_devices(self, digests: Iterable[str]) -> None:
        """Drop revoked devices at once, or fail fast: while the writer rebuilds the index
        (seconds at a million devices) a request must not wait for it, and the writer drops
        them anyway."""
        db = self.connection()
        db.execute(f"PRAGMA busy_timeout = {FORGET_BUSY_MS}")
        try:
            with self._write(self._changed):
                db.executemany("DELETE FROM devices WHERE hash = ?", [(_hash(d),) for d in digests])
        finally:
            db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")

    def heartbeat(self, at: float) -> None:
        with self._write() as db:
            _set_meta(db, HEARTBEAT, at)

    def replace_all(
        self,
        devices: Iterator[tuple[str, DeviceEntry]],
        teams: Iterator[tuple[TeamKey, TeamEntry]],
    ) -> None:
        """Every device and team anew, in one transaction: readers see the old index until the
        new one is complete. Streamed in batches, so memory stays flat at any fleet size."""
        version = time.time_ns()
        with self._write(self._changed) as db:
            db.execute("DELETE FROM devices")
            db.execute("DELETE FROM teams")
            while batch := [
                (_hash(digest), e.device_id, e.organization_id, e.team_path)
                for digest, e in islice(devices, BATCH)
            ]:
                db.executemany("INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?)", batch)
            while rows := [
                (*key, version, team_entry_dumps(entry))
                for key, entry in islice(teams, BATCH // 10)
            ]:
                db.executemany("INSERT OR REPLACE INTO teams VALUES (?, ?, ?, ?)", rows)

    def apply(
        self,
        devices: dict[str, DeviceEntry | None],
        teams: dict[TeamKey, TeamEntry | None],
        markers: Iterable[str],
        heartbeat: float,
    ) -> None:
        """What changed, in one transaction: devices and teams as they are now (None: gone),
        then the catch-up markers of the announcements applied, and the heartbeat."""
        version = time.time_ns()
        with self._write(self._changed if devices or teams else None) as db:
            for digest, entry in devices.items():
                if entry is None:
                    db.execute("DELETE FROM devices WHERE hash = ?", (_hash(digest),))
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?)",
                        (_hash(digest), entry.device_id, entry.organization_id, entry.team_path),
                    )
            for key, team in teams.items():
                if team is None:
                    db.execute("DELETE FROM teams WHERE organization_id = ? AND team_path = ?", key)
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO teams VALUES (?, ?, ?, ?)",
                        (*key, version, team_entry_dumps(team)),
                    )
            for token in markers:
                _set_meta(db, CAUGHT_UP + token, heartbeat)
            # Markers are waited for a few seconds at most.
            db.execute(
                "DELETE FROM meta WHERE key LIKE ? AND value < ?", (CAUGHT_UP + "%", heartbeat - 60)
            )
            _set_meta(db, HEARTBEAT, heartbeat)


def _set_meta(db: sqlite3.Connection, key: str, value: float) -> None:
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
