"""The buffered writer on a healthy store: batching, flush timing, durability of awaited records,
candle coalescing, lifecycle. (Outages are in test_outage.py.)"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.store import records as r
from tests.store.waiting import eventually, sample
from tradefleet.config import BotConfig
from tradefleet.domain.models import OrderStatus
from tradefleet.metrics import BotMetrics
from tradefleet.store import BufferedStore, SqliteStore

LATENCY_COUNT = "tradefleet_operation_latency_seconds_count"


async def test_prices_go_out_in_full_batches_at_once_and_the_remainder_waits_for_the_flush_interval(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    buffered = BufferedStore(sqlite_store, metrics, batch_max=500, flush_ms=600_000)
    buffered.start()
    for i in range(1200):
        buffered.enqueue_price(r.price(i))

    await eventually(lambda: buffered.buffered()["price"] == 200, what="two full batches written")
    assert len(await sqlite_store.prices(r.BOT, limit=10_000)) == 1000
    assert sample(metrics, LATENCY_COUNT, operation="store_write") == 2
    assert sample(metrics, "tradefleet_store_buffered", kind="price") == 200

    assert await buffered.flush(timeout=30)
    assert await sqlite_store.prices(r.BOT, limit=10_000) == [r.price(i) for i in range(1200)]
    assert sample(metrics, LATENCY_COUNT, operation="store_write") == 3
    assert sample(metrics, LATENCY_COUNT, operation="event_to_stored") == 1200
    await buffered.close()


async def test_a_trickle_of_prices_is_written_within_the_flush_interval_without_asking(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    buffered = BufferedStore(sqlite_store, metrics, batch_max=500, flush_ms=20)
    buffered.start()
    for i in range(3):
        buffered.enqueue_price(r.price(i))
    written: list[object] = []

    async def poll() -> None:
        while len(written) < 3:
            written[:] = await sqlite_store.prices(r.BOT)
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout=30)
    assert buffered.buffered()["price"] == 0
    await buffered.close()


async def test_a_sample_arriving_while_the_writer_is_idle_is_written_within_the_flush_interval(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    # The writer first drains what is queued, then waits with no deadline; the next sample must
    # start the flush clock (it used to wait for a full batch or an unrelated write).
    buffered = BufferedStore(sqlite_store, metrics, batch_max=500, flush_ms=20)
    buffered.start()
    buffered.enqueue_price(r.price(0))
    assert await buffered.flush(timeout=30)  # drained: the writer now waits with no deadline
    buffered.enqueue_price(r.price(1))
    await eventually(lambda: buffered.buffered()["price"] == 0, what="idle writer woke for the sample")
    assert len(await sqlite_store.prices(r.BOT)) == 2
    await buffered.close()


async def test_awaited_records_are_readable_when_the_call_returns_true_in_the_order_recorded(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    buffered = BufferedStore(sqlite_store, metrics)
    buffered.start()
    o = r.order()
    sig = r.signal(signal_id=o.signal_id)

    assert await buffered.record_signal(sig) is True
    assert await buffered.signals(r.BOT) == [sig]
    assert await buffered.record_signal_action(sig.signal_id, "order") is True
    assert await buffered.record_order(o) is True
    assert await buffered.get_order(o.client_order_id) == o
    assert await buffered.record_update(r.update(o.client_order_id, OrderStatus.NEW)) is True
    assert await buffered.record_position(r.position()) is True

    assert (await buffered.signals(r.BOT))[0].action == "order"
    assert [u.status for u in await buffered.order_updates(o.client_order_id)] == [OrderStatus.NEW]
    assert (await buffered.open_orders(r.BOT))[0].status is OrderStatus.NEW
    assert await buffered.load_position(r.BOT, r.SYMBOL) == r.position()
    for kind in ("signal", "signal_action", "order", "update", "position"):
        assert sample(metrics, "tradefleet_store_enqueued_total", kind=kind) == 1
        assert sample(metrics, "tradefleet_store_buffered", kind=kind) == 0
    assert buffered.healthy
    await buffered.close()


async def test_a_caller_cancelled_while_waiting_still_gets_its_signal_written(
    tmp_path: Path, metrics: BotMetrics
) -> None:
    store = SqliteStore(str(tmp_path / "bot.sqlite"), busy_timeout_ms=20_000)
    await store.open()
    buffered = BufferedStore(store, metrics)
    buffered.start()
    locker = sqlite3.connect(tmp_path / "bot.sqlite", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the write waits on the busy timeout, the caller gives up first
    sig = r.signal()
    caller = asyncio.create_task(buffered.record_signal(sig))
    await eventually(lambda: buffered.buffered()["signal"] == 1, what="the signal queued")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    locker.execute("COMMIT")
    locker.close()

    assert await buffered.flush(timeout=30)
    assert await store.signals(r.BOT) == [sig]
    await buffered.close()


async def test_a_caller_cancelled_in_the_step_its_record_becomes_durable_is_still_cancelled(
    tmp_path: Path, metrics: BotMetrics
) -> None:
    """On Python 3.11 `asyncio.wait_for` returned the result and dropped the cancellation when both
    happened in one loop step; the order manager's update consumer then never stopped (under load
    its shutdown hung). The record becoming durable is forced into the cancel's step here."""
    store = SqliteStore(str(tmp_path / "bot.sqlite"), busy_timeout_ms=20_000)
    await store.open()
    buffered = BufferedStore(store, metrics)
    buffered.start()
    locker = sqlite3.connect(tmp_path / "bot.sqlite", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the writer waits on the lock, so the test decides the step
    caller = asyncio.create_task(buffered.record_signal(r.signal()))
    await eventually(lambda: buffered.buffered()["signal"] == 1, what="the signal queued")
    await asyncio.sleep(0)  # the caller is waiting for durability
    buffered._durable[0].done.set_result(True)  # what the writer does once the record is written
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    locker.execute("COMMIT")
    locker.close()
    assert await buffered.flush(timeout=30)
    await buffered.close()


async def test_candle_versions_coalesce_and_a_closed_candle_is_not_replaced_by_a_late_open_one(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    buffered = BufferedStore(sqlite_store, metrics)
    buffered.enqueue_candle(r.candle(0, close="1", closed=False))
    buffered.enqueue_candle(r.candle(0, close="2", closed=True))
    buffered.enqueue_candle(r.candle(0, close="3", closed=False))
    buffered.enqueue_candle(r.candle(1, close="4", closed=False))
    assert buffered.buffered()["candle"] == 2
    buffered.start()

    assert await buffered.flush(timeout=30)
    assert await sqlite_store.candles(r.SYMBOL, "1m") == [
        r.candle(0, close="2", closed=True),
        r.candle(1, close="4", closed=False),
    ]
    assert sample(metrics, "tradefleet_store_enqueued_total", kind="candle") == 4
    await buffered.close()


async def test_candles_wait_for_the_flush_interval_like_prices_and_awaited_records_do_not(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    buffered = BufferedStore(sqlite_store, metrics, flush_ms=600_000)
    buffered.start()
    buffered.enqueue_candle(r.candle(0))
    sig = r.signal(0)
    assert await buffered.record_signal(sig) is True  # written at once, without the candle
    assert await sqlite_store.signals(r.BOT) == [sig]
    assert await sqlite_store.candles(r.SYMBOL, "1m") == []
    assert await buffered.flush(timeout=30)
    assert await sqlite_store.candles(r.SYMBOL, "1m") == [r.candle(0)]
    await buffered.close()


async def test_market_data_waits_while_an_order_is_about_to_be_stored_and_goes_once_it_is(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    """A closing candle and a price batch would otherwise put their commit ahead of the order's on
    the store's one connection; they go as soon as the order's commit is done."""
    buffered = BufferedStore(sqlite_store, metrics, flush_ms=0, defer_max_s=600.0)  # due at once
    buffered.start()
    buffered.defer_market_data(600.0)
    buffered.enqueue_candle(r.candle(0))
    for i in range(3):
        buffered.enqueue_price(r.price(i))
    sig = r.signal(0)
    assert await buffered.record_signal(sig) is True  # awaited records never wait
    assert buffered.buffered()["candle"] == 1 and buffered.buffered()["price"] == 3
    assert await sqlite_store.candles(r.SYMBOL, "1m") == []

    order = r.order()
    assert await buffered.commit_order(sig, order) is True
    await eventually(lambda: buffered.buffered()["price"] == 0 and buffered.buffered()["candle"] == 0,
                     what="market data written after the order's commit")  # fmt: skip
    assert await sqlite_store.candles(r.SYMBOL, "1m") == [r.candle(0)]
    assert len(await sqlite_store.prices(r.BOT)) == 3
    await buffered.close()


async def test_deferrals_one_after_another_never_keep_market_data_from_the_store_for_good(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    """Candles that close faster than the hot close's window defer market data again before each
    deferral ends: it is written anyway once `defer_max_s` past due (0.25 s by default)."""
    buffered = BufferedStore(sqlite_store, metrics, flush_ms=0, defer_max_s=0.05)
    buffered.start()
    buffered.defer_market_data(0.04)
    buffered.enqueue_price(r.price(0))
    buffered.enqueue_candle(r.candle(0))
    keep_deferring = True

    async def defer() -> None:
        while keep_deferring:
            buffered.defer_market_data(0.04)
            await asyncio.sleep(0.002)

    deferring = asyncio.create_task(defer())
    try:
        await eventually(lambda: not any(buffered.buffered().values()), what="market data written")
        assert len(await sqlite_store.prices(r.BOT)) == 1
        assert await sqlite_store.candles(r.SYMBOL, "1m") == [r.candle(0)]
    finally:
        keep_deferring = False
        await deferring
        await buffered.close()


async def test_after_an_orders_commit_the_writer_starts_nothing_until_its_request_has_left(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    buffered = BufferedStore(sqlite_store, metrics, flush_ms=0, request_hold_s=600.0)
    buffered.start()
    buffered.defer_market_data(1.0)  # the signal: an order may follow
    buffered.enqueue_candle(r.candle(0))
    sig, order = r.signal(0), r.order()
    assert await buffered.commit_order(sig, order) is True
    await buffered.after_commit_order(sig, order)  # queued behind the request
    buffered.enqueue_price(r.price(0))
    for _ in range(20):
        await asyncio.sleep(0)  # the writer's turns
    # The store's one thread: a write the writer had started would be ahead of these reads.
    assert await sqlite_store.candles(r.SYMBOL, "1m") == []
    assert await sqlite_store.prices(r.BOT) == []
    assert buffered.buffered()["signal"] == 1

    buffered.request_left()
    await eventually(lambda: not any(buffered.buffered().values()), what="everything written")
    assert await sqlite_store.candles(r.SYMBOL, "1m") == [r.candle(0)]
    assert len(await sqlite_store.prices(r.BOT)) == 1
    await buffered.close()


async def test_an_order_that_was_already_stored_holds_nothing_back(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    buffered = BufferedStore(sqlite_store, metrics, flush_ms=0, request_hold_s=600.0)
    buffered.start()
    sig, order = r.signal(0), r.order()
    assert await buffered.commit_order(sig, order) is True
    buffered.request_left()
    buffered.defer_market_data(600.0)
    buffered.enqueue_candle(r.candle(0))
    assert await buffered.commit_order(sig, order) is False  # no request follows this one
    await eventually(lambda: buffered.buffered()["candle"] == 0, what="the candle written")
    await buffered.close()


async def test_close_writes_everything_still_queued_and_closes_the_store(
    tmp_path: Path, metrics: BotMetrics
) -> None:
    path = str(tmp_path / "bot.sqlite")
    store = SqliteStore(path)
    await store.open()
    buffered = BufferedStore(store, metrics, flush_ms=600_000)
    buffered.start()
    for i in range(42):
        buffered.enqueue_price(r.price(i))
    await buffered.record_signal(r.signal())
    await buffered.close()

    with pytest.raises(RuntimeError, match="closed"):
        await buffered.record_signal(r.signal())
    buffered.enqueue_price(r.price(99))  # after close: counted as dropped, never silently kept
    assert buffered.dropped == 1
    reopened = SqliteStore(path)
    await reopened.open()
    assert len(await reopened.prices(r.BOT)) == 42
    assert len(await reopened.signals(r.BOT)) == 1
    await reopened.close()


async def test_recording_before_start_is_refused_rather_than_left_waiting(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    buffered = BufferedStore(sqlite_store, metrics)
    with pytest.raises(RuntimeError, match="start"):
        await buffered.record_order(r.order())


def test_from_config_takes_batch_flush_and_buffer_sizes_from_bot_config(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    config = BotConfig(store_batch_max=7, store_flush_ms=9, store_buffer_max=11)
    buffered = BufferedStore.from_config(sqlite_store, config, metrics)
    assert (buffered.batch_max, buffered.flush_s, buffered.buffer_max) == (7, 0.009, 11)


def test_sizes_that_cannot_work_are_refused(sqlite_store: SqliteStore, metrics: BotMetrics) -> None:
    with pytest.raises(ValueError, match="positive"):
        BufferedStore(sqlite_store, metrics, batch_max=0)


async def test_batched_candles_wait_for_a_full_batch_or_a_flush_and_none_is_lost(
    sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    """`candle_batch` (backtests): candles are written a full batch at a time, the rest on flush."""
    buffered = BufferedStore(sqlite_store, metrics, batch_max=4, candle_batch=True)
    buffered.start()
    for i in range(3):
        buffered.enqueue_candle(r.candle(i))
    for _ in range(5):
        await asyncio.sleep(0)  # the writer gets its turns
    assert await sqlite_store.candles(r.SYMBOL, "1m") == []  # below a batch: still waiting
    assert buffered.buffered()["candle"] == 3
    buffered.enqueue_candle(r.candle(3))  # a full batch goes without a flush
    await eventually(lambda: buffered.buffered()["candle"] == 0, what="a full batch written")
    assert len(await sqlite_store.candles(r.SYMBOL, "1m")) == 4
    buffered.enqueue_candle(r.candle(4))
    assert await buffered.flush(timeout=30)
    assert [c.open_time for c in await sqlite_store.candles(r.SYMBOL, "1m")] == [
        r.candle(i).open_time for i in range(5)
    ]
    assert sample(metrics, "tradefleet_store_enqueued_total", kind="candle") == 5
    await buffered.close()
