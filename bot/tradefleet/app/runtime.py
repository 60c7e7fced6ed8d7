"""One bot's runtime: builds every edge from the configuration, wires them to the engine, runs them,
and stops them in the right order. Shared by `tradefleet bot` (a process per bot) and `tradefleet demo`
(in-process, next to the simulator).

Trading is gated three times before an order leaves: the order manager must have recovered (position
and open orders reloaded and reconciled with the exchange), the lease must say this replica may trade,
and the coordinator must confirm the fencing token right before the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import sys
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any

from tradefleet.config import BotConfig
from tradefleet.domain.models import BotId, Position, Side, Signal
from tradefleet.domain.risk import Halt, flatten_signal_id
from tradefleet.engine.pipeline import BotEngine
from tradefleet.errors import ConfigError, PermanentError, TemporaryError
from tradefleet.logs import iso_ms, log_event, now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.ports import SymbolRules
from tradefleet.tasks import stop_task, stop_tasks

log = logging.getLogger("tradefleet.runtime")

BINANCE_WS = "wss://stream.binance.com:9443"
TESTNET_WS = "wss://stream.testnet.binance.vision"
STORE_FLUSH_AT_STOP_S = 7.0


class BotRuntime:
    def __init__(self, config: BotConfig, metrics: BotMetrics, *, holder: str) -> None:
        self.config = config
        self.metrics = metrics
        self.holder = holder
        self.bot = BotId(config.name, config.exchange, config.symbol)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.engine: BotEngine | None = None
        self.orders: Any = None
        self.store: Any = None
        self.lease: Any = None
        self.publisher: Any = None
        self.http: Any = None
        self.risk: Any = None
        self.risk_state: Any = None
        self.feed: Any = None
        self.book: Any = None
        self.started_ms = now_ms()
        self.exit_code = 0
        """Non-zero when the process stops because the exchange refused it for good (see `_fatal`)."""

    def request_stop(self) -> None:
        self._stop.set()

    # -- build -----------------------------------------------------------------------------------

    def _market_ws_url(self) -> str:
        c = self.config
        if c.ws_url:
            return c.ws_url
        return TESTNET_WS if c.mode == "testnet" else BINANCE_WS

    async def _build(self) -> None:
        from tradefleet.adapters.binance import BinanceSpot
        from tradefleet.adapters.feed import Feed
        from tradefleet.adapters.market_rest import BinanceMarketRest
        from tradefleet.coord.events import NullPublisher, RedisEventPublisher
        from tradefleet.coord.lease import LocalLease, RedisLease, lease_key
        from tradefleet.engine.book_keeper import BookKeeper
        from tradefleet.store import open_store
        from tradefleet.store.buffered import BufferedStore
        from tradefleet.web.http import BotHttpServer

        c, m = self.config, self.metrics
        # A second process on the same SQLite file waits here as a cold standby (sqlite_lock): it opens
        # nothing, serves nothing and trades nothing until the holder exits or dies.
        self.store = BufferedStore.from_config(open_store(c.store_url, lock="wait"), c, m)
        await self.store.store.open()
        self.store.start()
        self.rest = BinanceMarketRest(rest_url=c.rest_url, testnet=c.mode == "testnet")
        if c.redis_url:
            self.lease = RedisLease(
                c.redis_url,
                lease_key(c.name, c.exchange, c.market_id),
                self.holder,
                ttl_ms=c.lease_ttl_ms,
                renew_ms=c.lease_renew_ms,
                metrics=m,
                on_change=self._on_lease_change,
            )
            self.publisher = RedisEventPublisher(c.redis_url, c.name, m)
        else:
            self.lease = LocalLease(self.holder, metrics=m, on_change=self._on_lease_change)
            self.publisher = NullPublisher()

        def post(event: object) -> None:
            assert self.engine is not None
            self.engine.handle(event)

        self.book = BookKeeper(
            market_id=c.market_id,
            rest=self.rest,
            depth_limit=c.depth_limit,
            metrics=m,
            post=post,
            spawn=self._spawn,
        )
        self.engine = BotEngine(
            c, m, book=self.book, rest=self.rest, sink=self.store, publisher=self.publisher, spawn=self._spawn
        )
        adapter = BinanceSpot()
        self.feed = Feed(
            adapter,
            adapter.stream_url(self._market_ws_url(), c.market_id, c.interval),
            self.engine.handle,
            m,
            stale_after_s=c.stale_after_s,
            reconnect_max_s=c.reconnect_max_s,
            max_connection_age_s=c.max_connection_age_s,
            yield_while=self._order_path_busy,
            calm=self._order_path_calm,
        )
        # Process CPU/memory collectors, the bot's identity for dashboards, and the loop monitor
        # that /livez asks (added by the monitoring work).
        from tradefleet.web.process_metrics import LoopMonitor, install_process_metrics

        install_process_metrics(m.registry)
        m.set_identity(bot=c.name, exchange=c.exchange, symbol=c.symbol, mode=c.mode, interval=c.interval)
        self.loop_monitor = LoopMonitor(m)
        # Read at scrape time, so the hot path pays nothing for them.
        engine, book = self.engine, self.book
        m.last_event.set_function(lambda: engine.state.last_event_ms / 1000)

        def mid_price() -> float:
            top = book.top()
            return float((top[0] + top[2]) / 2) if top is not None else float("nan")

        m.mid_price.set_function(mid_price)
        self.http = BotHttpServer(
            host=c.http_host,
            port=c.http_port,
            registry=m.registry,
            readiness=self.readiness,
            status=self.status,
            liveness=self.loop_monitor.liveness,
        )

    async def _build_orders(self) -> None:
        from tradefleet.engine.order_manager import OrderManager

        c = self.config
        rules = await self._with_retries("symbol_rules", lambda: self.rest.fetch_symbol_rules(c.symbol))
        self.rules: SymbolRules = rules
        if c.mode == "paper":
            from tradefleet.adapters.paper import PaperExecution

            self.execution: Any = PaperExecution(
                self.book.levels,
                c.fee_rate,
                base_asset=rules.base_asset,
                quote_asset=rules.quote_asset,
                step_size=rules.step_size,
            )
        else:
            from tradefleet.adapters.binance_exec import BinanceExecution
            from tradefleet.adapters.credentials import load_credentials

            self.execution = BinanceExecution(
                c,
                load_credentials(required=True),
                metrics=self.metrics,
                lease_window_ms=self.lease.remaining_ms,
            )
        self.risk = self._build_risk(rules)
        self.orders = OrderManager(
            config=c,
            store=self.store,  # the buffered store: orders durable before sent, the rest never dropped
            execution=self.execution,
            lease=self.lease,
            rules=rules,
            metrics=self.metrics,
            publisher=self.publisher,
            risk=self.risk,
        )

    def _build_risk(self, rules: SymbolRules) -> Any:
        """The kill switch and limits: Redis-backed with `REDIS_URL`, in-process (file switch) without."""
        from tradefleet.coord.risk_state import LocalRiskState, RedisRiskState
        from tradefleet.engine.risk_gate import RiskGate

        c = self.config
        self.risk_state = (
            RedisRiskState(c.redis_url, c.risk_scope, halt_file=c.risk_halt_file)
            if c.redis_url
            else LocalRiskState(c.risk_halt_file)
        )
        empty = Position(bot=c.name, symbol=c.symbol)
        return RiskGate(
            config=c,
            state=self.risk_state,
            metrics=self.metrics,
            quote_asset=rules.quote_asset,
            position=lambda: self.orders.position if self.orders is not None else empty,
            mark=self._mark,
            may_trade=lambda: bool(
                self.lease.may_trade() and self.orders is not None and self.orders.trading_ready
            ),
            on_flatten=self._flatten,
            store=self.store,  # halts and resumes it learns of become stored events
        )

    def _order_path_busy(self) -> bool:
        """A signal is on its way to the order manager or being acted on (asked once per frame)."""
        engine, orders = self.engine, self.orders
        return (engine is not None and engine.signals_in_flight()) or (orders is not None and orders.acting())

    async def _order_path_calm(self) -> None:
        """No order request is about to leave (what the feed waits for after a signal's frame)."""
        if self.orders is not None:
            await self.orders.quiet()

    def _mark(self) -> Decimal | None:
        top = self.book.top() if self.book is not None and self.book.in_sync else None
        if top is not None:
            return Decimal((top[0] + top[2]) / 2)
        engine = self.engine
        return engine.strategy.live_close if engine is not None else None

    def _flatten(self, halt: Halt) -> None:
        """Submit the halt's one SELL for this bot; its id is a function of the halt, so however often
        this is called, by whichever replica, the order is placed once."""
        from tradefleet.domain.position import is_long

        mark = self._mark() or Decimal(0)
        if self.orders is None or not is_long(self.orders.position, self.orders.filters, mark):
            return  # flat, or only dust no order can sell: nothing to close
        c = self.config
        now = now_ms()
        # Dated on the last closed candle (the exchange's clock, like every strategy signal), so the next
        # strategy signal sorts after it: a takeover acts on the newest signal, never on a stale flatten.
        last = self.engine.strategy.last_update if self.engine is not None else None
        open_t, close_t = (last.candle.open_time, last.candle.close_time) if last is not None else (0, 0)
        signal = Signal(
            signal_id=flatten_signal_id(halt, c.name), bot=c.name, exchange=c.exchange, symbol=c.symbol,
            interval=c.interval, side=Side.SELL, candle_open_time=open_t, candle_close_time=close_t,
            close=mark, sma_short=mark, sma_long=mark, created_at=now,
        )  # fmt: skip
        log_event(log, "risk_flatten", halt_id=halt.halt_id, signal_id=signal.signal_id)
        self.orders.submit_signal(signal)

    async def _with_retries(self, what: str, call: Any) -> Any:
        delay = 0.5
        while not self._stop.is_set():
            try:
                return await call()
            except TemporaryError as e:
                wait = e.retry_after or delay * (0.5 + random.random())
                log_event(log, "retry", logging.WARNING, what=what, error=str(e), wait_s=round(wait, 3))
            except PermanentError:
                raise
            except Exception as e:
                wait = delay
                log_event(log, "retry", logging.WARNING, what=what, error=repr(e), wait_s=wait)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._stop.wait()
            delay = min(delay * 2, self.config.reconnect_max_s)
        raise asyncio.CancelledError

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)
        return task

    def _on_lease_change(self, state: str) -> None:
        log_event(log, "lease", state=state, holder=self.holder)
        if state == "leader" and self.orders is not None and self.orders.trading_ready:
            # Takeover: reload and reconcile before the next order (re-entrant; the first recovery
            # at start-up is done by _start_trading).
            self._spawn(self._with_retries("recover", self.orders.recover))

    # -- run -------------------------------------------------------------------------------------

    async def run(self) -> int:
        c = self.config
        log_event(
            log, "starting", bot=c.name, exchange=c.exchange, symbol=c.symbol, mode=c.mode, holder=self.holder
        )
        try:
            if not await self._until_stopped(self._build()):
                log_event(log, "stopped_before_start", bot=c.name)
                return self.exit_code
            assert self.engine is not None
            await self.http.start()
            self._spawn(self.loop_monitor.run())
            await self.lease.start()
            await self._resume_point()
            self._spawn(self.feed.run())
            self.engine.start()
            self._spawn(self.engine.run_signals())
            self._spawn(self._publish_status())
            self._spawn(self._fatal_on_refusal("start_trading", self._start_trading()))
            log_event(log, "started", http_port=self.http.port)
            await self._stop.wait()
            return self.exit_code
        finally:
            await self._shutdown()

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run start-up work unless a stop comes first (SIGTERM while waiting for the store's lock as a
        cold standby, or for an exchange that does not answer): False when stopped, the work cancelled.
        Kubernetes sends SIGTERM to a pod still starting, and it must not wait out its grace period."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            await stop_task(task, 10)
            return False
        task.result()  # a start-up failure raises here, as before
        return True

    async def _resume_point(self) -> None:
        """Tell the strategy the newest crossing this bot had stored, so crossings after it that the
        warm-up history shows (the bot was down) are stored as missed rather than forgotten."""
        assert self.engine is not None
        try:
            async with asyncio.timeout(10):
                stored = await self.store.store.signals(self.config.name)
        except Exception as e:  # the store is down: the newest-candle rule still applies
            log_event(log, "resume_point_unknown", logging.WARNING, error=repr(e)[:200])
            return
        if stored:
            self.engine.strategy.resume_after_ms = max(s.candle_open_time for s in stored)

    async def _fatal_on_refusal(self, step: str, coro: Coroutine[Any, Any, None]) -> None:
        """A refusal no retry can help (unknown symbol, bad API key or signature, bad configuration)
        stops the process with a clear message and exit code 3, instead of a task that dies unseen
        and a bot that is never ready."""
        try:
            await coro
        except (PermanentError, ConfigError) as e:
            log_event(log, "fatal", logging.CRITICAL, step=step, error=str(e)[:500])
            print(f"tradefleet bot: {step} refused: {str(e)[:500]}", file=sys.stderr)
            self.exit_code = 3
            self._stop.set()

    async def _start_trading(self) -> None:
        await self._build_orders()
        assert self.engine is not None
        # Signals decided from now on queue in the order manager and are acted on once it has
        # recovered; before (#11), those arriving during recovery were stored but never handed over.
        self.engine.orders = self.orders
        prepare = getattr(self.execution, "prepare", None)
        if prepare is not None:
            await self._with_retries("execution", prepare)
        await self._with_retries("recover", self.orders.recover)
        self._spawn(self.risk.run())
        # Everything built so far (modules, the book, the windows) lives as long as the process: out
        # of the collector's reach, so a full collection that lands between a tick and its order
        # walks only what was made since (tick -> order's tail, issue #17).
        gc.freeze()
        log_event(log, "trading_ready", position_qty=str(self.orders.position.qty))
        await self.orders.run()

    async def _publish_status(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await self.publisher.set_status(self.status())

    async def _close_store(self) -> None:
        """Flush for at most STORE_FLUSH_AT_STOP_S, inside the 10 s each shutdown step is given: before
        (#11), the store's own 30 s flush was cut by that limit and the promised dump of what could
        not be written (`store_unwritten`, `store_close_incomplete`) never appeared."""
        await self.store.close(timeout=STORE_FLUSH_AT_STOP_S)

    async def _shutdown(self) -> None:
        log_event(log, "stopping", bot=self.config.name)
        if self.orders is not None:
            # First stop taking signals and let an order in flight become final (bounded: the pod's
            # terminationGracePeriodSeconds is set above stop_order_grace_s); the lease is released
            # below, so the next leader takes over at once instead of after the TTL.
            with contextlib.suppress(Exception):
                await self.orders.drain(self.config.stop_order_grace_s)
        if self.feed is not None:
            with contextlib.suppress(Exception):
                await self.feed.stop()
        if self.engine is not None:
            with contextlib.suppress(TimeoutError, Exception):
                async with asyncio.timeout(5):
                    await self.engine.drain_signals()
        # Bounded like every other step, and cancelled again until they end (`tradefleet.tasks`: a
        # cancellation swallowed on Python 3.11 once kept a stopping bot for 30 s, until it was killed).
        # A task that still did not end is named in the log there (`task_not_ended`).
        await stop_tasks(list(self._tasks), 10)
        for closer in (
            getattr(self.lease, "stop", None),
            self._close_store if self.store is not None else None,
            getattr(self.publisher, "close", None),
            getattr(self.risk_state, "close", None),
            getattr(getattr(self, "execution", None), "close", None),
            getattr(getattr(self, "rest", None), "close", None),
            getattr(self.http, "stop", None),
        ):
            if closer is not None:
                try:
                    async with asyncio.timeout(10):
                        await closer()
                except Exception as e:
                    log_event(log, "shutdown_error", logging.WARNING, step=str(closer), error=repr(e))
        log_event(log, "stopped", bot=self.config.name)

    # -- probes ----------------------------------------------------------------------------------

    def readiness(self) -> dict[str, tuple[bool, str]]:
        checks = self.engine.readiness() if self.engine else {"engine": (False, "starting")}
        store_ok = bool(self.store is not None and getattr(self.store, "healthy", False))
        why = getattr(self.store, "last_error", None)
        checks["store"] = (
            store_ok,
            "reachable" if store_ok else f"store unreachable (writes are buffered): {why or 'no answer'}",
        )
        state = getattr(self.lease, "state", "unknown")
        error = getattr(self.lease, "last_error", None)
        detail = f"lease state {state}" + (f" ({error})" if state == "unknown" and error else "")
        checks["lease"] = (state in ("leader", "standby"), detail)
        ready = self.orders is not None and bool(getattr(self.orders, "trading_ready", False))
        checks["orders"] = (ready, "reconciled" if ready else "reloading and reconciling orders")
        mismatch = getattr(getattr(self.orders, "position_check", None), "mismatch", None)
        checks["position"] = (
            mismatch is None,
            mismatch or "agrees with the exchange account (or not checked)",
        )
        return checks

    def status(self) -> dict[str, Any]:
        c = self.config
        checks = self.readiness()
        engine = self.engine
        pos = getattr(self.orders, "position", None)
        last_order = getattr(self.orders, "last_order", None)
        sig = engine.state.last_signal if engine else None
        strategy = engine.strategy if engine else None
        now = now_ms()
        book_age = now - engine.state.last_event_ms if engine and engine.state.last_event_ms else None
        return {
            "bot": c.name,
            "exchange": c.exchange,
            "symbol": c.symbol,
            "mode": c.mode,
            "role": getattr(self.lease, "state", "unknown"),
            "holder": self.holder,
            "fencing_token": getattr(self.lease, "fencing_token", None),
            "lease": self.lease.snapshot() if hasattr(self.lease, "snapshot") else None,
            "ready": all(ok for ok, _ in checks.values()),
            "checks": {k: {"ok": ok, "detail": d} for k, (ok, d) in checks.items()},
            "position": None
            if pos is None
            else {
                "qty": format(pos.qty, "f"),
                "cost_quote": format(pos.cost_quote, "f"),
                "realized_pnl_quote": format(pos.realized_pnl_quote, "f"),
            },
            "last_signal": None
            if sig is None
            else {
                "signal_id": sig.signal_id,
                "side": sig.side.value,
                "candle_close_time": iso_ms(sig.candle_close_time),
                "close": str(sig.close),
            },
            "last_order": None
            if last_order is None
            else {
                "client_order_id": last_order.client_order_id,
                "status": last_order.status.value,
                "side": last_order.side.value,
                "filled_qty": str(last_order.filled_qty),
                "avg_price": None if last_order.avg_price is None else str(last_order.avg_price),
            },
            "strategy": None
            if strategy is None
            else {
                "interval": c.interval,
                "short_window": c.short_window,
                "long_window": c.long_window,
                "warmed_up": strategy.warmed_up,
                "sma_short": None if strategy.cross.short.value is None else str(strategy.cross.short.value),
                "sma_long": None if strategy.cross.long.value is None else str(strategy.cross.long.value),
                "candles": strategy.candles_processed,
            },
            "book": None
            if self.book is None
            else {
                "in_sync": self.book.in_sync,
                "last_update_id": self.book.last_update_id,
                "age_ms": book_age,
            },
            "signals": engine.state.signals if engine else 0,
            "risk": None if self.risk is None else self.risk.snapshot(),
            # Notable events this process recorded (position mismatch episodes, halts, resumes); the
            # store keeps them all (`tradefleet report`).
            "events": [
                {"kind": e.kind.value, "at_ms": e.at_ms, "summary": e.summary, **e.fields}
                for e in getattr(self.store, "recent_events", ())
            ],
            "counters": self.metrics.counters(),  # loss/error totals, the same numbers as /metrics
            "uptime_s": round((now - self.started_ms) / 1000, 1),
            "updated_at": now,
        }
