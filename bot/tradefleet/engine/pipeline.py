"""The bot's core loop: every market event passes through `BotEngine.handle`, synchronously.

The feed calls `handle` for each parsed frame and background fetches post their results to it, all on
one event loop: no awaits inside, so an event is fully applied (book, price sample, candle, SMA,
crossover) before the next one is looked at, and ordering needs no locks. The only queue is the
websocket's own bounded receive buffer; the engine never holds a backlog of its own.

What must be durable leaves through awaited paths in order: a signal the order manager can act on at
once is handed to it as it is decided (the manager stores it in one write with its action and order);
any other goes through one worker task that stores it first, then hands it over. The worker logs and
publishes every signal, in order. Price samples
and candles go to the buffered store without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from tradefleet.awake import keep_awake
from tradefleet.config import BotConfig
from tradefleet.domain.market import BookTicker, KlineEvent, StreamStatus, Trade
from tradefleet.domain.models import SIGNAL_PENDING, Candle, PriceSample, Signal
from tradefleet.domain.sma_cross import SmaUpdate
from tradefleet.engine.strategy import HistoryReady, StrategyRunner
from tradefleet.logs import iso_ms, log_event, now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.ports import EventPublisher, MarketRest
from tradefleet.tasks import stop_tasks

log = logging.getLogger("tradefleet.engine")

PUBLISH_AFTER_ORDER_S = 0.05
"""How long logging and publishing a signal handed to the order manager wait for its order to be done."""
ORDER_WRITE_WAIT_S = 0.5
"""How long market-data writes may wait for the order a signal is about to place (its commit ends the
wait; a signal that places no order lets them go after this)."""


class BookLike(Protocol):
    @property
    def in_sync(self) -> bool: ...

    def handle(self, event: object) -> bool: ...

    def top(self) -> tuple[Decimal, Decimal, Decimal, Decimal] | None: ...

    @property
    def last_update_id(self) -> int: ...


class SinkLike(Protocol):
    """What the engine needs from the buffered store."""

    def enqueue_price(self, sample: PriceSample) -> None: ...

    def enqueue_candle(self, candle: Candle) -> None: ...

    async def record_signal(self, signal: Signal) -> Any: ...

    def defer_market_data(self, seconds: float) -> None: ...


class SignalTaker(Protocol):
    def ready_to_act(self) -> bool: ...

    def rehearse(self, signal: Signal) -> str: ...

    def submit_signal(self, signal: Signal) -> None: ...

    def act_now(self, signal: Signal) -> None: ...

    async def settle(self) -> None: ...


@dataclass
class EngineState:
    """What /status and /readyz report about the market side."""

    connected: bool = False
    last_event_ms: int = 0
    last_exchange_ts: int = 0
    last_trade_price: str | None = None
    signals: int = 0
    last_signal: Signal | None = None


def signal_fields(s: Signal) -> dict[str, Any]:
    return {
        "bot": s.bot,
        "exchange": s.exchange,
        "symbol": s.symbol,
        "interval": s.interval,
        "side": s.side.value,
        "candle_open_time": iso_ms(s.candle_open_time),
        "candle_close_time": iso_ms(s.candle_close_time),
        "close": str(s.close),
        "sma_short": str(s.sma_short),
        "sma_long": str(s.sma_long),
        "signal_id": s.signal_id,
    }


class BotEngine:
    def __init__(
        self,
        config: BotConfig,
        metrics: BotMetrics,
        *,
        book: BookLike,
        rest: MarketRest,
        sink: SinkLike,
        publisher: EventPublisher | None = None,
        spawn: Callable[[Coroutine[Any, Any, None]], object] | None = None,
        clock: Callable[[], int] = now_ms,
        on_candle: Callable[[Candle, SmaUpdate], None] | None = None,
        timed: bool = True,  # False on a simulated clock: no wall-clock latency per candle
        order_wait_s: float = PUBLISH_AFTER_ORDER_S,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.book = book
        self.sink = sink
        self.publisher = publisher
        self.clock = clock
        self.order_wait_s = order_wait_s
        """How long logging and publishing a signal handed to the order manager wait for its order."""
        self.state = EngineState()
        self.orders: SignalTaker | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._spawn = spawn or self._spawn_task
        self._signals: asyncio.Queue[tuple[Signal, bool]] = asyncio.Queue()  # (signal, handed over)
        self._unfinished_signals = 0  # queued or being recorded, not yet handed to the order manager
        self._last_sample_ms = 0
        self._pending_ticker: BookTicker | None = None
        self._ticker_checks = {
            True: metrics.ticker_checks.labels("match"),
            False: metrics.ticker_checks.labels("mismatch"),
        }
        self._on_candle_hook = on_candle
        self.strategy = StrategyRunner(
            config,
            rest,
            metrics,
            post=self.handle,
            spawn=self._spawn,
            on_signal=self._queue_signal,
            on_candle=self._on_candle,
            on_close_near=self._close_near,
            clock=clock,
            timed=timed,
        )
        self._dispatch: dict[type, Callable[[Any], None]] = {
            KlineEvent: self.strategy.handle_kline,
            HistoryReady: self.strategy.handle_history,
            StreamStatus: self._on_status,
            Trade: self._on_trade,
            BookTicker: self._on_book_ticker,
        }

    # -- the core --------------------------------------------------------------------------------

    def handle(self, event: object) -> None:
        """Apply one event. Never awaits, never raises for bad data (a bug is logged, not fatal)."""
        self.state.last_event_ms = self.clock()
        handler = self._dispatch.get(type(event))
        try:
            if handler is not None:
                handler(event)
            else:
                if self.book.handle(event):
                    self._record_top()
                if self._pending_ticker is not None:
                    self._check_pending_ticker()
        except Exception:
            log.exception(
                "event handling failed", extra={"event": "engine_error", "kind": type(event).__name__}
            )

    def _record_top(self) -> None:
        now = self.clock()
        if self.config.price_sample_ms and now - self._last_sample_ms < self.config.price_sample_ms:
            return  # (checked first: the native book builds the top's Decimals only when read)
        top = self.book.top()
        if top is None:
            return
        self._last_sample_ms = now
        bid, bid_qty, ask, ask_qty = top
        c = self.config
        self.sink.enqueue_price(
            PriceSample(
                bot=c.name,
                exchange=c.exchange,
                symbol=c.symbol,
                exchange_ts=self.state.last_exchange_ts or now,
                local_ts=now,
                update_id=self.book.last_update_id,
                bid=bid,
                bid_qty=bid_qty,
                ask=ask,
                ask_qty=ask_qty,
            )
        )

    def _on_status(self, status: StreamStatus) -> None:
        if status.kind == "connected":
            self.state.connected = True
        elif status.kind in ("disconnected", "stale", "server_shutdown"):
            self.state.connected = False
        if self.book.handle(status):
            self._record_top()

    def _on_trade(self, trade: Trade) -> None:
        self.state.last_trade_price = trade.price
        self.state.last_exchange_ts = trade.event_time

    def _on_book_ticker(self, ticker: BookTicker) -> None:
        """A live cross-check: the diff stream builds the book, and when the book reaches the update id
        a bookTicker frame carries, the exchange's best bid/ask must equal ours. Tickers are real-time
        while depth comes in 100 ms batches, so a ticker usually arrives before the diff that contains
        its update: the newest one waits (one slot) until the book gets there. A mismatch is counted
        and logged, never acted on: the sequence checks already resync a broken book."""
        if not self.book.in_sync:
            self._pending_ticker = None
            return
        last = self.book.last_update_id
        if ticker.update_id == last:
            self._check_ticker(ticker)
        elif ticker.update_id > last:
            self._pending_ticker = ticker

    def _check_pending_ticker(self) -> None:
        ticker = self._pending_ticker
        assert ticker is not None
        last = self.book.last_update_id
        if last >= ticker.update_id or not self.book.in_sync:
            self._pending_ticker = None
            if last == ticker.update_id and self.book.in_sync:
                self._check_ticker(ticker)

    def _check_ticker(self, ticker: BookTicker) -> None:
        top = self.book.top()
        if top is None:
            return
        bid, bid_qty, ask, ask_qty = top
        same = (
            bid == Decimal(ticker.bid)
            and ask == Decimal(ticker.ask)
            and bid_qty == Decimal(ticker.bid_qty)
            and ask_qty == Decimal(ticker.ask_qty)
        )
        self._ticker_checks[same].inc()
        if not same:
            log_event(
                log, "book_ticker_mismatch", logging.WARNING, update_id=ticker.update_id,
                book=[str(v) for v in top], ticker=[ticker.bid, ticker.bid_qty, ticker.ask, ticker.ask_qty],
            )  # fmt: skip

    def _on_candle(self, candle: Candle, update: SmaUpdate) -> None:
        self.sink.enqueue_candle(candle)
        if self._on_candle_hook is not None:
            self._on_candle_hook(candle, update)

    def start(self) -> None:
        """Begin warm-up now, from the exchange's clock: readiness must not wait for a market frame."""
        self.strategy.start()

    def _close_near(self, signal: Signal, until: float) -> None:
        """A candle closes soon (`engine.hot_close`): hold the loop awake until `until`, keep market
        data off the store's connection and thread until then (a price batch's commit and fsync would
        otherwise start there any moment: ahead of the order's, or holding the interpreter while the
        close is handled), and rehearse the order path for `signal`, the crossing that close could
        make. Nothing is stored or sent; a rehearsal that fails is counted and changes nothing (the
        close takes the cold path)."""
        keep_awake(until)
        self.sink.defer_market_data(until - time.monotonic())
        orders = self.orders
        if orders is None:
            return
        if self._unfinished_signals or not orders.ready_to_act():
            result = "not_ready"
        else:
            try:
                result = orders.rehearse(signal)
            except Exception as e:
                result = "failed"
                log_event(log, "close_rehearsal_failed", logging.DEBUG, error=repr(e)[:200])
        self.metrics.close_rehearsals.labels(result).inc()

    # -- the signal path (ordered, durable) ------------------------------------------------------

    async def run_signals(self) -> None:
        """One signal at a time, in order: log, store (durably or safely queued), publish, trade.

        When the order manager can act at once (`ready_to_act`), the signal went to it unstored from
        `_queue_signal` itself, in the step that decided it: the manager stores it in the same write
        as its action and order, the one durable write between the closing kline and the order
        request, and this worker only logs and publishes it. A signal that would have to wait (the
        manager is busy, recovering or stopping; a signal ahead of it is still here; there is no
        manager) is stored here first, then handed over."""
        while True:
            signal, handed = await self._signals.get()
            if handed and self.orders is not None and (self.publisher or log.isEnabledFor(logging.INFO)):
                # Handed over as it was decided: its log line (and publishing) wait, a little, for the
                # order request to leave. Measured (`bench.tick_to_order`): written at once, the line
                # ran on this loop while the order path waited, and made a BUY's risk reserve answer
                # ~0.5 ms later and the store's thread wait for the interpreter.
                await self._until_order_left(self.orders)
            self.state.signals += 1
            self.state.last_signal = signal
            if log.isEnabledFor(logging.INFO):  # the fields cost more than the call (backtests log less)
                log_event(log, "signal", **signal_fields(signal))
            orders = self.orders
            if not handed and orders is not None and orders.ready_to_act():
                orders.submit_signal(signal)
                handed = True
                if self.publisher is not None:
                    # Publishing is the rest: it waits (a little) for the order request to leave, so
                    # its Redis round trip does not run on this loop while the order is on its way.
                    await self._until_order_left(orders)
            if not handed:
                await self.sink.record_signal(signal)
            if self.publisher is not None:
                try:
                    await self.publisher.publish("signal", signal_fields(signal))
                except Exception as e:  # publishing is best effort; the store has (or gets) the signal
                    log_event(log, "publish_failed", logging.WARNING, kind="signal", error=str(e))
            if not handed and self.orders is not None:
                self.orders.submit_signal(signal)
            self._unfinished_signals -= 1
            self._signals.task_done()

    async def drain_signals(self) -> None:
        await self._signals.join()

    async def _until_order_left(self, orders: SignalTaker) -> None:
        """Wait, at most `order_wait_s`, until the order manager has settled what it was handed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.order_wait_s):
                await orders.settle()

    def _queue_signal(self, signal: Signal) -> None:
        orders = self.orders
        if orders is not None and signal.action == SIGNAL_PENDING:
            # An order may follow within milliseconds: the candle this frame closed (and any price
            # batch) is written after the order's commit, not ahead of it on the store's connection.
            self.sink.defer_market_data(ORDER_WRITE_WAIT_S)
        # Nothing ahead of it here and a manager that acts on it at once: handed over now, without a
        # turn of the loop through this engine's worker (which then only logs and publishes it), and
        # acted on now (`act_now`: the order path runs on this stack until it waits, usually for the
        # exchange's answer to the request it has sent).
        handed = not self._unfinished_signals and orders is not None and orders.ready_to_act()
        self._unfinished_signals += 1
        self._signals.put_nowait((signal, handed))
        if handed:
            assert orders is not None
            orders.act_now(signal)

    def signals_in_flight(self) -> bool:
        """A signal is queued or being handed over (cheap: the feed asks after every frame)."""
        return self._unfinished_signals > 0

    def has_pending_work(self) -> bool:
        """A fetch is in flight or a signal is not yet handed on (checked without yielding)."""
        return bool(self._tasks) or self.strategy.fetching is not None or self._unfinished_signals > 0

    async def settle(self) -> None:
        """Wait until every spawned fetch has posted its result and every queued signal has been
        handed on. A replay driver awaits this before it advances its simulated clock; when there
        is nothing to wait for it returns without yielding."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._signals.join()

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self.strategy.stop()
        await stop_tasks(list(self._tasks))

    # -- what people and probes see --------------------------------------------------------------

    def readiness(self) -> dict[str, tuple[bool, str]]:
        s = self.strategy
        return {
            "stream": (self.state.connected, "connected" if self.state.connected else "stream not connected"),
            "book": (self.book.in_sync, "in sync" if self.book.in_sync else "book not in sync (resyncing)"),
            "candles": (
                s.warmed_up,
                "warmed up" if s.warmed_up else f"warming up: {s.cross.needed} closed candles still needed",
            ),
        }
