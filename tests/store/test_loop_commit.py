"""An order's commit on the event loop's own thread (`SqliteStore.loop_commits`): it runs there only
when the connection is free, never beside the store's thread and never waiting on a lock; and the
store's thread keeps the WAL small with its own checkpoints."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.store import records as r
from tradefleet.domain.models import Order, Signal
from tradefleet.store import SqliteStore
from tradefleet.store import sqlite as sqlite_mod


def _pair(i: int) -> tuple[Signal, Order]:
    """A signal and its PENDING order."""
    s = r.signal(i, signal_id=f"sig-{i}")
    return s, dataclasses.replace(r.order(f"tf-{i}"), signal_id=s.signal_id)


def _thread_of_commits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each `commit_order` transaction ran on."""
    seen: list[int] = []
    write = sqlite_mod._write

    def noting(conn: sqlite3.Connection, fn):  # type: ignore[no-untyped-def]
        if getattr(fn, "__name__", "") == "commit":
            seen.append(threading.get_ident())
        return write(conn, fn)

    monkeypatch.setattr(sqlite_mod, "_write", noting)
    return seen


async def test_an_order_commits_on_the_loops_thread_when_the_store_is_idle(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _thread_of_commits(monkeypatch)
    s, o = _pair(1)
    assert await sqlite_store.commit_order(s, o)
    assert threads == [threading.get_ident()]
    assert not await sqlite_store.commit_order(s, o)  # the same id again: nothing written
    assert [o.client_order_id for o in await sqlite_store.orders(r.BOT)] == [o.client_order_id]


async def test_an_order_waits_for_the_stores_thread_when_it_is_busy_and_never_runs_beside_it(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _thread_of_commits(monkeypatch)
    # The store's thread is in the middle of a call (held here by taking its connection lock).
    sqlite_store._conn_lock.acquire()
    s, o = _pair(2)
    task = asyncio.get_running_loop().create_task(sqlite_store.commit_order(s, o))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done() and threads == []  # not run on the loop beside the busy connection
    sqlite_store._conn_lock.release()
    assert await task
    assert len(threads) == 1 and threads[0] != threading.get_ident()  # on the store's thread


async def test_a_write_lock_held_by_another_connection_does_not_block_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite"
    store = SqliteStore(str(path), busy_timeout_ms=30_000)
    await store.open()
    attempts: list[tuple[bool, int]] = []  # (on the loop's thread, the busy timeout it would wait)
    write = sqlite_mod._write
    loop_thread = threading.get_ident()

    def noting(conn: sqlite3.Connection, fn):  # type: ignore[no-untyped-def]
        if getattr(fn, "__name__", "") == "commit":
            attempts.append(
                (threading.get_ident() == loop_thread, conn.execute("PRAGMA busy_timeout").fetchone()[0])
            )
        return write(conn, fn)

    monkeypatch.setattr(sqlite_mod, "_write", noting)
    shell = sqlite3.connect(path, isolation_level=None)  # someone's `sqlite3` shell, mid-transaction
    try:
        shell.execute("BEGIN IMMEDIATE")
        s, o = _pair(3)
        task = asyncio.get_running_loop().create_task(store.commit_order(s, o))
        ticks = 0
        for _ in range(50):
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 50 and not task.done()  # the loop kept turning while the order waits
        shell.execute("COMMIT")
        assert await task
        # Tried on the loop's thread without waiting for the lock, then handed to the store's thread,
        # which waits for it as every call does (`_patiently`: again and again, pausing, while the
        # lock is taken; the connection's own busy timeout stays 0).
        assert attempts[0] == (True, 0) and len(attempts) >= 2
        assert set(attempts[1:]) == {(False, 0)}
        stored = await store.get_order(o.client_order_id)
        assert stored is not None
    finally:
        shell.close()
        await store.close()


@pytest.mark.parametrize("every_s", [0.0, 1e9])
async def test_the_stores_thread_checkpoints_so_the_wal_is_overwritten_not_grown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every_s: float
) -> None:
    monkeypatch.setattr(sqlite_mod, "CHECKPOINT_EVERY_S", every_s)
    path = tmp_path / "s.sqlite"
    store = SqliteStore(str(path))
    await store.open()
    try:
        for i in range(150):
            await store.write_prices([r.price(i * 40 + k) for k in range(40)])
            await store.commit_order(*_pair(i))
        wal = (tmp_path / "s.sqlite-wal").stat().st_size
        assert len(await store.orders(r.BOT)) == 150
    finally:
        await store.close()
    if every_s == 0.0:
        assert wal < 256 * 1024, f"WAL grew to {wal} bytes with a checkpoint after every call"
    else:
        assert wal > 1024 * 1024, f"the control case should grow the WAL, got {wal} bytes"


async def test_a_slow_commit_on_the_loop_sends_the_next_ones_to_the_stores_thread_for_a_while(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk that stalls must not keep stalling the loop: after one loop commit slower than
    LOOP_COMMIT_SLOW_S, commits go through the store's thread for LOOP_COMMIT_PAUSE_S (on a clock
    the test moves), then back on the loop."""
    now = [1000.0]
    sqlite_store.clock = lambda: now[0]
    loop_thread = threading.get_ident()
    threads: list[bool] = []
    write = sqlite_mod._write

    def stalling(conn: sqlite3.Connection, fn):  # type: ignore[no-untyped-def]
        if getattr(fn, "__name__", "") == "commit":
            on_loop = threading.get_ident() == loop_thread
            threads.append(on_loop)
            if on_loop and len(threads) == 1:
                now[0] += 2 * sqlite_mod.LOOP_COMMIT_SLOW_S  # the first one stalls
        return write(conn, fn)

    monkeypatch.setattr(sqlite_mod, "_write", stalling)
    for i in range(3):
        assert await sqlite_store.commit_order(*_pair(10 + i))
    assert threads == [True, False, False]
    assert any(r.getMessage() == "store_commit_slow" for r in caplog.records)
    now[0] += sqlite_mod.LOOP_COMMIT_PAUSE_S
    assert await sqlite_store.commit_order(*_pair(20))
    assert threads == [True, False, False, True]
    assert len(await sqlite_store.orders(r.BOT)) == 4
