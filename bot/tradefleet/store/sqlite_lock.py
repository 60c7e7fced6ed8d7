"""One process per SQLite store file (#11): an exclusive `flock` on a sidecar `<file>.lock`.

Why: SQLite lets several processes write one file, and the bot used to allow it (replicas on one
laptop). But a process paused inside a write (SIGSTOP, a frozen VM, a debugger) holds SQLite's write
lock, and every other process, the new leader included, gets SQLITE_BUSY until it resumes; and with the
in-process lease (no Redis) two processes on one file would both believe they lead. So a bot's SQLite
file belongs to one process: the one holding this lock, taken when the store opens (before the
database file is even opened) and released when it closes or the process ends. The kernel releases a
`flock` when its holder dies, kill -9 included, and never while it is only paused, so:

- `wait` (`tradefleet bot`): a second process waits as a cold standby, without opening the database,
  logging `store_lock_wait` with the file and the holder's pid; it takes over the moment the holder
  exits or dies. A paused holder keeps the file (and the standby waits): never two writers.
- `refuse` (the default for other writers): a clear `PermanentError` naming the file and the holder.
- `none`: readers (`tradefleet report`) take no lock; SQLite's WAL lets them read beside the writer.

Several stores of one process on one file share the lock (a reference count), so a process that
opens its own file twice is not refused by itself. Replicas that must run at once (warm standbys
behind a Redis lease) share a MongoDB store instead. The lock file holds the holder's pid, for the
messages only: the `flock`, not the file's content, is the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from dataclasses import dataclass

from tradefleet.errors import PermanentError, StoreUnavailable

LOCK_MODES = ("wait", "refuse", "none")


@dataclass
class _Held:
    fd: int
    refs: int


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def lock_path(db_path: str) -> str:
    return os.path.abspath(db_path) + ".lock"


def holder_pid(path: str) -> int | None:
    """The pid the holder wrote into the lock file, if readable."""
    try:
        with open(path) as f:
            text = f.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def try_acquire(db_path: str) -> bool:
    """Take this process's lock on `db_path` (or a reference to it); False if another process holds it."""
    path = lock_path(db_path)
    with _guard:
        held = _held.get(path)
        if held is not None:
            held.refs += 1
            return True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StoreUnavailable(
                f"cannot create the store's lock file {path}: {e.strerror}", retry_after=1.0
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise StoreUnavailable(f"cannot lock {path}: {e.strerror}", retry_after=1.0) from e
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only the messages lack the pid
        _held[path] = _Held(fd, 1)
        return True


def release(db_path: str) -> None:
    path = lock_path(db_path)
    with _guard:
        held = _held.get(path)
        if held is None:
            return
        held.refs -= 1
        if held.refs == 0:
            del _held[path]
            os.close(held.fd)  # closing the descriptor releases the flock


def held_message(db_path: str) -> str:
    path = lock_path(db_path)
    pid = holder_pid(path)
    who = f"process {pid}" if pid is not None else "another process"
    return (
        f"sqlite store {db_path} is in use by {who} (lock file {path}); a SQLite store belongs to one "
        "process. Stop that process, point store_url at another file, or share a MongoDB store between "
        "replicas"
    )


def refuse(db_path: str) -> PermanentError:
    return PermanentError(held_message(db_path))
