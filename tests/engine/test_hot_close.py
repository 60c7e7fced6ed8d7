"""Hot close (`engine.hot_close`, `tradefleet.awake`): the close's forecast from the kline frames,
the rehearsal the strategy asks for just before it (the crossing that close could make, computed
without touching the strategy's state), and the loop held awake meanwhile. Every clock here is the
test's, or a timer already due: nothing depends on how busy the machine is."""

from __future__ import annotations

import asyncio
import copy
import gc
import time
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategy.test_strategy_runner import History, kline
from tradefleet import awake
from tradefleet.awake import AwakeSelector
from tradefleet.config import BotConfig
from tradefleet.domain.market import KlineEvent
from tradefleet.domain.models import Side, Signal
from tradefleet.domain.sma_cross import RollingMean, SmaCrossover
from tradefleet.engine.hot_close import LIVE_RATE, CloseForecast
from tradefleet.engine.strategy import HistoryReady, StrategyRunner
from tradefleet.errors import ConfigError
from tradefleet.metrics import BotMetrics

DAY = 86_400_000


# --- the selector ------------------------------------------------------------------------------


def test_a_held_selector_polls_until_its_deadline_then_sleeps_as_asked() -> None:
    now = [100.0]
    selector = AwakeSelector(clock=lambda: now[0])
    try:
        assert selector.timeout(5.0) == 5.0 and selector.timeout(None) is None  # not held
        selector.hold(100.5)
        assert selector.timeout(5.0) == 0 and selector.timeout(None) == 0
        selector.hold(100.2)  # an earlier deadline does not shorten the hold
        now[0] = 100.4
        assert selector.timeout(5.0) == 0
        now[0] = 100.5
        assert selector.timeout(5.0) == 5.0  # over: and it stays over
        now[0] = 100.0
        assert selector.timeout(5.0) == 5.0
        selector.hold(200.0)
        selector.release()
        assert selector.timeout(None) is None
    finally:
        selector.close()


def test_the_collector_waits_while_held_and_only_a_hold_that_stopped_it_restarts_it() -> None:
    now = [100.0]
    selector = AwakeSelector(clock=lambda: now[0])
    try:
        assert gc.isenabled()
        selector.hold(100.5)
        assert not gc.isenabled()
        selector.hold(101.0)  # extended: still off, and one restart owed
        now[0] = 101.0
        selector.timeout(1.0)  # the hold is over
        assert gc.isenabled()
        selector.hold(102.0)
        selector.release()
        assert gc.isenabled()
        selector.hold(103.0)
        selector.close()  # a loop closed while held leaves no collector off behind it
        assert gc.isenabled()
        gc.disable()  # off before the hold (someone else's choice): left off after it
        selector = AwakeSelector(clock=lambda: now[0])
        selector.hold(104.0)
        selector.release()
        assert not gc.isenabled()
    finally:
        gc.enable()
        selector.close()


def test_keep_awake_holds_only_a_loop_made_to_be_held() -> None:
    async def main() -> tuple[bool, bool]:
        held = awake.keep_awake(asyncio.get_running_loop().time() + 3600)
        await asyncio.sleep(0.001)  # timers still fire while the loop polls
        awake.let_sleep()
        await asyncio.sleep(0)
        return held, True

    assert awake.run(main()) == (True, True)
    assert asyncio.run(main()) == (False, True)  # any other loop: nothing held, nothing broken


# --- the forecast --------------------------------------------------------------------------------


def test_the_forecast_follows_the_exchange_clock_live_and_replayed() -> None:
    live = CloseForecast()
    assert live.rate == LIVE_RATE
    live.frame(10_000, 50.0)
    live.frame(12_000, 52.0)  # Binance: a kline frame every 2 s
    assert live.rate == pytest.approx(1000.0)
    assert live.arrival(close_time_ms=13_500, event_time_ms=12_000, local_s=52.0) == pytest.approx(53.5)
    replay = CloseForecast()
    replay.frame(0, 1.0)
    replay.frame(20_000, 1.0 + 1 / 36)  # a 1-minute candle's thirds at 12 candles a second
    assert replay.rate == pytest.approx(720_000.0)
    assert replay.arrival(60_000, 40_000, 2.0) == pytest.approx(2.0 + 1 / 36)


def test_frames_that_say_nothing_about_the_pace_leave_it_as_it_was() -> None:
    f = CloseForecast()
    f.frame(0, 1.0)
    f.frame(1_000, 2.0)
    f.frame(1_000, 3.0)  # the same event time
    f.frame(500, 4.0)  # out of order
    f.frame(9_000, 4.0000001)  # read in one burst with the one before
    assert f.rate == pytest.approx(1000.0)
    assert f.arrival(5_000, 6_000, 7.0) == 7.0  # already due: now


def test_a_venue_that_publishes_its_close_late_is_learnt_and_a_stall_is_not() -> None:
    f = CloseForecast()
    f.frame(0, 0.0)
    f.frame(2_000, 2.0)
    for _ in range(8):  # every closing frame 150 ms after its forecast, as the forecast stands each time
        f.closed(0.150 - f.lag)
    assert f.lag == pytest.approx(0.150, abs=0.001)
    assert f.arrival(3_000, 2_000, 2.0) == pytest.approx(3.150, abs=0.001)
    f.closed(30.0)  # a close that came after a reconnect: not lag
    assert f.lag == pytest.approx(0.150, abs=0.001)
    f.closed(-0.100)  # early now: the lag follows half way
    assert f.lag == pytest.approx(0.100, abs=0.001)


def test_hot_close_ms_is_checked() -> None:
    assert BotConfig.from_mapping({"hot_close_ms": 0}).hot_close_ms == 0
    for bad in (-1, 1001):
        with pytest.raises(ConfigError, match="hot_close_ms"):
            BotConfig.from_mapping({"hot_close_ms": bad})


# --- the preview: what a close would do, changing nothing -------------------------------------------

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(prices, min_size=1, max_size=40), st.integers(min_value=1, max_value=6))
def test_peek_is_push_without_the_push(closes: list[Decimal], window: int) -> None:
    mean = RollingMean(window)
    for close in closes:
        before = copy.deepcopy(mean)
        peeked = mean.peek(close)
        assert (mean._total, list(mean._values)) == (before._total, list(before._values))
        assert peeked == before.push_checked(close) == mean.push_checked(close)


def test_the_next_cross_is_the_other_side_once_there_is_a_relation() -> None:
    cross = SmaCrossover(1, 2)
    assert cross.next_cross() is None
    cross.relation = Side.BUY
    assert cross.next_cross() is Side.SELL
    cross.relation = Side.SELL
    assert cross.next_cross() is Side.BUY


# --- the strategy asks for the rehearsal --------------------------------------------------------------


def frame(i: int, close: Decimal, event_time: int, *, closed: bool = False) -> KlineEvent:
    k = kline(i, close, closed=closed)
    return KlineEvent(k.symbol, event_time, k.interval, k.open_time, k.close_time, k.open, k.high, k.low,
                      k.close, k.volume, k.trades, closed)  # fmt: skip


async def warmed_runner(
    config: BotConfig, metrics: BotMetrics, *, timed: bool = True
) -> tuple[StrategyRunner, list[tuple[Signal, float]], list[Signal]]:
    """A 2/5 runner warmed on ten rising closes (short above long: the next crossing is a SELL)."""
    closes = [Decimal(100 + i) for i in range(10)]
    history = History(closes)
    near: list[tuple[Signal, float]] = []
    signals: list[Signal] = []
    runner = StrategyRunner(
        config, history, metrics, post=lambda e: None, spawn=asyncio.ensure_future,  # type: ignore[arg-type]
        on_signal=signals.append, on_close_near=lambda s, until: near.append((s, until)), timed=timed,
        clock=lambda: 0,
    )  # fmt: skip
    runner.handle_history(HistoryReady("warmup", 0, 10 * DAY, history.candles))
    assert runner.warmed_up and runner.cross.relation is Side.BUY
    return runner, near, signals


async def test_the_rehearsal_comes_before_the_close_with_the_crossing_it_could_make() -> None:
    config = BotConfig(short_window=2, long_window=5, hot_close_ms=20)
    metrics = BotMetrics()
    runner, near, signals = await warmed_runner(config, metrics)
    cross = runner.cross
    state = (cross.relation, cross.short._total, cross.long._total, list(cross.long._values))
    close_time = 11 * DAY - 1
    # In-progress frames of candle 10, the last 10 ms (exchange time, live pace) before its close: the
    # window (20 ms before the close) is open already, so the rehearsal is due at once.
    runner.handle_kline(frame(10, Decimal(50), close_time - 2_010))
    runner.handle_kline(frame(10, Decimal(50), close_time - 10))
    for _ in range(3):
        await asyncio.sleep(0)
    assert near, "no rehearsal"
    signal, until = near[0]
    assert signal.side is Side.SELL and signal.close == Decimal(50) and signal.action == "pending"
    assert signal.candle_open_time == 10 * DAY
    # (109 + 50) / 2 and (106 + 107 + 108 + 109 + 50) / 5:
    assert (signal.sma_short, signal.sma_long) == (Decimal("79.5"), Decimal(96))
    assert until > asyncio.get_running_loop().time()
    # Nothing of the strategy moved: no candle taken, no signal handed on or counted.
    assert (cross.relation, cross.short._total, cross.long._total, list(cross.long._values)) == state
    assert signals == [] and runner.candles_processed == 10
    # The closing frame: the same signal for real, the forecast's error noted, no more rehearsals.
    runner.handle_kline(frame(10, Decimal(50), close_time + 1, closed=True))
    rehearsed = len(near)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(near) == rehearsed
    assert [s.signal_id for s in signals] == [signal.signal_id] and signals[0].sma_long == signal.sma_long
    assert metrics.registry.get_sample_value("tradefleet_close_forecast_error_seconds") != 0.0


@pytest.mark.parametrize(("hot_close_ms", "timed"), [(0, True), (20, False)])
async def test_no_rehearsal_when_turned_off_or_on_a_simulated_clock(hot_close_ms: int, timed: bool) -> None:
    config = BotConfig(short_window=2, long_window=5, hot_close_ms=hot_close_ms)
    runner, near, _ = await warmed_runner(config, BotMetrics(), timed=timed)
    runner.handle_kline(frame(10, Decimal(50), 11 * DAY - 2_011))
    runner.handle_kline(frame(10, Decimal(50), 11 * DAY - 11))
    for _ in range(3):
        await asyncio.sleep(0)
    assert near == []


async def test_a_close_far_away_is_rehearsed_only_when_near_and_a_new_frame_moves_it() -> None:
    config = BotConfig(short_window=2, long_window=5, hot_close_ms=20)
    runner, near, _ = await warmed_runner(config, BotMetrics())
    runner.handle_kline(frame(10, Decimal(50), 10 * DAY + 1_000))  # a day away at live pace
    for _ in range(3):
        await asyncio.sleep(0)
    assert near == []
    runner.handle_kline(frame(10, Decimal(50), 11 * DAY - 5))  # now it is near: due at once
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(near) >= 1
    runner.stop()
    count = len(near)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(near) == count


def test_with_no_loop_running_the_close_is_handled_as_ever() -> None:
    """A synchronous replay calls the strategy with no loop running: nothing to time, every candle taken."""
    config = BotConfig(short_window=2, long_window=5, hot_close_ms=20)
    closes = [Decimal(100 + i) for i in range(10)]
    history = History(closes)
    near: list[tuple[Signal, float]] = []
    signals: list[Signal] = []
    runner = StrategyRunner(
        config, history, BotMetrics(), post=lambda e: None, spawn=lambda c: c.close(),  # type: ignore[arg-type]
        on_signal=signals.append, on_close_near=lambda s, until: near.append((s, until)), clock=lambda: 0,
    )  # fmt: skip
    runner.handle_history(HistoryReady("warmup", 0, 10 * DAY, history.candles))
    runner.handle_kline(frame(10, Decimal(50), 11 * DAY - 11))
    runner.handle_kline(frame(10, Decimal(50), 11 * DAY, closed=True))
    assert near == [] and [s.side for s in signals] == [Side.SELL] and runner.candles_processed == 11


# --- the engine: the loop held, the manager asked, the outcome counted ---------------------------------


class Deferring:
    """The buffered store's side of the engine's `SinkLike` seam, noting how long market data waits."""

    def __init__(self) -> None:
        self.deferred_until = 0.0

    def defer_market_data(self, seconds: float) -> None:
        self.deferred_until = max(self.deferred_until, time.monotonic() + seconds)


class Rehearsing:
    """The order manager's side of the engine's `SignalTaker` seam, noting the rehearsals it is asked for."""

    def __init__(self, ready: bool = True, fails: bool = False) -> None:
        self.ready, self.fails = ready, fails
        self.rehearsed: list[Signal] = []

    def ready_to_act(self) -> bool:
        return self.ready

    def rehearse(self, signal: Signal) -> str:
        if self.fails:
            raise RuntimeError("a bug in a rehearsal")
        self.rehearsed.append(signal)
        return "order"

    def submit_signal(self, signal: Signal) -> None:
        raise AssertionError("a rehearsal hands nothing on")

    def act_now(self, signal: Signal) -> None:
        raise AssertionError("a rehearsal hands nothing on")

    async def settle(self) -> None:
        return None


def test_the_engine_holds_its_loop_awake_rehearses_and_counts_what_happened() -> None:
    from tests.engine.test_signal_handoff import NoRest, _signal
    from tradefleet.engine.book_keeper import BookKeeper
    from tradefleet.engine.pipeline import BotEngine

    def rehearsals(metrics: BotMetrics, result: str) -> float:
        return (
            metrics.registry.get_sample_value("tradefleet_close_rehearsals_total", {"result": result}) or 0.0
        )

    async def main() -> None:
        metrics = BotMetrics()
        rest = NoRest()
        book = BookKeeper(
            market_id="BTCUSDT", rest=rest, depth_limit=100, metrics=metrics, post=lambda e: None
        )  # type: ignore[arg-type]
        sink = Deferring()
        engine = BotEngine(BotConfig(name="hot"), metrics, book=book, rest=rest, sink=sink)  # type: ignore[arg-type]
        until = asyncio.get_running_loop().time() + 3600
        for taker, result in ((Rehearsing(), "order"), (Rehearsing(ready=False), "not_ready"),
                              (Rehearsing(fails=True), "failed")):  # fmt: skip
            engine.orders = taker  # type: ignore[assignment]
            engine._close_near(_signal(1), until)
            assert rehearsals(metrics, result) == 1
            assert taker.rehearsed == ([_signal(1)] if result == "order" else [])
        assert awake.held_until() == until
        assert until <= sink.deferred_until < until + 1  # no price batch takes the store meanwhile
        assert not gc.isenabled()
        awake.let_sleep()
        assert gc.isenabled()
        assert awake.held_until() == 0.0

    awake.run(main())
