"""Where the agent reads and writes (re-rooted under --root), and how it writes: atomically."""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policyhub_agent.errors import AgentError, UsageError

ETC_DIR = "/etc/codex"
STATE_DIRS = {
    "linux": "/var/lib/policyhub-agent",
    "macos": "/Library/Application Support/PolicyHub",
}
PLATFORMS = tuple(STATE_DIRS)
# Codex runs as the developer and must read what the agent writes.
PUBLIC_MODE = 0o644
# state.json holds the device credential.
PRIVATE_MODE = 0o600
TEMP_SUFFIX = ".policyhub-tmp"


def current_platform() -> str:
    """'linux' or 'macos'; anything else is not supported."""
    if sys.platform == "darwin":
        return "macos"
    if sys.platform.startswith("linux"):
        return "linux"
    raise UsageError(f"unsupported platform {sys.platform}: the agent runs on Linux and macOS")


def reroot(root: Path, path: str | os.PathLike[str]) -> Path:
    """`path` as seen under `root`: /etc/codex under /tmp/r is /tmp/r/etc/codex."""
    absolute = Path(os.path.abspath(path))
    if root == Path("/"):
        return absolute
    return root / absolute.relative_to(absolute.anchor)


@dataclass(frozen=True)
class Layout:
    """Every path of one invocation, derived from --root, --codex-home and the platform."""

    root: Path
    platform: str
    codex_home_override: Path | None = None

    @property
    def rerooted(self) -> bool:
        return self.root != Path("/")

    def at(self, path: str | os.PathLike[str]) -> Path:
        return reroot(self.root, path)

    @property
    def etc_dir(self) -> Path:
        return self.at(ETC_DIR)

    @property
    def state_dir(self) -> Path:
        return self.at(STATE_DIRS[self.platform])

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def last_good_file(self) -> Path:
        return self.state_dir / "last-good.json"

    @property
    def hook_file(self) -> Path:
        return self.state_dir / "hook.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".lock"

    @property
    def home(self) -> Path:
        return self.at(Path.home())

    def default_codex_home(self) -> Path:
        """$CODEX_HOME or ~/.codex, as Codex itself resolves it, re-rooted."""
        configured = os.environ.get("CODEX_HOME")
        return self.at(configured if configured else Path.home() / ".codex")

    def codex_home(self, stored: str | None = None) -> Path:
        """--codex-home if given, else the one recorded at enrolment, else the default."""
        if self.codex_home_override is not None:
            return self.codex_home_override
        return Path(stored) if stored else self.default_codex_home()


def ensure_dir(path: Path, created: list[str], mode: int = 0o755) -> None:
    """mkdir -p that records each directory it makes, so uninstall removes exactly those."""
    missing: list[Path] = []
    current = path
    while not current.exists() and not current.is_symlink():
        missing.append(current)
        current = current.parent
    if not current.is_dir():
        raise AgentError(f"cannot create {path}: {current} is not a directory")
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # another process made it meanwhile: not ours to remove
        except OSError as exc:
            raise AgentError(f"cannot create {directory}: {exc.strerror}") from exc
        os.chmod(directory, mode)  # mkdir's mode is filtered by the umask
        created.append(str(directory))


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Staged:
    """A complete, fsynced temp file next to its target, waiting for its rename."""

    target: Path
    temp: Path


def stage(target: Path, data: bytes, mode: int) -> Staged:
    """Write `data` to a temp file in the target's directory (same file system: rename is atomic)."""
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent
        )
    except OSError as exc:
        raise AgentError(f"cannot write {target}: {exc.strerror}") from exc
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exact mode whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise AgentError(f"cannot write {target}: {exc.strerror}") from exc
    return Staged(target, temp)


def discard(staged: Iterable[Staged]) -> None:
    """Remove temp files that will not be renamed."""
    for item in staged:
        item.temp.unlink(missing_ok=True)


def commit(staged: list[Staged]) -> None:
    """Rename every staged file over its target, then make the renames durable."""
    done = 0
    try:
        for item in staged:
            os.replace(item.temp, item.target)
            done += 1
    except OSError as exc:
        discard(staged[done:])
        raise AgentError(f"cannot replace {staged[done].target}: {exc.strerror}") from exc
    for directory in {item.target.parent for item in staged}:
        fsync_dir(directory)


def write_atomic(target: Path, data: bytes, mode: int = PUBLIC_MODE) -> None:
    """Replace `target` with `data` so readers see the old file or the new one, never a mix."""
    commit([stage(target, data, mode)])


# Codex's files are kilobytes; a file at their place larger than this is not one of them.
MAX_BACKUP_BYTES = 1024 * 1024


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def is_current(path: Path, data: bytes, mode: int = PUBLIC_MODE) -> bool:
    """Whether `path` is a regular file holding exactly `data` with exactly `mode`."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != mode:
        return False
    return path.read_bytes() == data


def backup(path: Path) -> dict[str, Any] | None:
    """What is at `path` now (a file or a symlink), to put back when the agent lets go of it."""
    try:
        info = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(info.st_mode):
        return {"symlink": os.readlink(path)}
    if not stat.S_ISREG(info.st_mode):
        raise AgentError(f"{path} exists and is not a regular file; refusing to replace it")
    if info.st_size > MAX_BACKUP_BYTES:
        raise AgentError(f"{path} is larger than any Codex file; refusing to replace it")
    # O_NOFOLLOW: a symlink swapped in after the lstat above is refused, not followed.
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise AgentError(f"{path} is not a regular file; refusing to replace it")
        data = handle.read(MAX_BACKUP_BYTES + 1)
    return {
        # Permission bits only: a setuid or setgid bit planted by someone else must never come
        # back on a file the agent (perhaps running as root) writes.
        "mode": stat.S_IMODE(info.st_mode) & 0o777,
        "data": base64.b64encode(data[:MAX_BACKUP_BYTES]).decode(),
    }


def release(path: Path, backups: MutableMapping[str, dict[str, Any]]) -> str:
    """Give `path` back: restore what was there before the agent, or remove the agent's file."""
    saved = backups.pop(str(path), None)
    if saved is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)
        return "removed"
    if "symlink" in saved:
        path.unlink(missing_ok=True)
        os.symlink(saved["symlink"], path)
        fsync_dir(path.parent)
    else:
        write_atomic(path, base64.b64decode(saved["data"]), int(saved["mode"]) & 0o777)
    return "restored"


def remove_dirs(created: Iterable[str]) -> None:
    """Remove directories the agent made, deepest first, where nothing else lives now."""
    for directory in sorted(set(created), key=lambda d: d.count(os.sep), reverse=True):
        with contextlib.suppress(OSError):  # not empty (someone else's files) or already gone
            os.rmdir(directory)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock, so a timer run and a manual run never write at the same time."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
