"""The agent's own records: the enrolment and sync state, and what the login hook installed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policyhub_agent import files
from policyhub_agent.errors import AgentError

STATE_VERSION = 1


def now() -> str:
    """The current UTC time as the agent records it."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass
class State:
    """state.json: who this device is and what the agent has written (mode 0600: a secret)."""

    server: str
    device_id: str
    credential: str
    organization: str
    team: str
    # key id -> base64 raw Ed25519 public key: the keys releases may be signed with.
    keys: dict[str, str]
    ca_bundle: str | None
    native_channel: bool
    codex_bin: str | None
    codex_home: str
    enrolled_at: str
    etag: str | None = None
    applied_revision: int | None = None
    last_sync: str | None = None
    last_attempt: str | None = None
    last_error: str | None = None
    # Absolute paths of the Codex files the agent wrote and still owns.
    written: list[str] = field(default_factory=list)
    # path -> what was there before the agent first wrote it (put back on release/uninstall).
    backups: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Directories the agent created (removed on uninstall when empty).
    created_dirs: list[str] = field(default_factory=list)
    # What the last sync warned about: a Codex outside the versions of the files applied, or
    # newer than the release measured when they were made.
    warnings: list[str] = field(default_factory=list)
    # Whether the last sync added Codex's native channel to requirements.toml (None: recorded
    # by no agent before 0.3.0).
    native_written: bool | None = None
    # team -> the highest revision applied for it: a lower one is a downgrade, refused.
    high_water: dict[str, int] = field(default_factory=dict)
    # The serial of the newest signed team assignment seen (None: none yet): a move is taken
    # only with a newer one.
    assignment: int | None = None
    # key id -> when the organisation revoked it: never trusted again, whatever endorses it.
    revoked_keys: dict[str, str] = field(default_factory=dict)
    # When the newest revocation list this machine verified was issued (None: none yet); an
    # older or equal one is ignored.
    revocations_issued_at: str | None = None
    # The fetch-only credential the native channel's URL carries in requirements.toml, which
    # every local user can read (None: a server or an enrolment from before they existed; the
    # sync then rotates the credential to get one).
    fetch_credential: str | None = None
    # When the applied revision was signed, as its signed statement says (None: not said).
    applied_signed_at: str | None = None
    # A new credential sent to the server, not yet confirmed: taken if the old one is refused.
    pending_credential: str | None = None


def load(path: Path) -> State | None:
    """The stored state, None when not enrolled; a damaged file is an error, not a fresh start."""
    raw = files.read_bytes(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        if data.pop("version") != STATE_VERSION:
            raise ValueError("unknown version")
        known = {f.name for f in fields(State)}
        return State(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise AgentError(f"{path} is damaged ({exc}); enrol again to replace it") from exc


def save(path: Path, state: State) -> None:
    """Write state.json atomically, readable by its owner only."""
    data = {"version": STATE_VERSION, **asdict(state)}
    files.write_atomic(
        path, json.dumps(data, indent=2, sort_keys=True).encode(), files.PRIVATE_MODE
    )


@dataclass
class HookRecord:
    """hook.json: the login hook files `install` wrote and the directories it made."""

    platform: str
    files: list[str]
    created_dirs: list[str] = field(default_factory=list)


def load_hook(path: Path) -> HookRecord | None:
    raw = files.read_bytes(path)
    if raw is None:
        return None
    try:
        return HookRecord(**json.loads(raw))
    except (ValueError, TypeError, RecursionError) as exc:
        raise AgentError(f"{path} is damaged ({exc})") from exc


def save_hook(path: Path, record: HookRecord) -> None:
    files.write_atomic(path, json.dumps(asdict(record), indent=2).encode(), files.PRIVATE_MODE)
