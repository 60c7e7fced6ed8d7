"""`SimExchange`: the whole simulated exchange state behind one server.

Public surface (the orders module `trading.py` and tests rely on it):

- `exchange.markets: dict[str, SimMarket]` keyed by market id (`BTCUSDT`); see `market.py` for
  `best_bid/best_ask/levels/take_liquidity`.
- `exchange.rules(symbol) -> SymbolRules` (tick_size, step_size, min_qty, min_notional, ...;
  `.exchange_info()` is the wire form). Raises `KeyError` for an unknown symbol.
- `exchange.clock` / `exchange.now_ms()`: the ONE clock (`clock.py`) behind every time the
  exchange shows or checks: REST time, serverTime, stream `E`/`T`, `transactTime`, fills,
  executionReports, the `-1021` check. Injected by the caller (`SimExchange(options, clock=...)`),
  or, by default, the kline replay's clock (follows the replayed candles so signals, fills and
  candles agree) and otherwise wall-clock time. `exchange.wall_ms()` is real time, shown in
  `/sim/state` only; `accepts_wall_timestamps()` says whether signed requests stamped by a wall
  clock are also accepted (only while an accelerated replay drives the clock: see `options.py`).
- `exchange.publish(stream, payload)`: broadcast a raw payload to subscribers of `stream`
  (combined-stream clients get it wrapped). `exchange.hub.on_subscribe` takes hooks.
- `exchange.faults`: the `FaultController`; `exchange.klines`: the `KlineReplay` or None;
  `exchange.capture`: the `CaptureReplay` or None.
- `start_replay()` / `pause_replay()`, `state()` (what `/sim/state` returns).
- `extensions: dict[str, Any]`: a place for other modules (trading) to hang their state;
  anything there with a `describe()` method appears under `extensions` in `/sim/state`.
- `failure`: None, or which producer crashed and why (all websockets are then closed with 1011).

Lifecycle: `await exchange.start()` launches the background producers (generated diffs,
replays, periodic faults); `await exchange.stop()` cancels them. It refuses to run without a
market, and never produces data for a symbol it does not list.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import traceback
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any

from tradefleet_sim.capture import CaptureReplay, load_capture
from tradefleet_sim.clock import Clock, WallClock, timestamp_problem
from tradefleet_sim.faults import FaultController
from tradefleet_sim.generator import BookGenerator, GeneratorShape
from tradefleet_sim.hub import Hub
from tradefleet_sim.kline_replay import KlineReplay
from tradefleet_sim.klines import DEFAULT_KLINES, load_csv, ws_payload
from tradefleet_sim.market import SimMarket
from tradefleet_sim.options import SimOptions
from tradefleet_sim.ratelimit import MessageRate, RateLimits
from tradefleet_sim.rules import START_PRICES, SymbolRules, generated_rules, recorded_rules
from tradefleet_sim.tickers import run_tickers


class SimExchange:
    def __init__(self, options: SimOptions | None = None, *, clock: Clock | None = None) -> None:
        self.options = options = options or SimOptions()
        self.rng = random.Random(options.seed)
        self.started_at = time.monotonic()
        self.markets: dict[str, SimMarket] = {}
        self.generators: dict[str, BookGenerator] = {}
        self.extensions: dict[str, Any] = {}
        # REST user data streams (`POST /api/v3/userDataStream`): listenKey -> API key. A listenKey
        # is also a hub stream name, so `/ws/<listenKey>` and `/stream?streams=<listenKey>` work.
        self.listen_keys: dict[str, str] = {}
        self.faults: FaultController
        self.hub = Hub(queue_size=options.send_queue, stalled_until=lambda: self.faults.stalled_until)
        self.faults = FaultController(self.hub, self.markets, self.now_ms, self.rng)
        self.klines: KlineReplay | None = None
        self.capture: CaptureReplay | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.failure: str | None = None  # set when a producer task crashed
        self._close_task: asyncio.Task[int] | None = None

        series = load_csv(options.klines, interval=options.kline_interval) if options.klines else None
        shape = GeneratorShape(
            levels_per_side=options.levels_per_side, changes_per_side=options.changes_per_side
        )
        for sym in options.symbols:
            rules = generated_rules(sym)
            market = SimMarket(sym, rules, self.hub, self.now_ms, source="generated")
            gen = BookGenerator(rules.tick_size, rules.step_size, random.Random(self.rng.random()), shape)
            self.markets[sym] = market
            self.generators[sym] = gen
        if series is not None and series.symbol not in self.markets:
            # The default history is BTCUSDT's; a capture-only simulator simply has no klines.
            # A candle file given on purpose for a symbol we do not simulate is a mistake.
            if options.klines != DEFAULT_KLINES:
                wanted = ", ".join(options.symbols)
                raise ValueError(f"{options.klines} holds {series.symbol} candles, not one of: {wanted}")
            series = None
        if series is not None:
            self.klines = KlineReplay(
                series,
                history=options.history,
                speed=options.speed,
                progress_frames=options.progress_frames,
                hub=self.hub,
                market=self.markets.get(series.symbol),
                generator=self.generators.get(series.symbol),
                stalled_until=lambda: self.faults.stalled_until,
                loop=options.loop,
                clock=None if clock is None else clock.now_ms,
            )
            self.klines.stamp_closes = options.record_arrivals
            self.hub.on_subscribe.append(self.klines.on_subscribe)
            self.faults.open_kline = self._open_kline_payload
        self.clock: Clock = clock or (self.klines if self.klines is not None else WallClock())
        # Limits count real-rate time: the exchange clock, unless it is the accelerated replay's.
        self.limit_clock: Clock = WallClock() if self.clock is self.klines else self.clock
        self.limits = RateLimits(
            self.limit_clock, weight_limit=options.weight_limit, enforce=options.enforce_limits
        )
        for sym, gen in self.generators.items():
            start = START_PRICES.get(sym, Decimal("100.00"))
            if self.klines is not None and self.klines.symbol == sym and self.klines.current is not None:
                start = self.klines.current.open
            bids, asks = gen.seed(start)
            self.markets[sym].seed(bids, asks, update_id=1_000_000)
        if options.replay_capture:
            cap = load_capture(options.replay_capture)
            for sym in cap.symbols:
                if sym in self.markets:
                    raise ValueError(f"{sym} is both generated and in capture {cap.name}")
                self.markets[sym] = SimMarket(
                    sym, recorded_rules(cap.exchange_info, sym), self.hub, self.now_ms, source="capture"
                )
            self.capture = CaptureReplay(cap, self.markets, speed=options.capture_speed)
            self.capture.seed()
            self.hub.on_subscribe.append(self.capture.on_subscribe)
        for req in options.startup_faults:  # a bad fault must fail here, before any port is bound
            self.faults.validate(req)

    # -- public helpers ----------------------------------------------------------------------
    def _open_kline_payload(self) -> dict[str, Any] | None:
        k = self.klines
        if k is None or k.current is None:
            return None
        return ws_payload(k.symbol, k.interval, k.current, closed=False, event_time=k.clock_ms())

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def accepts_wall_timestamps(self) -> bool:
        if self.options.wall_timestamps is not None:
            return self.options.wall_timestamps
        return self.clock is self.klines

    def timestamp_problem(self, ts: int, window: int) -> str | None:
        """The `-1021` check of a signed request against the one clock (and the wall clock while
        `accepts_wall_timestamps()`); Binance's message, or None if accepted."""
        clocks = [self.now_ms()]
        if self.accepts_wall_timestamps():
            clocks.append(self.wall_ms())
        return timestamp_problem(ts, window, clocks)

    @staticmethod
    def wall_ms() -> int:
        return int(time.time() * 1000)

    def rules(self, symbol: str) -> SymbolRules:
        return self.markets[symbol].rules

    def publish(self, stream: str, payload: Any) -> int:
        return self.hub.publish(stream, payload)

    def start_replay(self) -> None:
        if self.klines is not None:
            self.klines.start()
        if self.capture is not None:
            self.capture.start()

    def pause_replay(self) -> None:
        if self.klines is not None:
            self.klines.pause()
        if self.capture is not None:
            self.capture.pause()

    def ws_message_limiter(self) -> MessageRate:
        """A new connection's incoming-message budget (5 a second, like Binance)."""
        return MessageRate(self.limit_clock, per_second=5, enforce=self.options.enforce_limits)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for sym, gen in self.generators.items():
            self._spawn(self._generate(self.markets[sym], gen), f"sim-gen-{sym}")
        self._spawn(run_tickers(self.markets, self.now_ms), "sim-tickers")
        if self.klines is not None:
            self._spawn(self.klines.run(), "sim-klines")
        if self.capture is not None:
            self._spawn(self.capture.run(), "sim-capture")
        if self.options.autostart:
            self.start_replay()
        for req in self.options.startup_faults:
            self.faults.apply(req)
        if self.options.fault_every:
            self._spawn(self.faults.run_every(self.options.fault_every), "sim-fault-every")

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(self._producer_done)
        self._tasks.append(task)

    def _producer_done(self, task: asyncio.Task[Any]) -> None:
        """A producer that dies silently would look like a quiet market to every client. Print
        the error, show it in /sim/state and close every websocket with 1011 (server error)."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        self.failure = f"{task.get_name()}: {exc!r}"
        traceback.print_exception(exc)
        self._close_task = asyncio.get_running_loop().create_task(
            self.hub.close_all(1011, b"simulator error")
        )

    async def _generate(self, market: SimMarket, gen: BookGenerator) -> None:
        """The random-walk producer: `depth_rate` diffs per second, or as fast as the slowest
        subscriber drains its queue when the rate is 0 (benchmarks)."""
        loop = asyncio.get_running_loop()
        rate = self.options.depth_rate
        period = 1.0 / rate if rate > 0 else 0.0
        next_at = loop.time()
        trade_rng = random.Random(self.rng.random())
        prefix = market.stream_prefix
        while True:
            if period:
                next_at += period
                delay = next_at - loop.time()
                if delay < -1.0:  # fell far behind (a paused machine): do not burst to catch up
                    next_at = loop.time()
                await asyncio.sleep(max(0.0, delay))
            else:
                # Max-rate mode: yield to the writers and keep every backlog bounded.
                # Polling queue sizes is the point here; there is no event for "drained enough".
                while self.hub.backlog() > 2000 or not any(  # noqa: ASYNC110
                    self.hub.has_subscribers(f"{prefix}@{s}")
                    for s in ("depth", "depth@100ms", "depth@1000ms", "bookTicker")
                ):
                    await asyncio.sleep(0.002)
                await asyncio.sleep(0)
            if self.klines is not None and self.klines.holding() == "waiting":
                continue  # lockstep: the book stays on the close until the client is done with it
            bids, asks = gen.next_diff(market.book)
            market.apply(bids, asks)
            if trade_rng.random() < self.options.trade_probability:
                side_bid = trade_rng.random() < 0.5
                top = market.best_bid() if side_bid else market.best_ask()
                if top is not None:
                    qty = min(top[1], gen.qty(400.0))
                    market.flow_trade(top[0], qty, buyer_is_maker=side_bid)

    # -- introspection -----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        markets = {}
        for sym, m in self.markets.items():
            bb, ba = m.best_bid(), m.best_ask()
            markets[sym] = {
                "source": m.source,
                "update_id": m.update_id,
                "best_bid": str(bb[0]) if bb else None,
                "best_ask": str(ba[0]) if ba else None,
                "bid_levels": len(m.book.bids),
                "ask_levels": len(m.book.asks),
                "diffs_sent": m.diffs_sent,
                "diffs_withheld": m.diffs_withheld,
                "trade_id": m.trade_id,
            }
        klines = self.klines.state() if self.klines else None
        capture = self.capture.state() if self.capture else None
        done = (
            all(r["replay_done"] for r in (klines, capture) if r is not None) if (klines or capture) else True
        )
        return {
            "failure": self.failure,
            "now_ms": self.now_ms(),
            "wall_ms": self.wall_ms(),
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "symbols": list(self.markets),
            "markets": markets,
            "klines": klines,
            "capture": capture,
            "replay_done": done,
            "faults": self.faults.state(),
            "clients": self.hub.describe(),
            "connected_clients": len(self.hub.clients),
            "frames_published": self.hub.published,
            "slow_disconnects": self.hub.slow_disconnects,
            "rest_weight_1m": self.limits.total_weight(),
            "limits": self.limits.describe(),
            # Other modules (trading) hang their state here; anything with describe() is shown.
            "extensions": {
                name: ext.describe()
                for name, ext in self.extensions.items()
                if callable(getattr(ext, "describe", None))
            },
        }
