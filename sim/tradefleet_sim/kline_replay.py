"""Replay of a candle series in accelerated time, and the simulator clock that follows it.

At start the first `history` candles are closed and the next one is open (served over REST as
the last row, like Binance's current candle). The replay starts on `start()` (first kline
subscriber, or `POST /sim/control/start`) and then, for each remaining candle, at `speed`
candles per second: `progress_frames` in-progress frames (x=false), each after a re-centre of the
market's book on the candle's price so far, then a re-centre on the candle's close and the closing
frame (x=true) with the recorded OHLCV. The book follows the candle's price through the candle, as
a real book follows the trades, so the re-centre at the close moves it by the last stretch only, not
by the whole candle (one diff of hundreds of levels right before every close). Because
the re-centre is published before the close on the same per-client FIFO, and the true book
stays there until the next candle's close, a market order sent in reaction to the close fills
at about the close (if it arrives within 1/speed seconds; choose `speed` accordingly).
The replay holds (see `holding()`) when paused, during a stall fault, and - unless started
explicitly - while no client is subscribed to its stream, so a bot reconnecting after a drop
finds the book still on the last close.

The clock: event times follow the replayed candles (progress frame k of n at open + k/(n+1) of
the interval, closing frame at close_time), plus the wall time since, capped below the next
scheduled event so time never runs backwards. After the last candle no more klines are sent,
`done` is true and the clock keeps running from the last close - unless `loop` is set: then the
series is played again mirrored in time (each candle's open and close swapped, last candle first),
then forwards again, for ever, on consecutive candle times. Mirroring keeps the price continuous at
each turn (a lap ends where the next begins) with recorded values only, so a long-running stack (the
compose demo) never ends up with a market that stopped moving. Only the newest two laps are kept.

It refuses to skip or reorder candles, and never sends a close for a candle it has not
re-centred the book on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from tradefleet_sim.generator import BookGenerator
from tradefleet_sim.hub import Hub
from tradefleet_sim.klines import (
    INTERVAL_MS,
    Candle,
    KlineSeries,
    bucket_end,
    bucket_start,
    derivable,
    merge_group,
    partial,
    ws_payload,
)
from tradefleet_sim.market import SimMarket


class KlineReplay:
    def __init__(
        self,
        series: KlineSeries,
        *,
        history: int,
        speed: float,
        progress_frames: int,
        hub: Hub,
        market: SimMarket | None,
        generator: BookGenerator | None,
        stalled_until: Callable[[], float] = lambda: 0.0,
        loop: bool = False,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.series = series
        self.symbol = series.symbol
        self.interval = series.interval
        self.stream = f"{series.symbol.lower()}@kline_{series.interval}"
        self.candles: list[Candle] = list(series.candles)
        self.loop = loop
        self.laps = 0  # finished passes over the series (looping only)
        self.position = min(history, len(self.candles))  # index of the open candle
        self.speed = speed
        self.progress_frames = progress_frames
        self.hub = hub
        self.market = market
        self.generator = generator
        self.tick = market.rules.tick_size if market else Decimal("0.01")
        self.current: Candle | None = (
            None if self.done else partial(self.candles[self.position], 0.0, self.tick)
        )
        self.started = False
        self.forced = False  # started by control/autostart: advance even with nobody watching
        self._stalled_until = stalled_until
        self._event_clock = clock  # an injected exchange clock stamps E; else the replay's own
        self._running = asyncio.Event()
        self.frames_sent = 0
        self.closes_sent = 0
        # Time each closing frame's write (`Hub.sent_at`, key `close_key`): SimOptions.record_arrivals.
        self.stamp_closes = False
        # Lockstep (the demo): after each close, hold until the client says it has processed it.
        self.gate: Callable[[], bool] | None = None
        self._clock_base = 0
        self._clock_cap: int | None = None
        self._clock_set = time.monotonic()
        self._clock_last = 0
        self._set_clock_for(self.position, 0)

    @property
    def done(self) -> bool:
        return self.position >= len(self.candles)

    def _append_lap(self) -> None:
        """Queue the next lap: the series mirrored in time after a forward lap, forwards after a
        mirrored one, on the candle times that follow the last one. Drops a lap the REST window no
        longer needs (keeps the newest two), so memory stays flat however long it runs."""
        source = self.series.candles
        mirrored = self.laps % 2 == 0
        last = self.candles[-1]
        # Open times keep the recorded spacing (a short candle, like Binance's 2018-02-08 one, keeps
        # its own close time and does not shift the ones after it off the interval grid).
        base = last.open_time + INTERVAL_MS[self.interval]
        first_open, final_open = source[0].open_time, source[-1].open_time
        trade_id = last.first_trade_id + last.trades
        lap: list[Candle] = []
        for c in reversed(source) if mirrored else source:
            open_time = base + (final_open - c.open_time if mirrored else c.open_time - first_open)
            lap.append(
                replace(
                    c,
                    open_time=open_time,
                    close_time=open_time + c.close_time - c.open_time,
                    open=c.close if mirrored else c.open,
                    close=c.open if mirrored else c.close,
                    first_trade_id=trade_id,
                )
            )
            trade_id += c.trades
        self.laps += 1
        self.candles.extend(lap)
        drop = len(self.candles) - 2 * len(source)
        if drop > 0 and self.position - drop >= len(source):
            del self.candles[:drop]
            self.position -= drop

    @property
    def paused(self) -> bool:
        return self.started and not self._running.is_set()

    # -- control -----------------------------------------------------------------------------
    def start(self, *, forced: bool = True) -> None:
        self.started = True
        self.forced = self.forced or forced
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resend_close(self, stream: str) -> None:
        """Lockstep (`gate`): a client that (re)subscribes while the replay waits for it gets the
        last close again. A close lost in a dropped connection would otherwise hold the replay
        forever (the client only notices a missing close when the next one arrives); clients
        ignore a close they already have. Registered as a hub `on_subscribe` hook by the demo."""
        if stream == self.stream and self.gate is not None and self.closes_sent and self.position:
            self._send(self.candles[self.position - 1], closed=True)

    def on_subscribe(self, stream: str) -> None:
        if stream.startswith(f"{self.symbol.lower()}@kline_") and not self.started:
            self.start(forced=False)

    def holding(self) -> str | None:
        """Why the replay is not advancing right now, or None.

        Besides an explicit pause, a replay started by a subscriber holds while nobody is
        subscribed to its stream (a bot reconnecting after a drop misses no close and finds the
        book still on the last close), and every replay holds during a stall fault (the frames
        it would send could only pile up)."""
        if self.gate is not None and self.closes_sent and not self.gate():
            return "waiting"  # lockstep: the client has not finished with the last close yet
        if not self._running.is_set():
            return "paused"
        if self._stalled_until() > time.monotonic():
            return "stalled"
        if not self.forced and not self._watched():
            return "unwatched"
        return None

    def _derived_streams(self) -> list[tuple[str, str, int]]:
        """(interval, stream suffix, time-zone offset) of every kline stream but the replayed one:
        each interval in UTC, and in UTC+8 (`@+08:00`, the one zone Binance's streams offer)."""
        utc = [(i, "", 0) for i in INTERVAL_MS if i != self.interval]
        return utc + [(i, "@+08:00", 8 * 3_600_000) for i in INTERVAL_MS]

    def _watched(self) -> bool:
        """Anyone on a kline stream of this symbol (the replayed interval or a derived one)."""
        prefix = self.symbol.lower()
        if self.hub.has_subscribers(self.stream):
            return True
        return any(self.hub.has_subscribers(f"{prefix}@kline_{i}{s}") for i, s, _ in self._derived_streams())

    async def _wait_until_free(self) -> bool:
        """Wait while `holding()`; True if it had to wait (the pacing schedule restarts)."""
        waited = False
        while (reason := self.holding()) is not None:
            waited = True
            if reason == "paused":
                await self._running.wait()
            else:
                await asyncio.sleep(0.001 if reason == "waiting" else 0.01)
        return waited

    # -- clock -------------------------------------------------------------------------------
    def _event_time(self, index: int, step: int) -> int:
        """Time of step `step` (1..n progress frames, n+1 = close) of candle `index`."""
        c = self.candles[index]
        if step > self.progress_frames:
            return c.close_time
        return c.open_time + (c.close_time + 1 - c.open_time) * step // (self.progress_frames + 1)

    def _set_clock_for(self, index: int, step: int) -> None:
        if index >= len(self.candles):
            self._clock_base = self.candles[-1].close_time + 1 if self.candles else int(time.time() * 1000)
            self._clock_cap = None
        else:
            self._clock_base = self._event_time(index, step)
            nxt = (index, step + 1) if step <= self.progress_frames else (index + 1, 1)
            self._clock_cap = self._event_time(*nxt) - 1 if nxt[0] < len(self.candles) else None
        self._clock_set = time.monotonic()

    def now_ms(self) -> int:
        """The `Clock` protocol: the injected exchange clock if any, else the replay's own."""
        return self._event_clock() if self._event_clock is not None else self.clock_ms()

    def clock_ms(self) -> int:
        t = self._clock_base + int((time.monotonic() - self._clock_set) * 1000)
        if self._clock_cap is not None:
            t = min(t, max(self._clock_cap, self._clock_base))
        self._clock_last = max(self._clock_last, t)
        return self._clock_last

    # -- REST view ---------------------------------------------------------------------------
    def rows(self) -> list[Candle]:
        """Closed candles up to the replay position, then the open candle as it stands now."""
        closed = list(self.candles[: self.position])
        return [*closed, self.current] if self.current is not None else closed

    # -- the replay loop ---------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        step_s = 1.0 / self.speed / (self.progress_frames + 1)
        next_at = loop.time()
        while True:
            if self.done:
                if not self.loop or not self.candles:
                    break
                self._append_lap()
                self.current = partial(self.candles[self.position], 0.0, self.tick)
            i = self.position
            c = self.candles[i]
            for step in range(1, self.progress_frames + 2):
                if await self._wait_until_free():
                    next_at = loop.time()
                next_at += step_s
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                if await self._wait_until_free():
                    next_at = loop.time()
                self._set_clock_for(i, step)
                if step <= self.progress_frames:
                    self.current = partial(c, step / (self.progress_frames + 1), self.tick)
                    self._recentre(self.current.close)
                    self._send(self.current, closed=False)
                else:
                    self._recentre(c.close)
                    self.current = None
                    self.position = i + 1  # REST shows the candle closed from the moment its close is sent
                    self._send(c, closed=True)
                    self.closes_sent += 1
                    if not self.done:
                        self.current = partial(self.candles[self.position], 0.0, self.tick)
        self._set_clock_for(len(self.candles), 0)

    def _recentre(self, price: Decimal) -> None:
        if self.market is not None and self.generator is not None:
            bids, asks = self.generator.recentre(self.market.book, price)
            self.market.apply(bids, asks)

    def close_key(self, open_time: int) -> str:
        """`Hub.sent_at`'s key for the closing frame of the replayed candle opened at `open_time`."""
        return f"{self.stream}:{open_time}"

    def _send(self, candle: Candle, *, closed: bool) -> None:
        now = self.now_ms()
        self.hub.publish(
            self.stream,
            ws_payload(self.symbol, self.interval, candle, closed=closed, event_time=now),
            stamp=self.close_key(candle.open_time) if closed and self.stamp_closes else None,
        )
        self.frames_sent += 1
        for interval, suffix, offset in self._derived_streams():
            stream = f"{self.symbol.lower()}@kline_{interval}{suffix}"
            if not self.hub.has_subscribers(stream) or not derivable(self.interval, interval, offset):
                continue
            start = bucket_start(candle.open_time, interval, offset)
            end = bucket_end(start, interval, offset)
            group = [candle]
            i = self.position - (2 if closed else 1)  # the closed candle before `candle`
            while i >= 0 and self.candles[i].open_time >= start:
                group.insert(0, self.candles[i])
                i -= 1
            merged = merge_group(group, start, end)
            done = closed and candle.close_time >= end
            self.hub.publish(stream, ws_payload(self.symbol, interval, merged, closed=done, event_time=now))

    def state(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "interval_ms": INTERVAL_MS[self.interval],
            "stream": self.stream,
            "candles": len(self.candles),
            "position": self.position,
            "open_candle_time": self.current.open_time if self.current else None,
            "last_closed_time": self.candles[self.position - 1].open_time if self.position else None,
            "started": self.started,
            "paused": self.paused,
            "holding": self.holding() if self.started and not self.done else None,
            "replay_done": self.done,
            "loop": self.loop,
            "laps": self.laps,
            "frames_sent": self.frames_sent,
            "closes_sent": self.closes_sent,
            "speed": self.speed,
        }
