"""The buffered writer: the hot path never waits for the store, and a store outage loses nothing
that matters.

Two kinds of records, two promises:
- market data (price samples, candles) is enqueued without awaiting (`enqueue_price`,
  `enqueue_candle`). Price samples wait in a bounded buffer (`store_buffer_max`); when an outage
  fills it, the OLDEST samples are dropped first and `store_dropped` counts every one. Candles are
  few and coalesce by (symbol, interval, open_time): the newest version of each waits, never dropped.
- what money depends on (signals, orders, order updates, positions, signal actions) and notable
  events (position mismatches, halts) are awaited
  (`record_*`) and never dropped. The call returns True once the record is durable; while the store
  is down it returns False as soon as the record is queued, and the writer retries it. These records
  are written strictly in the order they were recorded (a signal before its order, an order before
  its updates).

One writer task owns the store: durable records first, then candles and prices (in batches of
`store_batch_max`) at least every `store_flush_ms`, never while an order is about to be stored
(`defer_market_data`: its one commit must not queue behind a batch of market data). A failed write
is retried with exponential backoff (the store's `retry_after` when it gives one); every write is
idempotent in the store, so retrying a batch whose outcome was not seen cannot duplicate anything.
Reads pass straight through to the store and see only what has been written.

What it refuses: it keeps nothing on disk of its own. If `close()` cannot drain the queue (the store
is still down at shutdown), every unwritten durable record is logged in full as a JSON line
(`store_unwritten`) so it can be replayed by hand, and the count of lost price samples is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tradefleet.config import BotConfig
from tradefleet.domain.models import BotEvent, Candle, Order, OrderUpdate, Position, PriceSample, Signal
from tradefleet.errors import StoreUnavailable, TemporaryError
from tradefleet.metrics import BotMetrics
from tradefleet.ports import Store
from tradefleet.tasks import stop_task

log = logging.getLogger("tradefleet.store")

DURABLE_KINDS = ("signal", "signal_action", "order", "update", "position", "event")
REQUEST_HOLD_S = 0.2
"""At most this long after an order's commit, the writer starts nothing while the order's request is
being built and sent (`request_left` ends it as soon as that is done)."""
DEFER_MAX_S = 0.25
"""Market data that `defer_market_data` holds back is written anyway once it is this long past due:
deferrals that follow one another with no gap (a replay whose candles close faster than the hot
close's window, `engine.hot_close`) must not keep prices and candles from the store for good. A bot
whose market data is written as it comes due (every `flush_ms` but for a deferral of a few tens of
milliseconds around a close) never gets this far behind, so an order's commit still finds no batch
ahead of it."""
RETRY_MIN_S = 0.05
RETRY_MAX_S = 5.0
"""Backoff bounds: quick enough to catch a lock released by another process, slow enough not to
hammer a MongoDB that is failing over."""
WRITE_TIMEOUT_S = 10.0
"""One write that has not finished after this long counts as failed with an unknown outcome (a
server that accepted the connection and went silent, a disk that hangs). It is retried like any
failure, which is safe because every store write is idempotent; a caller awaiting a durable record
is answered "queued" after at most this long, never kept waiting on a hung store.

Every bounded wait here uses `asyncio.timeout`, never `asyncio.wait_for`: on Python 3.11, a
`wait_for` cancelled in the same loop step as its awaitable finishes returns the result and drops
the cancellation. Under load that step is common: the order manager's update consumer, cancelled at
shutdown while its order update became durable, kept running and its shutdown waited forever."""


@dataclasses.dataclass(slots=True)
class _Job:
    kind: str
    call: Callable[[Store], Awaitable[object]]
    record: object
    enqueued: float
    done: asyncio.Future[bool]
    seq: int


def _unmeasured(seconds: float) -> None:
    """A latency nobody measures (see `BufferedStore(timed=False)`)."""


def _fields(record: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    return {"value": record}


class BufferedStore:
    """Wraps any `Store`; see the module docstring for what each call promises."""

    def __init__(
        self,
        store: Store,
        metrics: BotMetrics,
        *,
        batch_max: int = 500,
        flush_ms: int = 200,
        buffer_max: int = 100_000,
        retry_max_s: float = RETRY_MAX_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        request_hold_s: float = REQUEST_HOLD_S,
        defer_max_s: float = DEFER_MAX_S,
        timed: bool = True,
        candle_batch: bool = False,
    ) -> None:
        if batch_max < 1 or buffer_max < 1 or flush_ms < 0:
            raise ValueError("batch_max and buffer_max must be positive, flush_ms not negative")
        self.store = store
        self.metrics = metrics
        self.batch_max = batch_max
        self.flush_s = flush_ms / 1000
        self.buffer_max = buffer_max
        self.retry_max_s = retry_max_s
        self.write_timeout_s = write_timeout_s
        self.request_hold_s = request_hold_s
        self.defer_max_s = defer_max_s
        self._prices: deque[PriceSample] = deque()
        self._prices_since: float | None = None  # when the oldest waiting sample arrived (monotonic)
        self._candles_since: float | None = None  # when the oldest waiting candle arrived (monotonic)
        self._deferred_until = 0.0  # market data waits until then: an order is about to be stored
        self._held_until = 0.0  # nothing starts on the store's thread until then: a request is leaving
        self._inflight_prices = 0
        self._inflight_candles = 0
        self._candles: dict[tuple[str, str, int], Candle] = {}
        self._durable: deque[_Job] = deque()
        # Durable records are numbered as they are queued; `_written_seq` is the newest one written
        # (they are written in that order), and `_progress` is set each time it moves.
        self._seq = 0
        self._written_seq = 0
        self._progress = asyncio.Event()
        self._retry_now = asyncio.Event()  # cuts the writer's backoff short: an order is waiting
        self._durable_counts: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._flush_waiters = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._healthy = True
        self._failures_in_row = 0
        self._last_error: str | None = None
        self.dropped = 0
        self.recent_events: deque[BotEvent] = deque(maxlen=20)
        """The newest events this process recorded (queued or durable), for `/status`."""
        # The hot path only touches pre-resolved counters; the buffered gauges are read at scrape
        # time from the queues themselves, so they cost nothing per record and are never stale.
        self._enqueued_price = metrics.store_enqueued.labels("price")
        self._candle_enqueued = metrics.store_enqueued.labels("candle")
        # Candles enqueued but not yet added to their counter: the counter catches up whenever the
        # writer takes candles (the next turn of the loop) or anyone asks what is buffered. One
        # counter update per call cost a tenth of a backtested candle (a sweep enqueues millions).
        self._candles_uncounted = 0
        self._last_candle: Candle | None = None
        self._enqueued = {kind: metrics.store_enqueued.labels(kind) for kind in DURABLE_KINDS}
        # `timed=False` (a backtest on the simulated clock): wall-clock write latencies of a
        # throwaway in-memory store say nothing about a live bot's, and cost a histogram each.
        self._write_latency = metrics.op_latency["store_write"].observe if timed else _unmeasured
        self._stored_latency = metrics.op_latency["event_to_stored"].observe if timed else _unmeasured
        # A store whose calls never wait (private in-memory SQLite: backtests and sweeps) is written
        # at once when nothing is queued ahead: the same order, the same promise, no hand-off to the
        # writer task and back (which cost more than the write), and no timeout around a call that
        # cannot hang (a synchronous call cannot be interrupted by one anyway).
        self._inline = bool(getattr(store, "inline", False))
        self.exclusive = bool(getattr(store, "exclusive", False))
        """The wrapped store has no other writer (see `SqliteStore.exclusive`)."""
        # `candle_batch` (backtests): candles wait for a full batch (or a flush) like price samples,
        # instead of being written as they come: a replay closes thousands a second, and wrote them
        # a few rows at a time whenever its loop yielded.
        self._candle_batch = candle_batch
        for kind in (*DURABLE_KINDS, "price", "candle"):
            metrics.store_buffered.labels(kind).set_function(functools.partial(self._waiting, kind))

    @classmethod
    def from_config(
        cls,
        store: Store,
        config: BotConfig,
        metrics: BotMetrics,
        *,
        timed: bool = True,
        candle_batch: bool = False,
    ) -> BufferedStore:
        return cls(
            store,
            metrics,
            batch_max=config.store_batch_max,
            flush_ms=config.store_flush_ms,
            buffer_max=config.store_buffer_max,
            timed=timed,
            candle_batch=candle_batch,
        )

    # -- state ------------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while the last write (or `ping`) succeeded, and before the first one."""
        return self._healthy

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def buffered(self) -> dict[str, int]:
        """Records waiting for the store, by kind (in-flight price samples included)."""
        self._count_candles()
        counts = {kind: self._durable_counts[kind] for kind in DURABLE_KINDS}
        counts["price"] = len(self._prices) + self._inflight_prices
        counts["candle"] = len(self._candles) + self._inflight_candles
        return counts

    def _waiting(self, kind: str) -> int:
        return self.buffered()[kind]

    def _has_work(self) -> bool:
        return bool(
            self._durable or self._candles or self._prices or self._inflight_prices or self._inflight_candles
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task (needs a running event loop). The store must already be open."""
        if self._closed:
            raise RuntimeError("BufferedStore is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")

    async def flush(self, timeout: float = 30.0) -> bool:  # noqa: ASYNC109 (the bound is the API)
        """Wait until everything queued so far is written; False if that took longer than `timeout`."""
        if not self._has_work():
            return True
        if self._task is None or self._task.done():
            raise RuntimeError("BufferedStore writer is not running; call start() first")
        self._flush_waiters += 1
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._flush_waiters -= 1

    async def close(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Flush (up to `timeout`), stop the writer and close the wrapped store."""
        if self._closed:
            return
        self._count_candles()
        drained = True
        if self._task is not None and not self._task.done():
            drained = await self.flush(timeout)
        self._closed = True
        await stop_task(self._task)
        self._progress.set()  # an order waiting for records ahead of it learns that they never will be
        if not drained:
            self._log_unwritten()
        for job in self._durable:
            if not job.done.done():
                job.done.set_result(False)
        await self.store.close()

    def _log_unwritten(self) -> None:
        for job in self._durable:
            log.error(
                "store_unwritten",
                extra={"event": "store_unwritten", "kind": job.kind, "record": _fields(job.record)},
            )
        lost = len(self._prices) + self._inflight_prices
        log.error(
            "store_close_incomplete",
            extra={
                "event": "store_close_incomplete",
                "durable_unwritten": len(self._durable),
                "prices_lost": lost,
                "candles_lost": len(self._candles),
                "error": self._last_error,
            },
        )

    # -- market data: never awaited -----------------------------------------------------------------

    def enqueue_price(self, sample: PriceSample) -> None:
        if self._closed:
            self._drop(1)
            return
        if not self._prices:
            self._prices_since = time.monotonic()
            # The writer may be waiting with no deadline (nothing was queued): wake it once per
            # batch so it starts the `flush_ms` clock; without this, samples waited for a full
            # batch (`batch_max`, minutes at 10/s) or for an unrelated write.
            self._wake.set()
        self._prices.append(sample)
        self._enqueued_price.inc()
        self._trim_prices()
        self._drained.clear()
        if len(self._prices) >= self.batch_max:
            self._wake.set()

    def _trim_prices(self) -> None:
        excess = len(self._prices) - self.buffer_max
        if excess > 0:
            for _ in range(excess):
                self._prices.popleft()
            self._drop(excess)

    def _drop(self, n: int) -> None:
        self.dropped += n
        self.metrics.store_dropped.inc(n)

    def enqueue_candle(self, candle: Candle) -> None:
        if self._closed:
            return
        if candle is self._last_candle:
            # The very same candle again (the bots of a backtested fleet share one store and one
            # parse): it is waiting or written already; only the count moves.
            self._candles_uncounted += 1
            return
        self._last_candle = candle
        if not self._candles:
            self._candles_since = time.monotonic()  # candles wait for the flush interval, like prices
        key = (candle.symbol, candle.interval, candle.open_time)
        waiting = self._candles.get(key)
        # A closed candle is final; a late in-progress version of it must not replace it.
        if waiting is not candle and (waiting is None or candle.closed or not waiting.closed):
            self._candles[key] = candle
        self._candles_uncounted += 1
        self._drained.clear()
        if not self._candle_batch or len(self._candles) >= self.batch_max:
            self._wake.set()

    def _count_candles(self) -> None:
        if self._candles_uncounted:
            self._candle_enqueued.inc(self._candles_uncounted)
            self._candles_uncounted = 0

    # -- what money depends on: awaited, never dropped -------------------------------------------------

    async def record_signal(self, signal: Signal) -> bool:
        return await self._record("signal", lambda s: s.insert_signal(signal), signal)

    async def record_signal_action(self, signal_id: str, action: str) -> bool:
        return await self._record(
            "signal_action",
            lambda s: s.update_signal_action(signal_id, action),
            {"signal_id": signal_id, "action": action},
        )

    async def record_order(self, order: Order) -> bool:
        return await self._record("order", lambda s: s.insert_order(order), order)

    async def record_update(self, update: OrderUpdate) -> bool:
        return await self._record("update", lambda s: s.apply_order_update(update), update)

    async def record_position(self, position: Position) -> bool:
        return await self._record("position", lambda s: s.save_position(position), position)

    async def record_event(self, event: BotEvent) -> bool:
        if all(e.event_id != event.event_id for e in self.recent_events):
            self.recent_events.append(event)
        return await self._record("event", lambda s: s.insert_event(event), event)

    async def _record(self, kind: str, call: Callable[[Store], Awaitable[object]], record: object) -> bool:
        """True once durable; False once queued while the store is down (the writer keeps trying)."""
        writer_up = self._task is not None and not self._closed
        if self._inline and self._healthy and not self._durable and writer_up:
            # Nothing queued ahead and the store answers without waiting: write it now. A failure
            # queues the record as usual, and the writer retries it (and reports the outage).
            enqueued = time.monotonic()
            try:
                await self._attempt(kind, functools.partial(call, self.store))
            except Exception:
                pass  # queued below: the writer's retries own failures
            else:
                self._enqueued[kind].inc()
                self._stored_latency(time.monotonic() - enqueued)
                return True
        done = self._enqueue(kind, call, record)
        # shield: a caller cancelled (or timed out) while waiting leaves the record queued.
        try:
            async with asyncio.timeout(self.write_timeout_s):
                return await asyncio.shield(done)
        except TimeoutError:
            return False

    def _enqueue(
        self, kind: str, call: Callable[[Store], Awaitable[object]], record: object
    ) -> asyncio.Future[bool]:
        """Queue a durable record (synchronously, so its place in the order is fixed at once); the
        future says True once it is written, False once it is known to wait for a down store."""
        if self._closed:
            raise RuntimeError(f"BufferedStore is closed; {kind} not recorded")
        if self._task is None:
            raise RuntimeError("BufferedStore writer is not running; call start() first")
        self._enqueued[kind].inc()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._seq += 1
        self._durable.append(_Job(kind, call, record, time.monotonic(), done, self._seq))
        self._durable_counts[kind] += 1
        self._drained.clear()
        self._wake.set()
        if not self._healthy:
            done.set_result(False)
        return done

    # -- the writer -------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await self._wait_for_work()
            try:
                await self._write_step()
            except Exception as e:  # every failure is retried: nothing durable may be skipped
                self._on_failure(e)
                retry_after = e.retry_after if isinstance(e, TemporaryError) else None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(delay, min(retry_after or 0.0, self.retry_max_s))):
                        await self._retry_now.wait()
                self._retry_now.clear()
                delay = min(delay * 2, self.retry_max_s)
                continue
            delay = RETRY_MIN_S
            if not self._has_work():
                self._drained.set()

    def defer_market_data(self, seconds: float) -> None:
        """An order is about to be stored: price samples and candles wait until its write is done
        (at most `seconds`). On SQLite every write goes through one connection, so a batch of market
        data started just before (a closing candle, a price flush) would put its own commit, fsync
        included, ahead of the order's. Awaited records never wait."""
        self._deferred_until = max(self._deferred_until, time.monotonic() + seconds)

    def _end_deferral(self) -> None:
        if self._deferred_until:
            self._deferred_until = 0.0
            self._wake.set()

    def request_left(self) -> None:
        """The order request that `commit_order` stored has left (or will not leave): the writer
        goes on. Until then (at most `REQUEST_HOLD_S` after the commit) it starts nothing on the
        store's thread, durable records included: their place in the queue is kept, and a write
        started there while the request is being built and sent (the closing candle's batch, the
        queued `after_commit_order`) took the interpreter and a core from it. Nothing is awaited
        in between, so nobody waits on it but the writer."""
        self._held_until = 0.0
        self._end_deferral()
        self._wake.set()

    def _held_for(self) -> float:
        """Seconds the writer still holds off for a request leaving (0: not held)."""
        if not self._held_until or self._flush_waiters or self._closed:
            return 0.0
        left = self._held_until - time.monotonic()
        if left <= 0:
            self._held_until = 0.0
            return 0.0
        return left

    def _market_due(self) -> float | None:
        """Seconds until waiting market data is to be written (0: now); None when none waits."""
        if not (self._candles or self._prices):
            return None
        if self._flush_waiters or not self._healthy:
            return 0.0
        now = time.monotonic()
        # `candle_batch` (backtests on the simulated clock): candles wait for a full batch or a flush,
        # with no wall-clock timer of their own.
        candles_since = None if self._candle_batch else self._candles_since
        starts = [t for t in (self._prices_since if self._prices else None, candles_since) if t is not None]
        if now < self._deferred_until:
            # Held back (an order is about to be stored, a close is near), but never more than
            # `defer_max_s` past due.
            until = self._deferred_until
            if starts:
                until = min(until, min(starts) + self.flush_s + self.defer_max_s)
            if now < until:
                return until - now
        if len(self._prices) >= self.batch_max or len(self._candles) >= self.batch_max:
            return 0.0
        if not starts:
            return None if not self._prices else 0.0
        return max(0.0, min(starts) + self.flush_s - now)

    async def _wait_for_work(self) -> None:
        while True:
            due: float | None = self._held_for()
            if not due:
                if self._durable:
                    return
                due = self._market_due()
            if due == 0.0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(due):
                    await self._wake.wait()

    async def _attempt(self, kind: str, write: Callable[[], Awaitable[object]]) -> None:
        if self._failures_in_row:
            self.metrics.store_retries.inc()
        started = time.perf_counter()
        try:
            if self._inline:
                await write()
            else:
                async with asyncio.timeout(self.write_timeout_s):
                    await write()
        except TimeoutError as e:
            self.metrics.store_failures.labels(kind).inc()
            raise StoreUnavailable(
                f"{kind} write did not finish within {self.write_timeout_s}s; outcome unknown, retrying "
                "(store writes are idempotent)"
            ) from e
        except Exception:
            self.metrics.store_failures.labels(kind).inc()
            raise
        self._write_latency(time.perf_counter() - started)
        self._on_success()

    async def _write_step(self) -> None:
        while self._durable and not self._held_for():
            job = self._durable[0]
            await self._attempt(job.kind, functools.partial(job.call, self.store))
            self._durable.popleft()
            self._durable_counts[job.kind] -= 1
            self._written_seq = job.seq
            self._progress.set()
            self._stored_latency(time.monotonic() - job.enqueued)
            if not job.done.done():
                job.done.set_result(True)
        if self._held_for() or self._market_due() != 0.0:
            return  # not due yet, or an order is about to be stored or sent
        if self._candles:
            await self._write_candles()
        if self._prices:
            await self._write_prices()

    async def _write_candles(self) -> None:
        self._count_candles()
        keys = list(self._candles)[: self.batch_max]
        batch = [self._candles.pop(k) for k in keys]
        self._inflight_candles = len(batch)
        self._candles_since = time.monotonic() if self._candles else None
        try:
            await self._attempt("candle", lambda: self.store.write_candles(batch))
        except Exception:
            for key, candle in zip(keys, batch, strict=True):
                newer = self._candles.get(key)
                if newer is None or (candle.closed and not newer.closed):
                    self._candles[key] = candle
            self._candles_since = self._candles_since or time.monotonic()
            raise
        finally:
            self._inflight_candles = 0

    async def _write_prices(self) -> None:
        n = min(self.batch_max, len(self._prices))
        batch: Sequence[PriceSample] = [self._prices.popleft() for _ in range(n)]
        self._inflight_prices = n
        self._prices_since = time.monotonic() if self._prices else None
        try:
            await self._attempt("price", lambda: self.store.write_prices(batch))
        except Exception:
            # Back at the front, in order; if the buffer overflowed meanwhile, the oldest go first.
            self._prices.extendleft(reversed(batch))
            self._prices_since = self._prices_since or time.monotonic()
            self._trim_prices()
            raise
        finally:
            self._inflight_prices = 0
        now_ms = time.time() * 1000
        observe = self.metrics.latency.labels("event_to_stored").observe
        for sample in batch:
            observe(max(0.0, (now_ms - sample.local_ts) / 1000))

    def _on_failure(self, error: Exception) -> None:
        self._failures_in_row += 1
        message = f"{type(error).__name__}: {error}"
        if self._healthy or message != self._last_error:
            log.warning(
                "store_write_failed",
                extra={"event": "store_write_failed", "error": message, "buffered": self.buffered()},
            )
        self._healthy = False
        self._last_error = message
        # Whoever waits for a durable record is told "queued, not yet durable" rather than kept waiting.
        for job in self._durable:
            if not job.done.done():
                job.done.set_result(False)

    def _on_success(self) -> None:
        if not self._healthy:
            log.warning(
                "store_recovered",
                extra={
                    "event": "store_recovered",
                    "failed_attempts": self._failures_in_row,
                    "buffered": self.buffered(),
                },
            )
        self._healthy = True
        self._failures_in_row = 0

    # -- the Store protocol's writes, with this buffer's promises --------------------------------
    # Handed to the order manager (which takes any Store), the buffered store is the whole store:
    # - `commit_order` (and `insert_order`) go straight to the store and wait until the PENDING record
    #   is durable, retrying through an outage: no order leaves before it is recorded (an order we
    #   could not record is one a restart could not reconcile), and while the store is down signals
    #   wait in the manager's queue. They keep the store's answer (False: that client order id already
    #   exists). `after_commit_order` is queued and not awaited (see there).
    # - everything else goes through the never-drop queue, in order; the booleans say "durable" (True)
    #   or "queued while the store is down" (False), and `apply_order_update` returns None, so the
    #   manager merges the update into its in-memory order with the store's own forward-only rule.

    async def open(self) -> None:
        await self.store.open()

    async def insert_order(self, order: Order) -> bool:
        return await self._until_durable(order, lambda: self.store.insert_order(order))

    async def commit_order(self, signal: Signal, order: Order) -> bool:
        # Stored: its request leaves next, and the writer holds off until it has (`request_left`).
        return await self._until_durable(order, lambda: self.store.commit_order(signal, order), hold=True)

    def rehearse_commit(self, signal: Signal, order: Order) -> bool:
        """The wrapped store's `rehearse_commit` (nothing written), where it has one."""
        rehearse = getattr(self.store, "rehearse_commit", None)
        return bool(rehearse(signal, order)) if rehearse is not None else False

    async def after_commit_order(self, signal: Signal, order: Order) -> None:
        # Queued, not awaited: nothing before the send depends on it, and its place in the queue puts
        # it before every later write about this signal or order (reports, actions, the position).
        self._enqueue("signal", lambda s: s.after_commit_order(signal, order), signal)

    async def _until_durable(
        self, order: Order, write: Callable[[], Awaitable[bool]], *, hold: bool = False
    ) -> bool:
        """Write `order` straight to the store, retrying through an outage until the store answers;
        but only once every durable record queued before it is written (`_written_ahead`)."""
        await self._written_ahead(order)
        delay = RETRY_MIN_S
        while True:
            started = time.perf_counter()
            try:
                inserted = await write()
            except TemporaryError as e:
                self.metrics.store_failures.labels("order").inc()
                self.metrics.store_retries.inc()
                wait = min(e.retry_after or delay, self.retry_max_s)
                log.warning(
                    "order_store_wait",
                    extra={
                        "event": "order_store_wait",
                        "client_order_id": order.client_order_id,
                        "error": str(e),
                        "wait_s": round(wait, 3),
                    },
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.retry_max_s)
                continue
            self._write_latency(time.perf_counter() - started)
            if inserted and hold:
                # Until `request_left`: market data and durable records alike (both at most this long).
                self._held_until = self._deferred_until = time.monotonic() + self.request_hold_s
                self._wake.set()
            else:
                self._end_deferral()  # no request follows
            return inserted

    async def _written_ahead(self, order: Order) -> None:
        """Wait until the durable records queued so far are written. An order goes straight to the
        store, and its request leaves as soon as it is there: it must not overtake what was recorded
        before it. A SELL is sized from the fills of the BUY before it; with those fills still
        queued (an outage, a writer backing off), a kill -9 after the SELL's commit left the next
        leader a BUY without its fills or fee and the SELL sized from them: a whole step or more of
        dust in its position (0.00001143 BTC in a compose run)."""
        target = self._seq
        if self._written_seq >= target:
            return
        log.warning(
            "order_store_wait",
            extra={
                "event": "order_store_wait",
                "client_order_id": order.client_order_id,
                "error": "durable records recorded before this order are not written yet",
                "waiting_records": target - self._written_seq,
            },
        )
        while self._written_seq < target:
            if self._closed or self._task is None or self._task.done():
                raise StoreUnavailable(
                    f"the buffered store is closed with records queued ahead of order "
                    f"{order.client_order_id}; it is not stored"
                )
            self._progress.clear()
            self._retry_now.set()
            await self._progress.wait()

    async def insert_signal(self, signal: Signal) -> bool:
        return await self.record_signal(signal)

    async def update_signal_action(self, signal_id: str, action: str) -> None:
        await self.record_signal_action(signal_id, action)

    async def apply_order_update(self, update: OrderUpdate) -> Order | None:
        await self.record_update(update)
        return None

    async def save_position(self, position: Position) -> None:
        await self.record_position(position)

    async def insert_event(self, event: BotEvent) -> bool:
        return await self.record_event(event)

    async def write_prices(self, samples: Sequence[PriceSample]) -> None:
        for sample in samples:
            self.enqueue_price(sample)

    async def write_candles(self, candles: Sequence[Candle]) -> None:
        for candle in candles:
            self.enqueue_candle(candle)

    # -- reads pass through ----------------------------------------------------------------------

    async def ping(self) -> None:
        """Ping the store (a real write) and let the answer update `healthy`: a probe notices an
        outage even when nothing was written lately. Raises StoreUnavailable like the store."""
        try:
            await self.store.ping()
        except Exception as e:
            self._healthy = False
            self._last_error = f"{type(e).__name__}: {e}"
            raise
        if not self._has_work():
            self._healthy = True  # with a backlog, the writer's next success says so instead

    async def get_order(self, client_order_id: str) -> Order | None:
        return await self.store.get_order(client_order_id)

    async def open_orders(self, bot: str) -> list[Order]:
        return await self.store.open_orders(bot)

    async def order_updates(self, client_order_id: str) -> list[OrderUpdate]:
        return await self.store.order_updates(client_order_id)

    async def orders(self, bot: str) -> list[Order]:
        return await self.store.orders(bot)

    async def signals(self, bot: str) -> list[Signal]:
        return await self.store.signals(bot)

    async def candles(self, symbol: str, interval: str) -> list[Candle]:
        return await self.store.candles(symbol, interval)

    async def prices(self, bot: str, limit: int = 1000) -> list[PriceSample]:
        return await self.store.prices(bot, limit)

    async def load_position(self, bot: str, symbol: str) -> Position | None:
        return await self.store.load_position(bot, symbol)

    async def bots(self) -> list[str]:
        return await self.store.bots()

    async def events(self, bot: str, limit: int = 100) -> list[BotEvent]:
        return await self.store.events(bot, limit)
