"""Crossings across a restart are judged on the exchange's clock, and none found in history is lost.

A bot killed right after deciding a signal restarts and warms up from REST history that now holds
the crossing. Before (#11), whether it was acted on depended on the local wall clock (a crossing on
candles from another era, a replay or a clock that is off, counted as history and was lost), and
crossings that closed while the bot was down were never stored at all.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tests.strategy.test_strategy_runner import History, closes_with_crosses, kline
from tradefleet.config import BotConfig
from tradefleet.domain.models import Signal
from tradefleet.domain.sma_cross import SmaCrossover
from tradefleet.engine.strategy import MISSED, HistoryReady, StrategyRunner
from tradefleet.logs import now_ms
from tradefleet.metrics import BotMetrics

SHORT, LONG = 3, 10


def closes() -> list[Decimal]:
    """Flat, down, up, down, up, down: four crossings after the first relation."""
    seq = closes_with_crosses()
    return seq + [Decimal(56 + 6 * i) for i in range(15)] + [Decimal(140 - 6 * i) for i in range(15)]


def crossing_indexes(closes: list[Decimal]) -> list[int]:
    history = History(closes)
    cross = SmaCrossover(SHORT, LONG)
    return [i for i, c in enumerate(history.candles) if cross.on_close(c).cross is not None]


async def restart_at(current: int, resume_after: int | None, extra: int = 40) -> list[Signal]:
    """A runner whose first kline frame is candle `current` (open), as after a restart; the local
    clock is the real wall clock, decades after these candles."""
    history = History(closes())
    signals: list[Signal] = []
    events: asyncio.Queue[object] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    runner = StrategyRunner(
        BotConfig(short_window=SHORT, long_window=LONG, warmup_extra=extra),
        history,  # type: ignore[arg-type]
        BotMetrics(),
        post=events.put_nowait,
        spawn=lambda c: tasks.append(asyncio.ensure_future(c)),
        on_signal=signals.append,
        clock=now_ms,
    )
    runner.resume_after_ms = resume_after
    runner.handle_kline(kline(current, history.candles[current].close, closed=False))
    for _ in range(50):
        await asyncio.sleep(0)
        while not events.empty():
            ready = events.get_nowait()
            assert isinstance(ready, HistoryReady)
            runner.handle_history(ready)
    return signals


async def test_a_crossing_on_the_newest_closed_candle_is_acted_on_whatever_the_local_clock_says() -> None:
    crossings = crossing_indexes(closes())
    assert len(crossings) >= 3
    last = crossings[-1]
    signals = await restart_at(last + 1, resume_after=None)
    assert [(s.candle_open_time, s.action) for s in signals] == [(last * 86_400_000, "pending")]


async def test_crossings_after_the_last_stored_signal_are_stored_as_missed_and_only_the_newest_acted_on() -> (
    None
):
    crossings = crossing_indexes(closes())
    first, *between, last = crossings
    assert between
    day = 86_400_000
    signals = await restart_at(last + 1, resume_after=first * day)
    assert [(s.candle_open_time // day, s.action) for s in signals] == [
        *[(i, MISSED) for i in between],
        (last, "pending"),
    ]
    # With nothing stored (a first start) older crossings are only history.
    signals = await restart_at(last + 3, resume_after=None)
    assert signals == []


async def test_a_bot_down_longer_than_its_warm_up_window_still_stores_every_crossing_it_missed() -> None:
    # Down from just after the first crossing until well past the warm-up window (long + extra = 12
    # candles here): the warm-up reaches back to the newest stored signal instead.
    crossings = crossing_indexes(closes())
    first, *between, last = crossings
    day = 86_400_000
    assert last - first > LONG + 2
    signals = await restart_at(last + 1, resume_after=first * day, extra=2)
    assert [(s.candle_open_time // day, s.action) for s in signals] == [
        *[(i, MISSED) for i in between],
        (last, "pending"),
    ]
