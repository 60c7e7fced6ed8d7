"""The embedded store: one SQLite file, no server; the default for a single `tradebot` process.

Why it looks like this:
- sqlite3 blocks, so every call runs on ONE dedicated thread (a single-worker executor) that owns
  the only connection, and the event loop does not wait on the disk. One exception, on purpose: an
  order's commit (`commit_order`, the one durable write between a tick and its order request) runs on
  the loop's own thread when this process is the file's only writer and the store's thread is idle
  (`loop_commits`). The hop to that thread and back cost ~0.45 ms of a ~3 ms tick -> order, plus the
  wait for the interpreter after the fsync; the loop instead blocks for the commit itself (~0.3-0.8
  ms on this disk), which is what the order waits for anyway. The connection is used by one thread at
  a time (`_conn_lock`), never by two at once. A commit there slower than `LOOP_COMMIT_SLOW_S` (a
  stalling disk) sends the next ones through the store's thread for `LOOP_COMMIT_PAUSE_S`.
- Checkpoints run on the store's thread (`PRAGMA wal_checkpoint(PASSIVE)` at most every
  `CHECKPOINT_EVERY_S`), so the WAL stays small and is overwritten rather than grown (a cheaper
  fsync), and SQLite's automatic checkpoint (at 1,000 pages, inside whichever commit crosses it) never
  lands in an order's commit on the loop.
- One process writes a file (`sqlite_lock`: an exclusive flock on `<file>.lock`, taken at open before
  the database is touched). WAL mode lets readers (a report, the sqlite3 shell) read while it writes;
  each write is a short `BEGIN IMMEDIATE` transaction (taking the write lock up front, so no
  transaction deadlocks upgrading a read lock), and the store's thread waits up to `busy_timeout_ms`
  for a lock someone else took by hand (a `sqlite3` shell) instead of failing at once (`_patiently`;
  the connection's own busy timeout is 0, so an order's commit on the loop gives up at once).
- `synchronous=FULL`: a commit is on disk when it returns, so "recorded" means recorded even if the
  machine loses power. Prices are batched, so this costs one fsync per batch, not per sample.
- Every write is idempotent through the tables' natural keys (see `sqlite_schema`), so the buffered
  writer may retry a batch whose outcome it did not see.

What it refuses: it does not retry and it does not buffer (that is `BufferedStore`'s job). sqlite
errors are translated: locked, read-only, disk full, I/O and cannot-open become `StoreUnavailable`
(a retry may help); a corrupt file or a file from a newer tradefleet becomes `PermanentError`;
anything else is a programming error and propagates unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any, NoReturn, TypeVar

from tradefleet.domain.models import (
    BotEvent,
    Candle,
    EventKind,
    Order,
    OrderStatus,
    OrderUpdate,
    Position,
    PriceSample,
    Side,
    Signal,
)
from tradefleet.errors import PermanentError, StoreUnavailable
from tradefleet.store import sqlite_lock
from tradefleet.store.merge import advance, order_fee, plain, update_key
from tradefleet.store.sqlite_schema import migrate

T = TypeVar("T")
log = logging.getLogger("tradefleet.store")
LOCK_WAIT_LOG_S = 30.0
"""A process waiting for another's store file says so at once, then this often (and when the holder
changes)."""
LOCK_POLL_S = 0.2
CHECKPOINT_EVERY_S = 2.0
"""The store's thread checkpoints the WAL at most this often (after a call it ran; see the module
docstring)."""
LOOP_COMMIT_SLOW_S = 0.05
"""An order's commit on the loop's thread that took longer than this (a disk stalling) stops loop
commits for LOOP_COMMIT_PAUSE_S: the loop then stays free (feed, pings, lease renewal, probes) while
later commits wait on the store's thread, as every commit did before `loop_commits`."""
LOOP_COMMIT_PAUSE_S = 300.0

BUSY_FIRST_PAUSE_S = 0.001
BUSY_MAX_PAUSE_S = 0.05
"""`_patiently`'s pauses between attempts at a lock another connection holds: doubling from the first
to the last (SQLite's own busy handler sleeps 1, 2, 5, ... 100 ms)."""

DEFAULT_BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another process's write lock before the store counts as unavailable.
Long enough for a second replica's batch, short enough that the buffered writer notices an outage."""

# Primary result codes (the low byte of the extended code) that mean "not now" rather than "never".
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOMEM, _SQLITE_READONLY = 5, 6, 7, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL = 10, 11, 13, 14, 15
_SQLITE_NOTADB = 26
_UNAVAILABLE = frozenset(
    {_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOMEM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL}
    | {_SQLITE_CANTOPEN, _SQLITE_PROTOCOL}
)
_BROKEN = frozenset({_SQLITE_CORRUPT, _SQLITE_NOTADB})

_ORDER_COLUMNS = (
    "client_order_id, bot, exchange, symbol, side, order_type, signal_id, status, created_at, updated_at, "
    "quantity, quote_amount, exchange_order_id, filled_qty, cum_quote, fee, fee_asset, fencing_token, reason"
)
_UPDATE_COLUMNS = (
    "client_order_id, status, event_time, exchange_order_id, filled_qty, cum_quote, last_qty, last_price, "
    "fee, fee_asset, trade_id, exec_type, reason, source"
)
_SIGNAL_COLUMNS = (
    "signal_id, bot, exchange, symbol, interval, side, candle_open_time, candle_close_time, close, "
    "sma_short, sma_long, created_at, action"
)
_COMMIT_SIGNAL_SQL = (
    f"INSERT INTO signals ({_SIGNAL_COLUMNS}) VALUES ({', '.join('?' * 13)}) "
    "ON CONFLICT (signal_id) DO UPDATE SET action = excluded.action"
)
"""An order's signal, stored with its action in `commit_order` (a stored signal takes the new one)."""
_PING_SQL = "INSERT OR REPLACE INTO store_health (id, checked_at) VALUES (1, ?)"
"""A real one-row write: a free lock alone would not notice a read-only or failing disk."""


def _health_row(now_ms: int) -> Callable[[sqlite3.Connection], sqlite3.Cursor]:
    """The health row's write (`ping`), one transaction."""
    return lambda conn: _write(conn, lambda c: c.execute(_PING_SQL, (now_ms,)))


_CANDLE_COLUMNS = "symbol, interval, open_time, close_time, open, high, low, close, volume, closed, trades"
_PRICE_COLUMNS = "bot, exchange, symbol, exchange_ts, local_ts, update_id, bid, bid_qty, ask, ask_qty"


NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.sshfs", "afs", "lustre", "9p"}
)
"""Filesystems where SQLite's POSIX locks and WAL shared memory are not reliable (SQLite's own FAQ)."""


def network_filesystem(path: str, mounts: str | None = None) -> str | None:
    """The network filesystem type `path` lives on, or None (local, or unknown: no /proc).

    What the embedded store supports (#11): one writing process per file on one host's local disk
    (`sqlite_lock`; a second waits or is refused). A file on a network filesystem is refused at open:
    neither SQLite's locks nor the flock can be trusted there; several hosts share MongoDB."""
    if mounts is None:
        try:
            with open("/proc/self/mounts") as f:
                mounts = f.read()
        except OSError:
            return None
    target = os.path.realpath(os.path.dirname(os.path.abspath(path)) or ".")
    best, best_type = "", None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, best_type = point, parts[2]
    return best_type if best_type in NETWORK_FILESYSTEMS else None


def _primary(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def translate(error: sqlite3.Error, where: str) -> Exception:
    """The tradefleet error for an sqlite3 error (returned, for the caller to raise `from` it)."""
    code = getattr(error, "sqlite_errorcode", None)
    name = getattr(error, "sqlite_errorname", "?")
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _BROKEN:
        return PermanentError(f"sqlite store {where} is not a usable database: {error} ({name})")
    if primary in _UNAVAILABLE or (primary is None and isinstance(error, sqlite3.OperationalError)):
        return StoreUnavailable(f"sqlite store {where} unavailable: {error} ({name})", retry_after=0.5)
    return error


def _raise_translated(error: sqlite3.Error, where: str) -> NoReturn:
    translated = translate(error, where)
    if translated is error:
        raise error
    raise translated from error


def _dec(value: Decimal) -> str:
    return plain(value)


def _opt_dec(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def _to_dec(text: str) -> Decimal:
    return Decimal(text)


def _to_opt_dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _order_row(o: Order) -> tuple[Any, ...]:
    return (
        o.client_order_id, o.bot, o.exchange, o.symbol, o.side.value, o.order_type, o.signal_id,
        o.status.value, o.created_at, o.updated_at, _opt_dec(o.quantity), _opt_dec(o.quote_amount),
        o.exchange_order_id, _dec(o.filled_qty), _dec(o.cum_quote), _dec(o.fee), o.fee_asset,
        o.fencing_token, o.reason,
    )  # fmt: skip


def _signal_row(s: Signal) -> tuple[Any, ...]:
    return (
        s.signal_id, s.bot, s.exchange, s.symbol, s.interval, s.side.value, s.candle_open_time,
        s.candle_close_time, _dec(s.close), _dec(s.sma_short), _dec(s.sma_long), s.created_at, s.action,
    )  # fmt: skip


# The decoders read rows by position, in the order of the *_COLUMNS lists the SELECTs name:
# sqlite3.Row's lookup by name is a case-insensitive scan of the columns, per field.


def _order_from(r: sqlite3.Row) -> Order:
    (cid, bot, exchange, symbol, side, order_type, signal_id, status, created_at, updated_at,
     quantity, quote_amount, exchange_order_id, filled_qty, cum_quote, fee, fee_asset, fencing_token,
     reason) = r  # fmt: skip
    return Order(
        client_order_id=cid, bot=bot, exchange=exchange, symbol=symbol, side=Side(side),
        order_type=order_type, signal_id=signal_id, status=OrderStatus(status), created_at=created_at,
        updated_at=updated_at, quantity=_to_opt_dec(quantity), quote_amount=_to_opt_dec(quote_amount),
        exchange_order_id=exchange_order_id, filled_qty=_to_dec(filled_qty), cum_quote=_to_dec(cum_quote),
        fee=_to_dec(fee), fee_asset=fee_asset, fencing_token=fencing_token, reason=reason,
    )  # fmt: skip


def _update_from(r: sqlite3.Row) -> OrderUpdate:
    (cid, status, event_time, exchange_order_id, filled_qty, cum_quote, last_qty, last_price, fee,
     fee_asset, trade_id, exec_type, reason, source) = r  # fmt: skip
    return OrderUpdate(
        client_order_id=cid, status=OrderStatus(status), event_time=event_time,
        exchange_order_id=exchange_order_id, filled_qty=_to_dec(filled_qty), cum_quote=_to_dec(cum_quote),
        last_qty=_to_dec(last_qty), last_price=_to_dec(last_price), fee=_to_dec(fee), fee_asset=fee_asset,
        trade_id=trade_id, exec_type=exec_type, reason=reason, source=source,
    )  # fmt: skip


def _signal_from(r: sqlite3.Row) -> Signal:
    (signal_id, bot, exchange, symbol, interval, side, candle_open_time, candle_close_time, close,
     sma_short, sma_long, created_at, action) = r  # fmt: skip
    return Signal(
        signal_id=signal_id, bot=bot, exchange=exchange, symbol=symbol, interval=interval, side=Side(side),
        candle_open_time=candle_open_time, candle_close_time=candle_close_time, close=_to_dec(close),
        sma_short=_to_dec(sma_short), sma_long=_to_dec(sma_long), created_at=created_at, action=action,
    )  # fmt: skip


def _candle_from(r: sqlite3.Row) -> Candle:
    return Candle(
        symbol=r["symbol"], interval=r["interval"], open_time=r["open_time"], close_time=r["close_time"],
        open=_to_dec(r["open"]), high=_to_dec(r["high"]), low=_to_dec(r["low"]),
        close=_to_dec(r["close"]), volume=_to_dec(r["volume"]), closed=bool(r["closed"]),
        trades=r["trades"],
    )  # fmt: skip


def _price_from(r: sqlite3.Row) -> PriceSample:
    return PriceSample(
        bot=r["bot"], exchange=r["exchange"], symbol=r["symbol"], exchange_ts=r["exchange_ts"],
        local_ts=r["local_ts"], update_id=r["update_id"], bid=_to_dec(r["bid"]),
        bid_qty=_to_dec(r["bid_qty"]), ask=_to_dec(r["ask"]), ask_qty=_to_dec(r["ask_qty"]),
    )  # fmt: skip


def _event_from(r: sqlite3.Row) -> BotEvent:
    return BotEvent(
        event_id=r["event_id"], bot=r["bot"], kind=EventKind(r["kind"]), at_ms=r["at_ms"],
        summary=r["summary"], fields=dict(json.loads(r["fields"])),
    )  # fmt: skip


def _write(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in one write transaction, taking the write lock up front."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error says more; sqlite rolls back on its own when it must
        raise
    return result


def _rolled_back(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` in a write transaction that is always rolled back: nothing of it is ever written."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        return fn(conn)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


class SqliteStore:
    """`Store` on one SQLite file. `path` is a filesystem path or ":memory:"."""

    def __init__(
        self, path: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS, lock: str = "refuse"
    ) -> None:
        if lock not in sqlite_lock.LOCK_MODES:
            raise ValueError(f"lock must be one of {sqlite_lock.LOCK_MODES}, not {lock!r}")
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.lock = lock
        """One process per file (`sqlite_lock`): wait for the holder, refuse, or (readers) no lock."""
        self._locked = False
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        """(device, inode) of the file the connection opened: a file deleted or replaced under a
        running bot is noticed (#11). SQLite itself keeps writing to the unlinked inode, and every
        record written after the deletion would be lost at exit while /readyz said "reachable"."""
        # A private in-memory database never touches a disk, so a call costs microseconds: running
        # it on the event loop's thread is cheaper than the thread hop (what makes backtests and
        # parameter sweeps on `sqlite://:memory:` fast). Files go through the store's thread, but for an
        # order's commit (`loop_commits`, below).
        # `inline` tells the buffered store that a call never waits on anything (see there).
        self.inline = path == ":memory:"
        # No other process writes this file while it is open: the one-writer lock (`sqlite_lock`), or
        # a private in-memory database. What the order manager needs to know to let the lease's
        # confirmation overlap an order's commit (`OrderManager._confirm_early`).
        self.exclusive = self.inline or (lock != "none" and not path.startswith("file:"))
        # A private in-memory database has no other writer: the order documents this store last
        # committed are kept, so merging a report skips reading the order back (see `_apply`).
        self._committed: dict[str, Order] | None = {} if self.inline else None
        # An order's commit may run on the calling (event loop) thread: a file only this process
        # writes. It does when the connection is free at that instant (`_conn_lock`), else it goes
        # through the store's thread like any call.
        self.loop_commits = self.exclusive and not self.inline
        self._conn_lock = threading.Lock()
        self._warming: Future[None] | None = None  # `rehearse_commit`'s flush (`_warm_disk`)
        self._wal_fd: int | None = None  # `_warm_disk`'s own read-only descriptor of the WAL file
        self._checkpointed_at = 0.0
        self._loop_commits_from = 0.0  # monotonic seconds: no loop commit before (a slow one was seen)
        self.clock: Callable[[], float] = time.monotonic

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # -- plumbing ---------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise RuntimeError(f"{self!r} is not open; call `await store.open()` first")
        if self.inline:
            return self._call(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._on_thread, fn)

    def _on_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A call on the store's thread, then the WAL's checkpoint when one is due."""
        with self._conn_lock:
            result = self._patiently(fn)
            now = time.monotonic()
            if self._conn is not None and now - self._checkpointed_at >= CHECKPOINT_EVERY_S:
                self._checkpointed_at = now
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as e:  # a checkpoint is housekeeping: the next one tries again
                    log.warning("store_checkpoint_failed", extra={"event": "store_checkpoint_failed",
                                                                  "error": str(e)[:200]})  # fmt: skip
            return result

    def _patiently(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`_call`, waiting up to `busy_timeout_ms` for a lock another connection holds (someone's
        `sqlite3` shell, a second process on a `lock="none"` store), as SQLite's own busy timeout
        would: the connection's is 0 once it is open, so an order's commit on the loop's thread
        (`_if_free`) gives up at once instead, with no PRAGMA to switch it off and on (~0.07 ms cold,
        per order). Every call may run again: writes are one transaction each, rolled back on an
        error (`_write`), and idempotent (the module docstring)."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        pause = BUSY_FIRST_PAUSE_S
        while True:
            try:
                return self._call(fn)
            except StoreUnavailable as e:
                cause = e.__cause__
                busy = isinstance(cause, sqlite3.Error) and _primary(cause) in (_SQLITE_BUSY, _SQLITE_LOCKED)
                left = deadline - time.monotonic()
                if not busy or left <= 0:
                    raise
            time.sleep(min(pause, left))
            pause = min(pause * 2, BUSY_MAX_PAUSE_S)

    def _if_free(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Run `fn` on the calling thread (the loop's for an order's commit; the store's for a
        warm-up, `_warm_disk`) if the connection is free now: (True, result); else (False, None) and
        nothing ran. It must not wait on the disk for a lock: a `sqlite3` shell holding the write lock
        makes it give up at once (the connection's busy timeout is 0: `_patiently`) rather than block
        the loop; the caller then goes through the store's thread, which waits as any call does."""
        if self._conn is None or not self._conn_lock.acquire(blocking=False):
            return False, None
        try:
            return True, self._call(fn)
        except StoreUnavailable:  # rolled back (`_write`); the store's thread tries it properly
            return False, None
        finally:
            self._conn_lock.release()

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()  # a previous open failed (file locked): try again now
        self._check_same_file()
        try:
            return fn(self._conn)
        except sqlite3.Error as e:
            if _primary(e) == sqlite3.SQLITE_READONLY:
                # SQLite opened this file read-only and stays so: drop the connection and open the
                # file again next time, or the store keeps failing after the file is writable (#11).
                self._conn.close()
                self._conn = None
            _raise_translated(e, self.path)

    def _file_identity(self) -> tuple[int, int] | None:
        if self.path == ":memory:" or self.path.startswith("file:"):
            return None
        st = os.stat(self.path)
        return (st.st_dev, st.st_ino)

    def _check_same_file(self) -> None:
        """Refuse to go on writing into a database file that is no longer at its path: the records
        stay in the buffered store's queue (dumped at shutdown) and /readyz names the problem."""
        if self._identity is None:
            return
        try:
            now = self._file_identity()
        except FileNotFoundError:
            raise StoreUnavailable(
                f"database file {self.path} was deleted under the running bot; writes are held "
                "(restore the file and restart the bot; records still queued are dumped at shutdown)"
            ) from None
        except OSError as e:
            raise StoreUnavailable(f"database file {self.path}: {e.strerror}") from None
        if now != self._identity:
            raise StoreUnavailable(
                f"database file {self.path} was replaced under the running bot (another inode); writes "
                "are held; restart the bot to use the new file"
            )

    def _connect(self) -> sqlite3.Connection:
        if self._committed is not None:
            self._committed.clear()  # a new connection to ":memory:" is a new, empty database
        if self.path != ":memory:" and not self.path.startswith("file:"):
            fs = network_filesystem(self.path)
            if fs is not None:
                raise PermanentError(
                    f"sqlite store {self.path} is on a {fs} network filesystem: SQLite's locks and WAL "
                    "shared memory do not work there, and two processes could both write. The embedded "
                    "store supports processes on one host's local disk; use MongoDB to share a store"
                )
        try:
            # check_same_thread=False: an order's commit may run on the loop's thread (`_if_free`), one
            # thread at a time under `_conn_lock`.
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000, check_same_thread=False
            )
        except sqlite3.Error as e:
            _raise_translated(e, self.path)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")  # ":memory:" answers "memory", which is fine
            conn.execute("PRAGMA synchronous = FULL")
            migrate(conn, self.path)
            self._identity = self._file_identity()
            if not self.inline:
                conn.execute("PRAGMA busy_timeout = 0")  # waits for locks are `_patiently`'s from now on
        except BaseException as e:
            conn.close()
            if isinstance(e, sqlite3.Error):
                _raise_translated(e, self.path)
            raise
        return conn

    async def _take_lock(self) -> None:
        if self._locked or self.lock == "none" or self.path == ":memory:" or self.path.startswith("file:"):
            return
        logged_at: float | None = None
        logged_pid: int | None = None
        while not sqlite_lock.try_acquire(self.path):
            if self.lock == "refuse":
                raise sqlite_lock.refuse(self.path)
            pid = sqlite_lock.holder_pid(sqlite_lock.lock_path(self.path))
            now = time.monotonic()
            if logged_at is None or now - logged_at >= LOCK_WAIT_LOG_S or pid != logged_pid:
                log.warning(
                    "store_lock_wait",
                    extra={"event": "store_lock_wait", "file": self.path, "holder_pid": pid,
                           "detail": sqlite_lock.held_message(self.path)},
                )  # fmt: skip
                logged_at, logged_pid = now, pid
            await asyncio.sleep(LOCK_POLL_S)
        self._locked = True
        if logged_at is not None:
            log.warning("store_lock_acquired", extra={"event": "store_lock_acquired", "file": self.path})

    async def open(self) -> None:
        await self._take_lock()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        await self._run(lambda conn: None)  # connects and migrates on the store's thread

    async def close(self) -> None:
        if self._executor is None:
            return

        def _close() -> None:
            with self._conn_lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        loop = asyncio.get_running_loop()
        try:
            if self.inline:
                _close()
            else:
                await loop.run_in_executor(self._executor, _close)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
            if self._locked:
                sqlite_lock.release(self.path)
                self._locked = False

    async def ping(self) -> None:
        now = time.time_ns() // 1_000_000
        await self._run(_health_row(now))

    # -- writes -----------------------------------------------------------------------------------

    async def write_prices(self, samples: Sequence[PriceSample]) -> None:
        rows = [
            (s.bot, s.exchange, s.symbol, s.exchange_ts, s.local_ts, s.update_id, _dec(s.bid),
             _dec(s.bid_qty), _dec(s.ask), _dec(s.ask_qty), _dec(s.mid), _dec(s.spread))
            for s in samples
        ]  # fmt: skip
        if not rows:
            return
        sql = f"INSERT OR IGNORE INTO prices ({_PRICE_COLUMNS}, mid, spread) VALUES ({', '.join('?' * 12)})"
        await self._run(lambda conn: _write(conn, lambda c: c.executemany(sql, rows)))

    async def write_candles(self, candles: Sequence[Candle]) -> None:
        rows = [
            (c.symbol, c.interval, c.open_time, c.close_time, _dec(c.open), _dec(c.high), _dec(c.low),
             _dec(c.close), _dec(c.volume), int(c.closed), c.trades)
            for c in candles
        ]  # fmt: skip
        if not rows:
            return
        # A closed candle is final: a late in-progress version of it must not overwrite it.
        sql = (
            f"INSERT INTO candles ({_CANDLE_COLUMNS}) VALUES ({', '.join('?' * 11)}) "
            "ON CONFLICT (symbol, interval, open_time) DO UPDATE SET "
            "close_time = excluded.close_time, open = excluded.open, high = excluded.high, "
            "low = excluded.low, close = excluded.close, volume = excluded.volume, "
            "closed = excluded.closed, trades = excluded.trades "
            "WHERE excluded.closed >= candles.closed"
        )
        await self._run(lambda conn: _write(conn, lambda c: c.executemany(sql, rows)))

    async def insert_signal(self, signal: Signal) -> bool:
        row = _signal_row(signal)
        sql = f"INSERT INTO signals ({_SIGNAL_COLUMNS}) VALUES ({', '.join('?' * 13)}) ON CONFLICT DO NOTHING"
        cur = await self._run(lambda conn: _write(conn, lambda c: c.execute(sql, row)))
        return cur.rowcount == 1

    async def update_signal_action(self, signal_id: str, action: str) -> None:
        sql = "UPDATE signals SET action = ? WHERE signal_id = ?"
        await self._run(lambda conn: _write(conn, lambda c: c.execute(sql, (action, signal_id))))

    async def insert_order(self, order: Order) -> bool:
        return await self._run(lambda conn: _write(conn, lambda c: self._insert_order(c, order)))

    def _order_rows(self, signal: Signal, order: Order) -> Callable[[sqlite3.Connection], bool]:
        """`commit_order`'s rows, written by the function returned (False, and nothing written, when
        that client order id is stored already)."""
        row = _signal_row(signal)

        def commit(c: sqlite3.Connection) -> bool:
            if not self._insert_order(c, order):
                return False  # nothing else was written in this transaction
            c.execute(_COMMIT_SIGNAL_SQL, row)
            return True

        return commit

    def _loop_commits_now(self) -> bool:
        """An order's commit runs on the loop's thread now (`loop_commits`, not paused by a slow one)."""
        return self.loop_commits and self._executor is not None and self.clock() >= self._loop_commits_from

    def rehearse_commit(self, signal: Signal, order: Order) -> bool:
        """`commit_order`'s transaction run and rolled back on this (the loop's) thread, where the
        order's commit will run: none of it is written, and the code and the pages it touches are
        warm for it (`engine.hot_close`). Then the store's thread flushes the disk (`_warm_disk`): a
        virtual disk that has just flushed answers the next fsync faster than one idle for a while
        (`bench/disk_warm.py`). That flush is not the loop's to wait for, and it holds neither the
        connection nor SQLite's write lock: a close that arrives during it is read at once and its
        commit runs on the loop as usual. Only when commits run here and the connection is free this
        instant; never waits for a lock. True when it ran."""
        if not self._loop_commits_now():
            return False
        ran, _ = self._if_free(lambda conn: _rolled_back(conn, self._order_rows(signal, order)))
        if ran and self._executor is not None and (self._warming is None or self._warming.done()):
            self._warming = self._executor.submit(self._warm_disk)
        return ran

    def _warm_disk(self) -> None:
        """`fdatasync` of the WAL file through a read-only descriptor of our own, with nothing
        written, on the store's thread, for `rehearse_commit`: the disk's cache flush is what warms
        it. Until 2026-12-05 this was the health row's commit, which held the connection and the
        write lock through its fsync: an order's commit that met it (a close earlier than forecast,
        or a flush the disk stalled) went through the store's thread and waited for it, 1-15 ms
        (`bench.tick_to_order`'s `to_thread`; 3 of 196 orders in one run). Any error (no WAL yet, an
        in-memory database, a filesystem that refuses): nothing done, this was only a warm-up."""
        try:
            if self._wal_fd is None:
                self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
            os.fdatasync(self._wal_fd)
        except OSError:
            pass

    async def warmed(self) -> None:
        """Until the last `rehearse_commit`'s flush is over (tests, `bench.disk_warm`)."""
        if self._warming is not None:
            await asyncio.wrap_future(self._warming)

    async def commit_order(self, signal: Signal, order: Order) -> bool:
        """The signal, with its action, and its PENDING order in ONE transaction: one fsync, and a
        crash or an error anywhere inside leaves both or neither. A stored signal takes the new
        action. False, with nothing written, when that client order id is stored already."""
        commit = self._order_rows(signal, order)
        if self._loop_commits_now():
            started = self.clock()
            ran, inserted = self._if_free(lambda conn: _write(conn, commit))
            took = self.clock() - started
            if took > LOOP_COMMIT_SLOW_S:
                self._loop_commits_from = self.clock() + LOOP_COMMIT_PAUSE_S
                log.warning("store_commit_slow", extra={
                    "event": "store_commit_slow", "file": self.path, "ms": round(took * 1000, 1),
                    "detail": f"commits go through the store's thread for {LOOP_COMMIT_PAUSE_S:.0f} s",
                })  # fmt: skip
            if ran:
                return bool(inserted)
        return await self._run(lambda conn: _write(conn, commit))

    async def after_commit_order(self, signal: Signal, order: Order) -> None:
        """Nothing: `commit_order` wrote everything in its one transaction."""

    def _insert_order(self, c: sqlite3.Connection, order: Order) -> bool:
        sql = f"INSERT INTO orders ({_ORDER_COLUMNS}) VALUES ({', '.join('?' * 19)}) ON CONFLICT DO NOTHING"
        if c.execute(sql, _order_row(order)).rowcount != 1:
            return False
        # Reports that arrived before the order was stored (kept, never dropped) are folded in now,
        # so the document is the same whichever came first.
        current = order
        early = self._history(c, order.client_order_id)
        fee = order_fee(early)
        for u in early:
            current = advance(current, u, first_seen=True, fee=fee)
        if current != order:
            self._save_order(c, current)
        return True

    def _save_order(self, c: sqlite3.Connection, o: Order) -> None:
        c.execute(
            "UPDATE orders SET status = ?, updated_at = ?, exchange_order_id = ?, filled_qty = ?, "
            "cum_quote = ?, fee = ?, fee_asset = ?, reason = ? WHERE client_order_id = ?",
            (o.status.value, o.updated_at, o.exchange_order_id, _dec(o.filled_qty), _dec(o.cum_quote),
             _dec(o.fee), o.fee_asset, o.reason, o.client_order_id),
        )  # fmt: skip

    async def apply_order_update(self, update: OrderUpdate) -> Order | None:
        new = await self._run(lambda conn: _write(conn, lambda c: self._apply(c, update)))
        if self._committed is not None and new is not None:
            self._committed[new.client_order_id] = new  # only once the transaction committed
        return new

    def _apply(self, c: sqlite3.Connection, u: OrderUpdate) -> Order | None:
        sql = (
            f"INSERT INTO order_updates (update_key, {_UPDATE_COLUMNS}) VALUES ({', '.join('?' * 15)}) "
            "ON CONFLICT (client_order_id, update_key) DO NOTHING"
        )
        row = (
            update_key(u), u.client_order_id, u.status.value, u.event_time, u.exchange_order_id,
            _dec(u.filled_qty), _dec(u.cum_quote), _dec(u.last_qty), _dec(u.last_price), _dec(u.fee),
            u.fee_asset, u.trade_id, u.exec_type, u.reason, u.source,
        )  # fmt: skip
        first_seen = c.execute(sql, row).rowcount == 1
        order = self._committed.get(u.client_order_id) if self._committed is not None else None
        if order is None:
            found = c.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (u.client_order_id,)
            ).fetchone()
            if found is None:
                return None
            order = _order_from(found)
        # A report carrying a fee: the order's fee is recomputed from its whole history (a QUERY's
        # total or the TRADEs' sum, see `merge`), which already holds this report.
        fee = order_fee(self._history(c, u.client_order_id)) if u.fee > 0 else None
        new = advance(order, u, first_seen=first_seen, fee=fee)
        if new != order:
            self._save_order(c, new)
        return new

    @staticmethod
    def _history(c: sqlite3.Connection, client_order_id: str) -> list[OrderUpdate]:
        rows = c.execute(
            f"SELECT {_UPDATE_COLUMNS} FROM order_updates WHERE client_order_id = ? ORDER BY seq",
            (client_order_id,),
        ).fetchall()
        return [_update_from(r) for r in rows]

    async def save_position(self, position: Position) -> None:
        p = position
        sql = (
            "INSERT INTO positions (bot, symbol, qty, cost_quote, realized_pnl_quote, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (bot, symbol) DO UPDATE SET qty = excluded.qty, "
            "cost_quote = excluded.cost_quote, realized_pnl_quote = excluded.realized_pnl_quote, "
            "updated_at = excluded.updated_at"
        )
        row = (p.bot, p.symbol, _dec(p.qty), _dec(p.cost_quote), _dec(p.realized_pnl_quote), p.updated_at)
        await self._run(lambda conn: _write(conn, lambda c: c.execute(sql, row)))

    async def insert_event(self, event: BotEvent) -> bool:
        e = event
        row = (e.event_id, e.bot, e.kind.value, e.at_ms, e.summary, json.dumps(e.fields, sort_keys=True))
        sql = (
            "INSERT INTO events (event_id, bot, kind, at_ms, summary, fields) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING"
        )
        cur = await self._run(lambda conn: _write(conn, lambda c: c.execute(sql, row)))
        return cur.rowcount == 1

    # -- reads ------------------------------------------------------------------------------------

    async def events(self, bot: str, limit: int = 100) -> list[BotEvent]:
        rows = await self._select(
            "SELECT event_id, bot, kind, at_ms, summary, fields FROM events WHERE bot = ? "
            "ORDER BY at_ms DESC, event_id DESC LIMIT ?",
            (bot, limit),
        )
        return [_event_from(r) for r in reversed(rows)]

    async def _select(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        return await self._run(lambda conn: conn.execute(sql, params).fetchall())

    async def get_order(self, client_order_id: str) -> Order | None:
        rows = await self._select(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (client_order_id,)
        )
        return _order_from(rows[0]) if rows else None

    async def open_orders(self, bot: str) -> list[Order]:
        rows = await self._select(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE bot = ? AND status IN (?, ?, ?) "
            "ORDER BY created_at, client_order_id",
            (bot, OrderStatus.PENDING.value, OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value),
        )
        return [_order_from(r) for r in rows]

    async def order_updates(self, client_order_id: str) -> list[OrderUpdate]:
        rows = await self._select(
            f"SELECT {_UPDATE_COLUMNS} FROM order_updates WHERE client_order_id = ? ORDER BY event_time, seq",
            (client_order_id,),
        )
        return [_update_from(r) for r in rows]

    async def orders(self, bot: str) -> list[Order]:
        rows = await self._select(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE bot = ? ORDER BY created_at, client_order_id", (bot,)
        )
        return [_order_from(r) for r in rows]

    async def signals(self, bot: str) -> list[Signal]:
        rows = await self._select(
            f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE bot = ? ORDER BY created_at, signal_id", (bot,)
        )
        return [_signal_from(r) for r in rows]

    async def candles(self, symbol: str, interval: str) -> list[Candle]:
        rows = await self._select(
            f"SELECT {_CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND interval = ? ORDER BY open_time",
            (symbol, interval),
        )
        return [_candle_from(r) for r in rows]

    async def prices(self, bot: str, limit: int = 1000) -> list[PriceSample]:
        """The newest `limit` samples, oldest first."""
        rows = await self._select(
            f"SELECT {_PRICE_COLUMNS} FROM prices WHERE bot = ? "
            "ORDER BY local_ts DESC, update_id DESC LIMIT ?",
            (bot, limit),
        )
        return [_price_from(r) for r in reversed(rows)]

    async def bots(self) -> list[str]:
        rows = await self._select("SELECT bot FROM signals UNION SELECT bot FROM orders ORDER BY bot", ())
        return [r["bot"] for r in rows]

    async def load_position(self, bot: str, symbol: str) -> Position | None:
        rows = await self._select(
            "SELECT bot, symbol, qty, cost_quote, realized_pnl_quote, updated_at FROM positions "
            "WHERE bot = ? AND symbol = ?",
            (bot, symbol),
        )
        if not rows:
            return None
        r = rows[0]
        return Position(
            bot=r["bot"], symbol=r["symbol"], qty=_to_dec(r["qty"]), cost_quote=_to_dec(r["cost_quote"]),
            realized_pnl_quote=_to_dec(r["realized_pnl_quote"]), updated_at=r["updated_at"],
        )  # fmt: skip
