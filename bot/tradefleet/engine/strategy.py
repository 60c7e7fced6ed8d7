"""The SMA-crossover strategy runner: warm-up from REST history, then closed candles from the stream.

Warm-up starts at once from the exchange's clock (`GET /api/v3/time`: a replayed exchange running in
2018 and the live one in 2026 work alike, no local clock involved) and fetches the candles closed by
then over REST; the first kline frame, if it comes first, starts it the same way from its open time.
It never waits for a frame: a bot (re)started while the market sends none (a replay that ended or is
paused, a quiet stream) must still load its history and become ready. Closed klines that arrive
meanwhile are buffered and merged, so nothing between history and stream is lost.

A closed candle that does not follow the last one (a disconnect, a dropped frame) pauses decisions
until the missing range is refetched; gaps are never averaged over. History crossings are warm-up, not
signals — except a crossing on the newest closed candle (judged against the exchange's current
candle, never the local clock: the bot was restarting when it happened), which is acted on, and
crossings after the newest signal already stored, which are stored as missed; deterministic ids make
each stored and acted on at most once.

Synchronous `handle_*` methods for the engine's loop; fetches run as spawned tasks whose results come
back through `post`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradefleet.config import BotConfig
from tradefleet.domain.candles import CandleClock, candle_from_kline, find_gaps, merge
from tradefleet.domain.market import KlineEvent
from tradefleet.domain.models import Candle, Side, Signal
from tradefleet.domain.sma_cross import Cross, SmaCrossover, SmaUpdate, signal_id
from tradefleet.engine.hot_close import QUIET_S, REHEARSE_EVERY_S, CloseForecast
from tradefleet.errors import MalformedFrame, TemporaryError
from tradefleet.logs import log_event, now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.ports import MarketRest

log = logging.getLogger("tradefleet.strategy")

MAX_CATCHUP = 5_000
"""Candles a restarted bot fetches at most to find the crossings it missed while it was down."""
MISSED = "missed_while_down"
"""Stored action of a crossing that closed while no process of this bot was running (not acted on)."""


@dataclass(frozen=True, slots=True)
class HistoryReady:
    purpose: str  # "warmup" | "backfill"
    since: int
    until: int
    candles: list[Candle]


class StrategyRunner:
    def __init__(
        self,
        config: BotConfig,
        rest: MarketRest,
        metrics: BotMetrics,
        *,
        post: Callable[[object], None],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        on_signal: Callable[[Signal], None],
        on_candle: Callable[[Candle, SmaUpdate], None] | None = None,
        on_close_near: Callable[[Signal, float], None] | None = None,
        clock: Callable[[], int] = now_ms,
        timed: bool = True,
    ) -> None:
        self.config = config
        self.rest = rest
        self.metrics = metrics
        self.post = post
        self.spawn = spawn
        self.on_signal = on_signal
        self.on_candle = on_candle
        # `engine.hot_close`: called `hot_close_ms` before a candle's close is forecast, with the signal
        # a crossing on it would make at the latest price, and until when to hold the loop awake.
        # Never on a simulated clock (`timed=False`): a backtest has no loop to keep warm.
        self.on_close_near = on_close_near if timed and config.hot_close_ms > 0 else None
        self._hot_close_s = config.hot_close_ms / 1000
        self._close_forecast = CloseForecast()
        self._close_timer: asyncio.TimerHandle | None = None
        self._close_due: tuple[int, float] | None = None  # (candle open time, forecast local arrival)
        self.clock = clock
        self.interval_ms = config.interval_ms
        self.cross = SmaCrossover(config.short_window, config.long_window)
        self.candle_clock = CandleClock(self.interval_ms)
        self.pending: dict[int, Candle] = {}  # closed candles waiting for history/backfill
        self.fetching: str | None = None  # "warmup" | "backfill" while a fetch is in flight
        self.loaded = False  # history fetched and merged; closed candles now flow straight through
        self.last_update: SmaUpdate | None = None
        self.live_close: Decimal | None = None  # in-progress candle's close (display only)
        self.candles_processed = 0
        self.last_gap: tuple[int, int] | None = None
        self.resume_after_ms: int | None = None
        """Candle open time of the newest signal this bot had stored before it started (set by the
        app before market data flows); crossings after it found in the warm-up history were missed."""
        # Open time of the first kline frame seen: candles from there on were seen live on the stream,
        # so their crossings are signals even if the clock-started warm-up also fetched them.
        self.stream_from: int | None = None
        # Pre-bound metric children: `labels()` is a locked lookup that costs more than the update.
        # `timed=False` (a backtest on the simulated clock): the wall-clock latency of a replayed
        # candle says nothing about live trading, and observing it cost a fifth of the candle.
        self._candle_latency = metrics.op_latency["candle_update"].observe if timed else None
        # The strategy's gauges are read at scrape time from its own state: a closed candle pays
        # nothing for them (a backtest closes millions), and a scrape never sees them half-updated.
        self._last_close: Decimal | None = None
        self._signals_seen = {side: metrics.signals.labels(side.value) for side in Side}
        metrics.last_price.set_function(lambda: float(self._last_close or 0))
        metrics.warmed_up.set_function(lambda: 1.0 if self.cross.warmed_up else 0.0)
        metrics.sma.labels("short").set_function(lambda: float(self.cross.short.value or 0))
        metrics.sma.labels("long").set_function(lambda: float(self.cross.long.value or 0))

    @property
    def warmed_up(self) -> bool:
        """History loaded and the long SMA has a full window: decisions can be made."""
        return self.loaded and self.cross.warmed_up

    # -- events from the engine ---------------------------------------------------------------------

    def start(self) -> None:
        """Begin warm-up from the exchange's clock (the engine calls this once, at start-up)."""
        if not self.loaded and self.fetching is None and self.candle_clock.last_open_time is None:
            self.fetching = "warmup"
            self.spawn(self._warmup_from_clock())

    def handle_kline(self, k: KlineEvent) -> None:
        if k.interval != self.config.interval:
            return
        started = time.perf_counter() if self._candle_latency is not None else 0.0
        if self.on_close_near is not None:
            try:
                self._watch_close(k)
            except Exception:  # a speed-up must never cost a candle: the close takes the cold path
                log.exception("close watch failed", extra={"event": "close_watch_error"})
        if self.stream_from is None:
            self.stream_from = k.open_time
        if not self.loaded and self.fetching is None and self.candle_clock.last_open_time is None:
            # The first frame tells where "now" is on the exchange's clock.
            self._fetch("warmup", self._warmup_since(k.open_time), k.open_time)
        if k.closed:
            candle = candle_from_kline(k, self.config.symbol)
            self.live_close = candle.close
            if self.fetching is not None or not self.loaded:
                self.pending[candle.open_time] = candle
            else:
                self._accept(candle)
        else:
            self.live_close = Decimal(k.close)
        if self._candle_latency is not None:
            self._candle_latency(time.perf_counter() - started)

    def handle_history(self, ready: HistoryReady) -> None:
        self.fetching = None
        candles = merge(ready.candles, self.pending.values())
        if ready.purpose == "warmup":
            self._finish_warmup(candles, ready)
        else:
            self._drain(candles)

    def stop(self) -> None:
        """No close rehearsal pending (the engine is closing, or a newer frame forecasts again)."""
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    # -- internals ----------------------------------------------------------------------------------

    def _watch_close(self, k: KlineEvent) -> None:
        """Forecast when this candle's closing frame arrives and set the rehearsal for just before it;
        on the closing frame itself, note how far off the forecast was."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # handled with no loop running (a synchronous replay): nothing to time
            return
        now = loop.time()
        forecast = self._close_forecast
        forecast.frame(k.event_time, now)
        self.stop()  # this frame's forecast replaces the last one's
        due = self._close_due
        if k.closed:
            if due is not None and due[0] == k.open_time:
                self.metrics.close_forecast_error.set(now - due[1])
                forecast.closed(now - due[1])
            self._close_due = None
            return
        arrival = forecast.arrival(k.close_time, k.event_time, now)
        self._close_due = (k.open_time, arrival)
        self._close_timer = loop.call_at(arrival - self._hot_close_s, self._close_near, k, arrival)

    def _close_near(self, k: KlineEvent, arrival: float) -> None:
        """The close of `k`'s candle is `hot_close_ms` away: hand on the signal a crossing would make
        if the candle closed at its latest price (the side the next crossing has, whatever the price
        does by then), and until when to stay awake. Nothing here changes the strategy's state."""
        self._close_timer = None
        assert self.on_close_near is not None
        if not self.warmed_up or self.fetching is not None:
            return
        side = self.cross.next_cross()
        if side is None:
            return
        try:
            candle = candle_from_kline(k, self.config.symbol)
            s = self.cross.short.peek(candle.close)
            lng = self.cross.long.peek(candle.close)
        except (ValueError, ArithmeticError):  # a price the real close would refuse as well
            return
        if s is None or lng is None:
            return
        until = arrival + self._hot_close_s
        self.on_close_near(self._signal(side, candle, s, lng, "pending"), until)
        # Again while the loop is held (what ran in between, a book burst, evicts the path), but not
        # in the last moments before the forecast: the close, due any moment, must not find the loop
        # busy with a rehearsal (its commit holds the loop ~0.2-1 ms).
        loop = asyncio.get_running_loop()
        if loop.time() + REHEARSE_EVERY_S < arrival - QUIET_S:
            self._close_timer = loop.call_later(REHEARSE_EVERY_S, self._close_near, k, arrival)

    def _warmup_since(self, current_open: int) -> int:
        back = (self.config.long_window + self.config.warmup_extra) * self.interval_ms
        since = current_open - back
        if self.resume_after_ms is not None:
            # Reach back to the newest stored signal (#11): crossings while the bot was down for
            # longer than the warm-up window must be seen to be stored as missed. Bounded, so a
            # bot revived after years does not page through all of history.
            since = max(
                min(since, self.resume_after_ms - back), current_open - MAX_CATCHUP * self.interval_ms
            )
        return since

    async def _warmup_from_clock(self) -> None:
        delay = 0.5
        while True:
            try:
                now = await self.rest.server_time_ms()
                break
            except Exception as e:  # the exchange is not answering yet: keep asking, slowly
                self.metrics.rest_errors.labels(type(e).__name__).inc()
                wait = getattr(e, "retry_after", None) or delay * (0.5 + random.random())
                log_event(log, "history_retry", logging.WARNING, purpose="clock", error=str(e), wait_s=wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.config.reconnect_max_s)
        # Candles closed by `now` are history; the one open at `now` (open time above `until`) and
        # later ones come from the stream, so a crossing on them is a live signal, never dropped.
        until = now - self.interval_ms + 1
        # Frames seen meanwhile make those candles live: the window must end before the first.
        anchor = until if self.stream_from is None else min(until, self.stream_from)
        await self._fetch_task("warmup", self._warmup_since(anchor), until)

    def _fetch(self, purpose: str, since: int, until: int) -> None:
        self.fetching = purpose
        self.spawn(self._fetch_task(purpose, since, until))

    async def _fetch_task(self, purpose: str, since: int, until: int) -> None:
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                candles = await self.rest.fetch_candles(
                    self.config.symbol, self.config.interval, since, until
                )
                missing = find_gaps(
                    [since - self.interval_ms, *[c.open_time for c in candles], until], self.interval_ms
                )
                if missing and purpose == "backfill" and attempt < 5:
                    raise TemporaryError(f"exchange returned history with gaps {missing[:3]}")
                self.post(HistoryReady(purpose, since, until, candles))
                return
            except TemporaryError as e:
                self.metrics.rest_errors.labels(type(e).__name__).inc()
                if isinstance(e.__cause__, MalformedFrame):  # a bad number in the history: none of it used
                    self.metrics.malformed.inc()
                wait = e.retry_after if e.retry_after is not None else delay * (0.5 + random.random())
                log_event(log, "history_retry", logging.WARNING, purpose=purpose, error=str(e), wait_s=wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.config.reconnect_max_s)
            except Exception as e:  # a bug or a permanent refusal: keep the bot up, keep trying slowly
                self.metrics.rest_errors.labels(type(e).__name__).inc()
                log_event(log, "history_error", logging.ERROR, purpose=purpose, error=repr(e))
                await asyncio.sleep(self.config.reconnect_max_s)

    def _finish_warmup(self, candles: list[Candle], ready: HistoryReady) -> None:
        until = ready.until if self.stream_from is None else min(ready.until, self.stream_from)
        history = [c for c in candles if c.open_time < until]
        live = [c for c in candles if c.open_time >= until]
        gaps = find_gaps([c.open_time for c in history], self.interval_ms)
        if gaps:
            # Refetch instead of averaging over missing candles.
            self.last_gap = gaps[0]
            log_event(log, "history_gap", logging.WARNING, gaps=[list(g) for g in gaps[:5]])
            self.pending = {c.open_time: c for c in candles}
            self._fetch("warmup", ready.since, ready.until)
            return
        crosses = []
        for candle in history:
            update = self.cross.on_close(candle)
            self.candle_clock.advance(candle.open_time)
            self._after_candle(candle, update)
            if update.cross is not None:
                crosses.append(update.cross)
        self.pending.clear()
        self.loaded = True
        log_event(
            log,
            "warmed_up" if self.warmed_up else "warmup_short",
            candles=len(history),
            needed=self.cross.needed,
            sma_short=self.cross.short.value,
            sma_long=self.cross.long.value,
        )
        self._emit_history_crosses(crosses, ready.until)
        # With less history than the long window, the stream's candles complete the warm-up.
        self._drain(live)

    def _emit_history_crosses(self, crosses: list[Cross], current_open: int) -> None:
        """Crossings found in the warm-up history, judged on the exchange's clock only (#11).

        `current_open` is the open time of the candle the exchange is forming now (from its own
        kline frame). A crossing on the newest closed candle (the one just before it) is still this
        bot's to act on: the process may have been killed after deciding it and before storing it.
        Older crossings after `resume_after_ms` (the newest signal this bot had stored) were missed
        while the bot was down: each is stored once, with the reason, never acted on (its price is
        gone). Crossings at or before `resume_after_ms` are already stored; with nothing stored
        (a first start) older history is only history."""
        for cross in crosses:
            candle = cross.candle
            if candle.open_time + self.interval_ms >= current_open:
                self._emit(cross.side, candle, cross.sma_short, cross.sma_long)
            elif self.resume_after_ms is not None and candle.open_time > self.resume_after_ms:
                self._emit(cross.side, candle, cross.sma_short, cross.sma_long, action=MISSED)

    def _drain(self, candles: list[Candle]) -> None:
        for candle in candles:
            if self.fetching is not None:
                self.pending[candle.open_time] = candle
                continue
            self._accept(candle)

    def _accept(self, candle: Candle) -> None:
        clock = self.candle_clock
        last = clock.last_open_time
        if last is None or candle.open_time != last + self.interval_ms:  # else: the next one, as usual
            kind = clock.classify(candle.open_time)
            if kind == "duplicate":
                return
            if kind == "gap":
                start, end = clock.missing_range(candle.open_time)
                self.last_gap = (start, end)
                log_event(log, "candle_gap", logging.WARNING, missing_from=start, missing_to=end)
                self.pending[candle.open_time] = candle
                self._fetch("backfill", start, end)
                return
        update = self.cross.on_close(candle)
        clock.advance(candle.open_time)
        self._after_candle(candle, update)
        if update.cross is not None:
            self._emit(update.cross.side, candle, update.cross.sma_short, update.cross.sma_long)

    def _after_candle(self, candle: Candle, update: SmaUpdate) -> None:
        self.last_update = update
        self.candles_processed += 1
        self._last_close = candle.close
        if self.on_candle is not None:
            self.on_candle(candle, update)

    def _emit(self, side: Any, candle: Candle, s: Decimal, lng: Decimal, action: str = "pending") -> None:
        sig = self._signal(side, candle, s, lng, action)
        self._signals_seen[side].inc()
        self.on_signal(sig)

    def _signal(self, side: Side, candle: Candle, s: Decimal, lng: Decimal, action: str) -> Signal:
        c = self.config
        return Signal(
            signal_id=signal_id(c.name, c.exchange, c.symbol, c.interval, candle.open_time, side),
            bot=c.name,
            exchange=c.exchange,
            symbol=c.symbol,
            interval=c.interval,
            side=side,
            candle_open_time=candle.open_time,
            candle_close_time=candle.close_time,
            close=candle.close,
            sma_short=s,
            sma_long=lng,
            created_at=self.clock(),
            action=action,
        )
