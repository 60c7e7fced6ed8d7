"""How the engine hands a signal to the order manager: unstored when the manager acts on it at once
(the manager stores it in one write with its action and order), stored first when it would have to
wait. The real engine and buffered writer on a real SQLite file; the order manager's side is the
engine's own `SignalTaker` seam."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tradefleet.config import BotConfig
from tradefleet.domain.models import Candle, Side, Signal
from tradefleet.engine.book_keeper import BookKeeper
from tradefleet.engine.pipeline import BotEngine
from tradefleet.metrics import BotMetrics
from tradefleet.store import SqliteStore
from tradefleet.store.buffered import BufferedStore


class NoRest:
    async def fetch_depth_snapshot(self, *a: object) -> None:
        raise AssertionError("not used")

    async def fetch_candles(self, *a: object) -> list[Candle]:
        return []


class Taker:
    """Notes, as each signal is handed over, whether the store file already holds it."""

    def __init__(self, db: Path, ready: bool) -> None:
        self.db = db
        self.ready = ready
        self.handed: list[tuple[str, bool]] = []
        self.settled = asyncio.Event()
        self.settled.set()

    async def settle(self) -> None:
        await self.settled.wait()

    def ready_to_act(self) -> bool:
        return self.ready

    def act_now(self, signal: Signal) -> None:
        self.submit_signal(signal)

    def submit_signal(self, signal: Signal) -> None:
        reader = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            row = reader.execute("SELECT 1 FROM signals WHERE signal_id = ?", (signal.signal_id,)).fetchone()
        finally:
            reader.close()
        self.handed.append((signal.signal_id, row is not None))


def _signal(n: int) -> Signal:
    t = 1_700_000_000_000 + n * 60_000
    return Signal(
        signal_id=f"handoff:{n}", bot="handoff", exchange="binance", symbol="BTC/USDT", interval="1m",
        side=Side.BUY, candle_open_time=t, candle_close_time=t + 59_999, close=Decimal("1"),
        sma_short=Decimal("1"), sma_long=Decimal("1"), created_at=t + 60_000,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def engine_on_store(
    tmp_path: Path, taker: Any, **engine_kw: Any
) -> AsyncIterator[tuple[BotEngine, BufferedStore]]:
    """An engine on a buffered SQLite store (`tmp_path`/handoff.sqlite) handing signals to `taker`, its
    signal worker running; all stopped after."""
    db = tmp_path / "handoff.sqlite"
    metrics = BotMetrics()
    raw = SqliteStore(str(db))
    await raw.open()
    store = BufferedStore(raw, metrics, flush_ms=10)
    store.start()
    rest = NoRest()
    book = BookKeeper(market_id="BTCUSDT", rest=rest, depth_limit=100, metrics=metrics, post=lambda e: None)  # type: ignore[arg-type]
    engine = BotEngine(BotConfig(name="handoff"), metrics, book=book, rest=rest, sink=store, **engine_kw)  # type: ignore[arg-type]
    engine.orders = taker
    worker = asyncio.get_running_loop().create_task(engine.run_signals())
    try:
        yield engine, store
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await engine.close()
        await store.close()


@pytest.mark.parametrize("ready", [True, False], ids=["manager_ready", "manager_busy"])
async def test_the_engine_stores_a_signal_itself_only_when_the_manager_cannot_act_at_once(
    tmp_path: Path, ready: bool
) -> None:
    db = tmp_path / "handoff.sqlite"
    taker = Taker(db, ready)
    async with engine_on_store(tmp_path, taker) as (engine, store):
        for n in range(3):
            engine._queue_signal(_signal(n))
        await asyncio.wait_for(engine.settle(), 10)
        await store.flush(5)

    assert taker.handed == [(f"handoff:{n}", not ready) for n in range(3)]
    reader = sqlite3.connect(db)
    stored = [r[0] for r in reader.execute("SELECT signal_id FROM signals ORDER BY signal_id")]
    reader.close()
    # Handed over unstored, it is the manager's to store (in one write with its action and order).
    assert stored == ([] if ready else [f"handoff:{n}" for n in range(3)])


async def test_a_signal_the_manager_can_act_on_is_handed_over_as_it_is_decided_and_later_ones_keep_their_order(
    tmp_path: Path,
) -> None:
    """No turn of the loop between deciding a signal and handing it over when nothing is ahead of it;
    one decided while another is still with the engine goes after it, through the engine's worker."""
    taker = Taker(tmp_path / "handoff.sqlite", ready=True)
    async with engine_on_store(tmp_path, taker) as (engine, _):
        engine._queue_signal(_signal(0))
        assert taker.handed == [("handoff:0", False)], "handed over in the same step, unstored"
        engine._queue_signal(_signal(1))  # the first is still with the engine (logging, publishing)
        assert taker.handed == [("handoff:0", False)]
        await asyncio.wait_for(engine.settle(), 10)
        assert taker.handed == [("handoff:0", False), ("handoff:1", False)]
        assert engine.state.signals == 2
        engine._queue_signal(_signal(2))  # nothing ahead of it again
        assert taker.handed[-1] == ("handoff:2", False)
        await asyncio.wait_for(engine.settle(), 10)
        assert len(taker.handed) == 3


async def test_a_signal_handed_over_as_it_is_decided_is_logged_once_its_order_is_done(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its log line would otherwise run on the loop while the order path waits for Redis and the
    store's thread."""
    taker = Taker(tmp_path / "handoff.sqlite", ready=True)
    taker.settled.clear()  # the order is on its way
    caplog.set_level(logging.INFO, logger="tradefleet.engine")
    async with engine_on_store(tmp_path, taker, order_wait_s=600) as (engine, _):
        engine._queue_signal(_signal(0))
        assert taker.handed == [("handoff:0", False)]
        for _ in range(20):
            await asyncio.sleep(0)  # the worker's turns
        assert [r for r in caplog.records if getattr(r, "event", None) == "signal"] == []
        taker.settled.set()
        await asyncio.wait_for(engine.settle(), 10)
        logged = [r for r in caplog.records if getattr(r, "event", None) == "signal"]
        assert [getattr(r, "signal_id", None) for r in logged] == ["handoff:0"]
