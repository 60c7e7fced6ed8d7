"""The strategy runner's warm-up and gap handling, with an in-memory history at the MarketRest seam."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tradefleet.config import BotConfig
from tradefleet.domain.market import KlineEvent
from tradefleet.domain.models import Candle, Side, Signal
from tradefleet.engine.strategy import HistoryReady, StrategyRunner
from tradefleet.metrics import BotMetrics

DAY = 86_400_000


def make_candle(i: int, close: Decimal) -> Candle:
    return Candle("BTC/USDT", "1d", i * DAY, (i + 1) * DAY - 1, close, close, close, close, Decimal(1))


def kline(i: int, close: Decimal, closed: bool = True) -> KlineEvent:
    return KlineEvent(
        "BTCUSDT", i * DAY, "1d", i * DAY, (i + 1) * DAY - 1, *(str(close),) * 4, "1", 1, closed
    )


class History:
    """The exchange's candle history: a MarketRest with only what the runner uses."""

    def __init__(self, closes: list[Decimal], missing_once: set[int] | None = None) -> None:
        self.candles = [make_candle(i, c) for i, c in enumerate(closes)]
        self.missing_once = set(missing_once or ())
        self.calls: list[tuple[int, int]] = []

    async def fetch_candles(self, symbol: str, interval: str, since_ms: int, until_ms: int) -> list[Candle]:
        self.calls.append((since_ms, until_ms))
        out = [
            c
            for c in self.candles
            if since_ms <= c.open_time < until_ms and c.open_time not in self.missing_once
        ]
        self.missing_once.clear()
        return out

    async def server_time_ms(self) -> int:
        return self.now


class Clocked(History):
    """History whose exchange clock says candle `current` is the open one (its first ms + 1 hour)."""

    def __init__(self, closes: list[Decimal], current: int) -> None:
        super().__init__(closes)
        self.now = current * DAY + 3_600_000


def closes_with_crosses() -> list[Decimal]:
    # 30 flat-ish candles, then down (SELL), then up (BUY), then down (SELL).
    seq = (
        [Decimal(100)] * 30 + [Decimal(90 - i) for i in range(10)] + [Decimal(80 + 5 * i) for i in range(15)]
    )
    return seq + [Decimal(140 - 6 * i) for i in range(15)]


def spawning_runner(history: History) -> tuple[StrategyRunner, asyncio.Queue[object], list[Signal]]:
    """A runner (short 3, long 10) whose fetches run as real tasks; results come back on `events`."""
    events: asyncio.Queue[object] = asyncio.Queue()
    signals: list[Signal] = []
    runner = StrategyRunner(
        BotConfig(short_window=3, long_window=10, warmup_extra=2),
        history,  # type: ignore[arg-type]
        BotMetrics(),
        post=events.put_nowait,
        spawn=asyncio.ensure_future,
        on_signal=signals.append,
        clock=lambda: 0,
    )
    return runner, events, signals


async def run_runner(history: History, stream_from: int, upto: int, short: int = 3, long: int = 10):
    cfg = BotConfig(short_window=short, long_window=long, warmup_extra=2)
    signals: list[Signal] = []
    events: asyncio.Queue[object] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    runner = StrategyRunner(
        cfg,
        history,  # type: ignore[arg-type]
        BotMetrics(),
        post=events.put_nowait,
        spawn=lambda c: tasks.append(asyncio.ensure_future(c)),
        on_signal=signals.append,
        clock=lambda: 0,
    )
    for i in range(stream_from, upto):
        runner.handle_kline(kline(i, history.candles[i].close, closed=False))
        runner.handle_kline(kline(i, history.candles[i].close))
        while not events.empty():
            runner.handle_history(events.get_nowait())  # type: ignore[arg-type]
        await asyncio.sleep(0)
    for _ in range(100):
        await asyncio.sleep(0)
        while not events.empty():
            ev = events.get_nowait()
            assert isinstance(ev, HistoryReady)
            runner.handle_history(ev)
    return runner, signals


def naive_crosses(closes: list[Decimal], short: int, long: int, start: int) -> list[tuple[int, Side]]:
    out, prev = [], None
    for i in range(long - 1, len(closes)):
        s = sum(closes[i + 1 - short : i + 1]) / short
        lng = sum(closes[i + 1 - long : i + 1]) / long
        rel = Side.BUY if s > lng else Side.SELL if s < lng else prev
        if prev is not None and rel != prev and i >= start:
            out.append((i, rel))
        prev = rel
    return out


async def test_warms_up_from_history_then_signals_exactly_the_live_crossings() -> None:
    closes = closes_with_crosses()
    history = History(closes)
    runner, signals = await run_runner(history, stream_from=25, upto=len(closes))
    assert runner.warmed_up
    assert {c.symbol for c in history.candles} == {"BTC/USDT"}
    assert runner.last_update is not None and runner.last_update.candle.symbol == "BTC/USDT"
    got = [(s.candle_open_time // DAY, s.side) for s in signals]
    assert got == naive_crosses(closes, 3, 10, start=25)
    assert got, "the fixture must contain live crossings"
    # warm-up fetched the closed candles before the first streamed one
    assert history.calls[0][1] == 25 * DAY


async def test_warms_up_from_the_exchange_clock_when_no_kline_frame_ever_comes() -> None:
    """A bot (re)started after a replay ended, or while the stream is quiet: no frame arrives, yet it
    must load its history and become ready (it used to wait for the first frame for ever). Candles
    streamed afterwards then give exactly the live crossings."""
    closes = closes_with_crosses()
    history = Clocked(closes, current=40)
    runner, events, signals = spawning_runner(history)
    runner.start()
    runner.start()  # idempotent: one warm-up
    ready = await asyncio.wait_for(events.get(), 5)
    assert isinstance(ready, HistoryReady)
    runner.handle_history(ready)
    assert runner.warmed_up and events.empty()
    assert runner.cross.last_open_time == 39 * DAY  # every candle closed by the exchange's clock
    until = history.now - DAY + 1
    assert history.calls == [(until - 12 * DAY, until)]
    assert signals == []  # history crossings are warm-up, not signals
    for i in range(40, len(closes)):
        runner.handle_kline(kline(i, closes[i]))
    assert [(s.candle_open_time // DAY, s.side) for s in signals] == naive_crosses(closes, 3, 10, start=40)
    assert signals


async def test_clock_started_warmup_still_signals_candles_first_seen_on_the_stream() -> None:
    """The clock says candle 45 is open, but the stream showed candles from 40 on while the history
    fetch was in flight: those closed live, so their crossings are signals, exactly as when the first
    frame starts the warm-up."""
    closes = closes_with_crosses()
    history = Clocked(closes, current=45)
    runner, events, signals = spawning_runner(history)
    runner.start()
    for i in range(40, 45):
        runner.handle_kline(kline(i, closes[i]))
    runner.handle_history(await asyncio.wait_for(events.get(), 5))  # type: ignore[arg-type]
    for i in range(45, len(closes)):
        runner.handle_kline(kline(i, closes[i]))
    assert [(s.candle_open_time // DAY, s.side) for s in signals] == naive_crosses(closes, 3, 10, start=40)
    assert len(history.calls) == 1


async def test_closed_candles_arriving_during_warmup_are_not_lost() -> None:
    closes = closes_with_crosses()
    history = History(closes)
    # The stream starts at 20 but history resolves only after several closes were buffered.
    runner, signals = await run_runner(history, stream_from=20, upto=len(closes))
    assert runner.cross.last_open_time == (len(closes) - 1) * DAY
    assert [(s.candle_open_time // DAY, s.side) for s in signals] == naive_crosses(closes, 3, 10, start=20)


async def test_gap_in_history_is_refetched_not_averaged_over() -> None:
    closes = closes_with_crosses()
    history = History(closes, missing_once={15 * DAY})
    runner, signals = await run_runner(history, stream_from=25, upto=len(closes))
    assert len(history.calls) >= 2, "the gap must trigger a refetch"
    assert runner.candles_processed == len(closes) - (25 - 12)
    assert [(s.candle_open_time // DAY, s.side) for s in signals] == naive_crosses(closes, 3, 10, start=25)


async def test_missed_live_candle_is_backfilled_before_deciding() -> None:
    closes = closes_with_crosses()
    history = History(closes)
    runner, events, signals = spawning_runner(history)

    async def settle() -> None:
        for _ in range(50):
            await asyncio.sleep(0)
            while not events.empty():
                runner.handle_history(events.get_nowait())  # type: ignore[arg-type]

    for i in range(25, len(closes)):
        if i in (33, 34, 41):  # the stream lost these closes (a disconnect)
            continue
        runner.handle_kline(kline(i, closes[i]))
        await settle()
    await settle()
    assert [(s.candle_open_time // DAY, s.side) for s in signals] == naive_crosses(closes, 3, 10, start=25)
    assert runner.cross.last_open_time == (len(closes) - 1) * DAY
