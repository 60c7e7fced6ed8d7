"""One backtest: the live engine, order manager, position and store code over a candle history,
driven by a simulated clock and an in-process exchange.

Nothing here decides anything a live bot decides. The driver only does what the exchange and the
wall clock do for a live bot: for each candle it sets the clock to the candle's close, lets the
in-process exchange close the candle (the book moves onto the close, REST history grows), hands the
closing kline to `BotEngine.handle` — the same call the websocket feed makes — and then waits until
everything that candle caused is finished: a history fetch, the signal worker (log, store), the order
manager (store PENDING, send, apply the answer) and the order reports. Only then does time move on,
so the result is the same on an idle or a saturated machine, and equal to the demo's.

What it refuses: skipping the store (a backtest leaves the same SQLite tables a bot writes, so
`tradefleet report` and SQL work on it) or a strategy of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradefleet.adapters.inprocess import InProcessExchange
from tradefleet.config import BotConfig
from tradefleet.coord.lease import LocalLease
from tradefleet.domain.clock import SimulatedClock
from tradefleet.domain.models import Candle, Order, Position, Signal
from tradefleet.domain.performance import Fill, Performance, evaluate
from tradefleet.engine.order_manager import OrderManager
from tradefleet.engine.pipeline import BotEngine
from tradefleet.metrics import BotMetrics
from tradefleet.store import BufferedStore, open_store

MEMORY = "sqlite://:memory:"
"""Where sweeps keep their records (one run: a SQLite file, so the report and SQL work on it)."""


@dataclass(frozen=True)
class BacktestSpec:
    klines: Path
    symbol: str
    short_window: int = 50
    long_window: int = 200
    quote_amount: Decimal = Decimal("1000")
    interval: str | None = None  # relabel the CSV's candles (as `demo --interval` does)
    start: int = 0  # first candle index of the CSV used (walk-forward windows)
    end: int | None = None  # one past the last candle index used
    seed: int = 7


@dataclass(frozen=True)
class BacktestResult:
    spec: BacktestSpec
    config: BotConfig
    candles: list[Candle]  # every candle replayed, history included
    history: int  # leading candles served as warm-up history (never traded on)
    signals: list[Signal]
    orders: list[Order]
    performance: Performance
    position: Position  # the bot's own books (realized P&L as the live bot and the demo report it)


class _NoBook:
    """The backtest feeds no depth stream: the engine's own book stays empty and out of the way
    (fills happen on the exchange's book, as with a real exchange)."""

    in_sync = False
    last_update_id = 0

    def handle(self, event: object) -> bool:
        return False

    def top(self) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        return None


@dataclass
class _Bot:
    """One backtested bot: its own exchange (book, account), engine, order manager and lease."""

    spec: BacktestSpec
    config: BotConfig
    exchange: InProcessExchange
    engine: BotEngine
    orders: OrderManager
    end: int
    tasks: list[asyncio.Task[Any]]

    async def settle(self) -> None:
        await self.engine.settle()
        await self.orders.settle()
        await self.exchange.drain()
        for t in self.tasks:
            if t.done():
                t.result()  # a crash in the engine's workers must not pass as "no trades"


async def run_backtest(spec: BacktestSpec, *, store_url: str = MEMORY) -> BacktestResult:
    """One bot over `spec`'s candles; see the module docstring."""
    return (await run_fleet([spec], store_url=store_url))[0]


async def run_fleet(specs: Sequence[BacktestSpec], *, store_url: str = MEMORY) -> list[BacktestResult]:
    """Several bots over the same candle file at once, as a fleet runs: one simulated clock, one
    store (each bot's records under its own name), and per bot its own exchange, so no bot's orders
    move another's fills. Each bot warms up on its own `long` candles before `start` and joins the
    replay there. A fleet of one is `run_backtest`; a sweep runs fleets so the clock, the candle
    events and the store's candle writes are shared instead of repeated per pair."""
    if not specs:
        return []
    first = specs[0]

    def data(s: BacktestSpec) -> tuple[object, ...]:
        return (s.klines, s.symbol, s.interval, s.seed)

    if any(data(s) != data(first) for s in specs):
        raise ValueError("a fleet replays one candle file: klines, symbol, interval and seed must match")
    clock = SimulatedClock()
    metrics = BotMetrics()
    names: set[str] = set()
    bots: list[_Bot] = []
    store: BufferedStore | None = None
    try:
        for spec in specs:
            exchange = InProcessExchange(
                spec.klines,
                symbol=spec.symbol,
                history=spec.start + spec.long_window,
                clock=clock.now_ms,
                interval=spec.interval,
                seed=spec.seed,
            )
            end = len(exchange.candles) if spec.end is None else min(spec.end, len(exchange.candles))
            if end - exchange.history < 1:
                raise ValueError(
                    f"{spec.klines}: {end - spec.start} candles leave nothing after the "
                    f"{spec.long_window}-candle warm-up"
                )
            name = f"backtest-{exchange.market_id.lower()}"
            if len(specs) > 1:
                name += f"-{spec.short_window}-{spec.long_window}-{spec.start}"
            if name in names:
                raise ValueError(f"the same backtest twice in one fleet: {name}")
            names.add(name)
            config = BotConfig(
                name=name,
                symbol=spec.symbol,
                interval=exchange.interval,
                short_window=spec.short_window,
                long_window=spec.long_window,
                quote_amount=spec.quote_amount,
                mode="paper",
                store_url=store_url,
                warmup_extra=0,  # history is exactly the long window, as the demo serves it
            )
            if store is None:
                store = BufferedStore.from_config(
                    open_store(store_url), config, metrics, timed=False, candle_batch=True
                )
                await store.store.open()
                store.start()
            # Nobody scrapes a backtest: a fleet's bots count into one registry (a registry per bot
            # cost more than a short bot's run), and a fleet of one uses the store's.
            bot_metrics = metrics
            lease = LocalLease("backtest", metrics=bot_metrics, clock=clock.now_ms)
            engine = BotEngine(
                config,
                bot_metrics,
                book=_NoBook(),
                rest=exchange,
                sink=store,
                clock=clock.now_ms,
                timed=False,  # wall-clock latencies of a replay say nothing about live trading
            )
            orders = OrderManager(
                config=config,
                store=store,
                execution=exchange,
                lease=lease,
                rules=await exchange.fetch_symbol_rules(spec.symbol),
                metrics=bot_metrics,
                clock=clock.now_ms,
                timed=False,
            )
            engine.orders = orders
            bots.append(_Bot(spec, config, exchange, engine, orders, end, []))
        assert store is not None
        start = min(b.exchange.history for b in bots)
        clock.set(bots[0].exchange.candles[start].open_time)
        for b in bots:
            await b.orders.lease.start()
            b.tasks += [asyncio.create_task(b.engine.run_signals()), asyncio.create_task(b.orders.run())]
        candles = bots[0].exchange.candles
        # Per bot, what the loop below calls for every candle, looked up once.
        replay = [
            (
                b,
                b.exchange.history,
                b.end,
                b.exchange.close_candle,
                b.engine.handle,
                b.engine.has_pending_work,
            )
            for b in bots
        ]
        for i in range(start, max(b.end for b in bots)):
            clock.set(candles[i].close_time)
            busy = []
            for b, lo, hi, close_candle, handle, has_pending_work in replay:
                if lo <= i < hi:
                    handle(close_candle(i))
                    if has_pending_work():
                        busy.append(b)
            # Everything this close caused finishes before time moves on. A bot with nothing pending
            # after the close has nothing in flight at all (its earlier closes were settled, and only
            # its engine hands its order manager work), so only the busy ones are waited for.
            for b in busy:
                await b.settle()
        for b in bots:
            await b.settle()
    finally:
        for b in bots:
            for t in b.tasks:
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*b.tasks, return_exceptions=True)
            await b.engine.close()
    try:
        await store.flush()
        return [await _result(b, store) for b in bots]
    finally:
        await store.close()
        await store.store.close()


async def _result(bot: _Bot, store: BufferedStore) -> BacktestResult:
    spec, config, exchange = bot.spec, bot.config, bot.exchange
    signals = await store.signals(config.name)
    stored_orders = await store.orders(config.name)
    position = await store.load_position(config.name, config.symbol) or Position(config.name, config.symbol)
    every, times, closes = _candles(exchange.candles, spec.symbol, exchange.interval)
    candles = list(every[spec.start : bot.end])
    history = exchange.history - spec.start
    perf = evaluate(
        times[exchange.history : bot.end],
        closes[exchange.history : bot.end],
        [_fill(o) for o in stored_orders if o.filled_qty > 0],
        capital=spec.quote_amount,
        interval_ms=config.interval_ms,
        fee_rate=config.fee_rate,
    )
    return BacktestResult(spec, config, candles, history, signals, stored_orders, perf, position)


_CANDLES: dict[tuple[int, str, str], tuple[object, tuple[Candle, ...], list[int], list[Decimal]]] = {}


def _candles(
    series: tuple[Any, ...], symbol: str, interval: str
) -> tuple[tuple[Candle, ...], list[int], list[Decimal]]:
    """The replayed candles as the bot's `Candle`s, close times and closes, once per series and
    process (a sweep evaluates hundreds of bots on the same cached series). Keyed by the series'
    identity (hashing 3,000 candles would cost more than building them); the entry keeps the series
    alive so the identity cannot be reused."""
    key = (id(series), symbol, interval)
    hit = _CANDLES.get(key)
    if hit is None or hit[0] is not series:
        candles = tuple(
            Candle(symbol, interval, c.open_time, c.close_time, c.open, c.high, c.low, c.close, c.volume)
            for c in series
        )
        hit = (series, candles, [c.close_time for c in candles], [c.close for c in candles])
        if len(_CANDLES) >= 8:
            _CANDLES.clear()
        _CANDLES[key] = hit
    return hit[1], hit[2], hit[3]


def _fill(o: Order) -> Fill:
    base_asset = o.symbol.split("/")[0]
    return Fill(o.created_at, o.side, o.filled_qty, o.cum_quote, o.fee, o.fee_asset == base_asset)


def quiet_logs() -> None:
    """A backtest's own JSON lines would be one per signal and order per run: keep warnings only."""
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("tradefleet", "tradefleet.engine", "tradefleet.strategy", "tradefleet.store"):
        logging.getLogger(name).setLevel(logging.WARNING)


def backtest(spec: BacktestSpec, *, store_url: str = MEMORY) -> BacktestResult:
    """Synchronous entry: one event loop per run."""
    return backtest_fleet([spec], store_url=store_url)[0]


def backtest_fleet(specs: Sequence[BacktestSpec], *, store_url: str = MEMORY) -> list[BacktestResult]:
    """Synchronous entry for a fleet (what each sweep worker calls)."""
    out: list[BacktestResult] = []

    async def main() -> None:
        # The results leave through `out`, not as the task's result: on exit, asyncio.run (3.11)
        # restores its SIGINT handler and the enum lookup formats the main task's repr, result
        # included -- every candle of every result, 20 ms a bot.
        out.extend(await run_fleet(specs, store_url=store_url))

    asyncio.run(main())
    return out


def result_json(result: BacktestResult, *, equity: bool = True) -> dict[str, Any]:
    from tradefleet.logs import iso_ms

    p = result.performance
    out: dict[str, Any] = {
        "event": "backtest",
        "bot": result.config.name,
        "symbol": result.config.symbol,
        "interval": result.config.interval,
        "short": result.spec.short_window,
        "long": result.spec.long_window,
        "quote_amount": format(result.spec.quote_amount, "f"),
        "from": iso_ms(p.start_time),
        "to": iso_ms(p.end_time),
        "signals": len(result.signals),
        **p.summary(),
        # The bot's own books, the figure the live bot and the demo report (to the last digit).
        "realized_pnl_quote": format(result.position.realized_pnl_quote, "f"),
        "position_qty": format(result.position.qty, "f"),
        "trades": [
            {
                "entry_time": iso_ms(t.entry_time),
                "entry_price": format(t.entry_price, "f"),
                "exit_time": None if t.exit_time is None else iso_ms(t.exit_time),
                "exit_price": None if t.exit_price is None else format(t.exit_price, "f"),
                "qty": format(t.qty, "f"),
                "pnl_quote": format(t.pnl_quote, "f"),
                "return_pct": round(100 * t.return_pct, 4),
            }
            for t in p.round_trips
        ],
    }
    if equity:
        live = result.candles[result.history :]
        out["equity_curve"] = [
            [iso_ms(c.close_time), round(e, 8), round(d, 8)]
            for c, e, d in zip(live, p.equity, p.drawdown, strict=True)
        ]
    return out
