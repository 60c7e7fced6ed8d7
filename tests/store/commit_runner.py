"""A separate process that commits signals with their orders, for the kill -9 tests of
`Store.commit_order` (tests/store/test_commit_atomicity.py).

    python -m tests.store.commit_runner --store-url URL [--database NAME] [--count N]
        [--kill-at-statement PREFIX | --kill-after-commit]

Commits N (signal, order) pairs as the order manager does (`commit_order`, then
`after_commit_order`), printing `committed <i>` after each commit. `--kill-at-statement PREFIX`
(SQLite) SIGKILLs the process when the store's connection starts an SQL statement beginning with
PREFIX, i.e. inside the commit's transaction; `--kill-after-commit` SIGKILLs it once the first commit
has returned, before `after_commit_order`. The test reads the store afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
from decimal import Decimal

from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import Order, OrderStatus, Side, Signal
from tradefleet.ports import Store
from tradefleet.store import SqliteStore, open_store

BOT = "commit-bot"
T0 = 1_700_000_000_000


def pair(run: str, i: int) -> tuple[Signal, Order]:
    """The i-th signal of this run (decided "order") and its PENDING order."""
    t = T0 + i * 60_000
    sig = Signal(
        signal_id=f"{BOT}:{run}:{i}", bot=BOT, exchange="binance", symbol="BTC/USDT", interval="1m",
        side=Side.BUY if i % 2 == 0 else Side.SELL, candle_open_time=t, candle_close_time=t + 59_999,
        close=Decimal("37100.50"), sma_short=Decimal("37050.1"), sma_long=Decimal("37049.9"),
        created_at=t + 60_000, action="order",
    )  # fmt: skip
    order = Order(
        client_order_id=client_order_id(sig.signal_id), bot=BOT, exchange="binance", symbol="BTC/USDT",
        side=sig.side, order_type="MARKET", signal_id=sig.signal_id, status=OrderStatus.PENDING,
        created_at=t + 60_000, updated_at=t + 60_000, quantity=None if i % 2 == 0 else Decimal("0.001"),
        quote_amount=Decimal("100") if i % 2 == 0 else None, fencing_token=1,
    )  # fmt: skip
    return sig, order


def _open(args: argparse.Namespace) -> Store:
    if args.database:
        from tradefleet.store.mongo import MongoStore

        return MongoStore(args.store_url, database=args.database)
    return open_store(args.store_url)


async def main(args: argparse.Namespace) -> int:
    store = _open(args)
    await store.open()
    if args.kill_at_statement:
        if not isinstance(store, SqliteStore):
            raise SystemExit("--kill-at-statement needs a SQLite store")
        prefix = args.kill_at_statement

        def trace(statement: str) -> None:
            if statement.startswith(prefix):
                os.kill(os.getpid(), signal.SIGKILL)

        def install(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(trace)

        await store._run(install)  # on the store's own thread, which owns the connection
    for i in range(args.count):
        sig, order = pair(args.run, i)
        assert await store.commit_order(sig, order)
        print(f"committed {i}", flush=True)
        if args.kill_after_commit:
            os.kill(os.getpid(), signal.SIGKILL)
        await store.after_commit_order(sig, order)
    await store.close()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--store-url", required=True)
    p.add_argument("--database", default=None, help="MongoDB database (the URL's path otherwise)")
    p.add_argument("--run", default="r0", help="distinguishes the signal ids of several runs")
    p.add_argument("--count", type=int, default=1)
    kill = p.add_mutually_exclusive_group()
    kill.add_argument("--kill-at-statement", default=None)
    kill.add_argument("--kill-after-commit", action="store_true")
    sys.exit(asyncio.run(main(p.parse_args())))
