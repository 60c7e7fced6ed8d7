"""What an order's one commit costs on this disk, and how much of it is the fsync: the store's
`commit_order` (signal + PENDING order, `synchronous=FULL`, WAL) on SQLite files, next to a lone
`fdatasync` of one 4 KiB page, each in two states of the file, interleaved in one run:

    python -m bench.commit_fsync                 # 300 of each
    python -m bench.commit_fsync --n 100 --dir /var/lib/somewhere
    python -m bench.commit_fsync --n 60 --gap-ms 100   # each sample after 100 ms of idle

- `commit, growing WAL`: a fresh database whose WAL grows with every commit (a bot's first minutes
  after it opened its file: SQLite deletes the WAL when the last connection closes);
- `commit, reused WAL`: the same after the WAL has been filled once and reset by a checkpoint, so
  every commit overwrites pages already on disk (a bot's steady state);
- `commit via the store`: `SqliteStore.commit_order` awaited from the event loop on the reused-WAL
  file: on the loop's own thread since `loop_commits` (it was the hop to the store's thread and back);
- `fdatasync, append` / `fdatasync, overwrite`: one 4 KiB write then `fdatasync`, at the end of a
  file (its size changes: metadata to journal) or over a page already written.

Prints p50/p90/p99 in µs per row and one line `commit_fsync …` with the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from tradefleet.domain.models import Order, OrderStatus, Side, Signal
from tradefleet.store import SqliteStore
from tradefleet.store.sqlite import _COMMIT_SIGNAL_SQL, _signal_row, _write

PAGE = b"\x5a" * 4096


def _signal(n: int) -> Signal:
    t = 1_700_000_000_000 + n * 60_000
    return Signal(
        signal_id=f"bench:1m:{t}:BUY", bot="bench", exchange="binance", symbol="BTC/USDT", interval="1m",
        side=Side.BUY, candle_open_time=t, candle_close_time=t + 59_999, close=Decimal("50000.01"),
        sma_short=Decimal("50000.5"), sma_long=Decimal("49999.5"), created_at=t + 60_000, action="order",
    )  # fmt: skip


def _order(s: Signal) -> Order:
    return Order(
        client_order_id=f"tf-{s.signal_id}", bot="bench", exchange="binance", symbol="BTC/USDT",
        side=Side.BUY, order_type="MARKET", signal_id=s.signal_id, status=OrderStatus.PENDING,
        created_at=s.created_at, updated_at=s.created_at, quantity=None, quote_amount=Decimal("100"),
        fencing_token=1,
    )  # fmt: skip


class Raw:
    """The store's transaction on its own connection, timed on this thread."""

    def __init__(self, path: Path, *, reuse: bool) -> None:
        self.store = SqliteStore(str(path))
        self.conn = self.store._connect()
        self.n = 0
        if reuse:  # fill the WAL past one checkpoint, then let it be reset: later commits overwrite
            for _ in range(1200):
                self.commit()
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def commit(self) -> int:
        """`SqliteStore.commit_order`'s transaction, run here (no thread hop); its duration."""
        self.n += 1
        s = _signal(self.n)
        order, row = _order(s), _signal_row(s)

        def commit(c: sqlite3.Connection) -> None:
            self.store._insert_order(c, order)
            c.execute(_COMMIT_SIGNAL_SQL, row)

        start = time.perf_counter_ns()
        _write(self.conn, commit)
        return time.perf_counter_ns() - start


class Fsync:
    def __init__(self, path: Path, *, append: bool) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.append = append
        if not append:
            os.write(self.fd, PAGE * 256)
            os.fsync(self.fd)
        self.i = 0

    def once(self) -> int:
        self.i += 1
        offset = self.i * 4096 if self.append else (self.i % 256) * 4096
        start = time.perf_counter_ns()
        os.pwrite(self.fd, PAGE, offset)
        os.fdatasync(self.fd)
        return time.perf_counter_ns() - start


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="commit-fsync-", dir=args.dir) as d:
        tmp = Path(d)
        growing = Raw(tmp / "growing.sqlite", reuse=False)
        reused = Raw(tmp / "reused.sqlite", reuse=True)
        store = SqliteStore(str(tmp / "store.sqlite"))
        await store.open()
        for i in range(1200):
            s = _signal(10_000 + i)
            await store.commit_order(s, _order(s))
        await store._run(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)"))
        append, overwrite = Fsync(tmp / "append.bin", append=True), Fsync(tmp / "over.bin", append=False)
        k = [20_000]

        async def via_store() -> int:
            k[0] += 1
            s = _signal(k[0])
            start = time.perf_counter_ns()
            await store.commit_order(s, _order(s))
            return time.perf_counter_ns() - start

        rows: dict[str, list[int]] = {name: [] for name in ROWS}
        calls: dict[str, Callable[[], int]] = {
            "commit, growing WAL": growing.commit,
            "commit, reused WAL": reused.commit,
            "fdatasync, append": append.once,
            "fdatasync, overwrite": overwrite.once,
        }
        for _ in range(args.n):
            for name in ROWS:
                if name == "commit via the store":
                    rows[name].append(await via_store())
                else:
                    rows[name].append(calls[name]())
                await asyncio.sleep(args.gap_ms / 1000)  # a quiet moment between, like orders
        await store.close()
        growing.conn.close()
        reused.conn.close()
    print(f"{'µs':28} {'p50':>8} {'p90':>8} {'p99':>8}")
    medians = {}
    for name, values in rows.items():
        v = sorted(values)
        medians[name] = statistics.median(v) / 1000
        p = [v[min(len(v) - 1, int(q * len(v)))] / 1000 for q in (0.9, 0.99)]
        print(f"{name:28} {medians[name]:8.0f} {p[0]:8.0f} {p[1]:8.0f}")
    print(
        "commit_fsync "
        + " ".join(f"{k.replace(', ', '_').replace(' ', '_')}_p50_us={v:.0f}" for k, v in medians.items())
    )


ROWS = (
    "commit, growing WAL",
    "commit, reused WAL",
    "commit via the store",
    "fdatasync, append",
    "fdatasync, overwrite",
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench.commit_fsync", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=300, help="samples per row (default 300)")
    parser.add_argument("--dir", default=None, help="where the files go (default: the temp dir)")
    parser.add_argument(
        "--gap-ms", type=float, default=2.0,
        help="idle time before each sample (default 2; 100 shows what an idle machine adds: a bot's "
        "order comes after seconds of quiet)",
    )  # fmt: skip
    asyncio.run(main(parser.parse_args()))
