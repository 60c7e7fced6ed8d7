"""Keeps one market's local order book in sync, inside the engine's synchronous core.

Why it exists: `BookSync` (pure) knows the rules, but someone must fetch snapshots, count what
happens and decide when to resync. The engine's core loop never awaits, so `handle()` is
synchronous: when a snapshot is needed it spawns a background fetch, and the fetch's outcome comes
back as an event (`SnapshotReady` / `SnapshotFailed`) through `post`, in order with the diffs.

Rules it follows:
- every `StreamStatus("connected")` (and every disconnect) discards the book: after a reconnect the
  stream may have skipped anything, so the book is rebuilt, never trusted;
- the snapshot is requested once the first diff has been buffered (Binance's documented order), one
  fetch at a time; a result from an older generation (a reconnect happened meanwhile) is dropped;
- a temporary REST error is retried with exponential backoff and jitter, waiting at least the
  server's `retry_after`; a permanent one is reported and retried slowly (the bot stays up).

What it refuses to do: serve levels or a top of book while not in sync (`top()` is None, `levels()`
is empty), so neither prices nor paper fills ever come from a book we cannot vouch for.
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

from tradefleet.domain.market import DepthDiff, DepthSnapshot, StreamStatus
from tradefleet.domain.models import Side
from tradefleet.domain.native_book import (
    APPLIED_CODE,
    TOP_MOVED_CODE,
    NativeBookSync,
    ParsedDiff,
    SyncLike,
    native_result,
    new_book_sync,
)
from tradefleet.domain.native_book import AVAILABLE as NATIVE_AVAILABLE
from tradefleet.domain.native_book import UNUSABLE as NATIVE_UNUSABLE
from tradefleet.domain.orderbook import Outcome, SyncResult
from tradefleet.errors import PermanentError, TemporaryError
from tradefleet.logs import log_event
from tradefleet.metrics import BotMetrics
from tradefleet.ports import MarketRest

log = logging.getLogger("tradefleet.book")

Top = tuple[Decimal, Decimal, Decimal, Decimal]
_DIFF_TYPES = (DepthDiff, ParsedDiff) if ParsedDiff is not None else (DepthDiff,)
_announced = False


def _announce(native: bool) -> None:
    """Say once per process which book path runs, and how to get the native one if it is missing."""
    global _announced
    if _announced:
        return
    _announced = True
    if native:
        log_event(log, "book_path", path="native")
    elif NATIVE_AVAILABLE:
        log_event(log, "book_path", path="pure", detail="the native book is installed but not used")
    elif NATIVE_UNUSABLE:
        log_event(log, "book_path", logging.WARNING, path="pure", detail=NATIVE_UNUSABLE)
    else:
        log_event(log, "book_path", logging.WARNING, path="pure",
                  detail="tradefleet_native is not installed (no Rust compiler at install time?): "
                  "the pure-Python book is used; pip install ./native for the native path")  # fmt: skip


@dataclass(frozen=True, slots=True)
class SnapshotReady:
    """A depth snapshot fetched for resync `generation`."""

    market_id: str
    generation: int
    snapshot: DepthSnapshot


@dataclass(frozen=True, slots=True)
class SnapshotFailed:
    """The snapshot fetch hit a permanent error; it keeps retrying slowly, this is for visibility."""

    market_id: str
    generation: int
    error: str


class BookKeeper:
    def __init__(
        self,
        *,
        market_id: str,
        rest: MarketRest,
        depth_limit: int,
        metrics: BotMetrics,
        post: Callable[[object], None],
        spawn: Callable[[Coroutine[Any, Any, None]], object] | None = None,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        permanent_retry_s: float = 30.0,
        native: bool | None = None,
    ) -> None:
        self.market_id = market_id
        self.rest = rest
        self.depth_limit = depth_limit
        self.metrics = metrics
        self.post = post
        self._spawn = spawn if spawn is not None else self._default_spawn
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.permanent_retry_s = permanent_retry_s
        # The native book when it is installed (None) or asked for (True); the pure one otherwise.
        self.sync: SyncLike = new_book_sync(market_id, native=native)
        self.native = isinstance(self.sync, NativeBookSync)
        # The native module's own object: the hot path calls it directly, and it tells whether the
        # top's value moved, so no `Decimal` is built until someone reads the top.
        self._native: Any = self.sync.native if isinstance(self.sync, NativeBookSync) else None
        self._native_feed: Callable[[Any], int] | None = (
            self._native.feed if self._native is not None else None
        )
        _announce(self.native)
        self._generation = 0
        self._fetching = False
        self._task: object = None
        self._failed_snapshots = 0
        self._top: Top | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._apply_latency = metrics.latency.labels("book_apply").observe
        self._diffs = 0
        metrics.book_in_sync.set(0)

    # -- what the engine reads -------------------------------------------------------------------

    @property
    def in_sync(self) -> bool:
        if self._native is not None:
            return bool(self._native.in_sync)
        return self.sync.in_sync

    @property
    def last_update_id(self) -> int:
        if self._native is not None:
            return int(self._native.last_update_id)
        return self.sync.last_update_id

    @property
    def last_event_time(self) -> int:
        """ms, the exchange's event time of the last applied diff (0 before the first)."""
        if self._native is not None:
            return int(self._native.event_time)
        return self.sync.event_time

    def top(self) -> Top | None:
        """(bid, bid_qty, ask, ask_qty) while in sync, else None."""
        if self._native is not None:  # built from the native top's strings when they change
            top: Top | None = self.sync.book.top() if self._native.in_sync else None
            return top
        return self._top

    def levels(self, side: Side, depth: int) -> list[tuple[Decimal, Decimal]]:
        """The side a market order of `side` takes from, best first; empty while not in sync."""
        if not self.sync.in_sync:
            return []
        levels: list[tuple[Decimal, Decimal]] = self.sync.book.levels_for(side, depth)
        return levels

    # -- the core --------------------------------------------------------------------------------

    def handle(self, event: object) -> bool:
        """Apply one event; True when the top of book changed. Never awaits."""
        if type(event) is ParsedDiff and self._native_feed is not None and (self._diffs + 1) & 15:
            # The native hot path, 15 diffs in 16 (the 16th goes the timed way below): one call
            # checks the state, validates and applies (or buffers, or refuses) the frame's levels
            # and says whether the top's value moved.
            self._diffs += 1
            code = self._native_feed(event)
            if code == APPLIED_CODE:
                return False
            if code == TOP_MOVED_CODE:
                return True
            return self._on_result(native_result(code, self._native.detail), event)
        if type(event) in _DIFF_TYPES:  # a DepthDiff, or the native parser's ParsedDiff
            return self._on_diff(event)
        if isinstance(event, SnapshotReady):
            return self._on_snapshot(event)
        if isinstance(event, StreamStatus):
            if event.kind in ("connected", "disconnected", "stale"):
                return self._restart(f"stream {event.kind} {event.detail}".strip())
            return False
        if isinstance(event, SnapshotFailed):
            log_event(log, "book_snapshot_failed", logging.ERROR, market=self.market_id, error=event.error)
        return False

    def _on_diff(self, diff: Any) -> bool:
        self._diffs += 1
        sample = not (self._diffs & 15)  # observe 1 apply in 16: an observe costs ~1 µs
        t0 = time.perf_counter() if sample else 0.0
        result = self.sync.on_diff(diff)
        if sample and result.outcome is Outcome.APPLIED:
            self._apply_latency(time.perf_counter() - t0)
        return self._on_result(result, diff)

    def _on_result(self, result: SyncResult, diff: Any) -> bool:
        outcome = result.outcome
        if outcome is Outcome.APPLIED:
            return self._refresh_top()
        if outcome is Outcome.BUFFERED:
            if not self._fetching:
                self._fetch()
            return False
        if outcome is Outcome.IGNORED:
            return False
        if outcome is Outcome.REJECTED:  # bad numbers while waiting: counted, skipped, nothing changed
            self.metrics.malformed.inc()
            log_event(log, "book_diff_rejected", logging.WARNING, market=self.market_id, detail=result.detail)
            return False
        return self._lost_sync(result)

    def _on_snapshot(self, ready: SnapshotReady) -> bool:
        if ready.generation != self._generation:
            return False  # fetched for a stream that no longer exists
        self._fetching = False
        result = self.sync.on_snapshot(ready.snapshot)
        if result.outcome is Outcome.SYNCED:
            self._failed_snapshots = 0
            self.metrics.resyncs.inc()
            self.metrics.book_in_sync.set(1)
            log_event(log, "book_synced", market=self.market_id, detail=result.detail,
                      levels=len(self.sync.book))  # fmt: skip
            return self._refresh_top()
        # The snapshot did not line up (too old) or cannot be trusted (crossed, malformed): fetch
        # another, backing off if it keeps happening so a broken exchange is not hammered.
        self._failed_snapshots += 1
        delay = min(self.retry_max_s, 0.05 * 2 ** min(self._failed_snapshots, 10))
        if result.outcome is Outcome.SNAPSHOT_TOO_OLD:
            log_event(log, "book_snapshot_too_old", logging.WARNING, market=self.market_id,
                      detail=result.detail, streak=self._failed_snapshots)  # fmt: skip
            self._fetch(initial_delay=delay)
            return self._refresh_top()
        return self._lost_sync(result, delay=delay)

    def _lost_sync(self, result: SyncResult, delay: float = 0.0) -> bool:
        if result.outcome is Outcome.GAP:
            self.metrics.gaps.inc()
        elif result.outcome is Outcome.INVALID:
            self.metrics.malformed.inc()
        self.metrics.book_in_sync.set(0)
        log_event(log, "book_resync", logging.WARNING, market=self.market_id,
                  reason=result.outcome.value, detail=result.detail)  # fmt: skip
        # BookSync kept the diff that revealed the problem (and any later ones): fetch now.
        self._new_generation()
        self._fetch(initial_delay=delay)
        return self._refresh_top()

    def _restart(self, reason: str) -> bool:
        self.sync.reset()
        self.metrics.book_in_sync.set(0)
        self._new_generation()
        log_event(log, "book_reset", market=self.market_id, reason=reason)
        return self._refresh_top()

    def _refresh_top(self) -> bool:
        """Whether the top's value changed (the native module tracks it without `Decimal`s)."""
        if self._native is not None:
            return bool(self._native.top_moved())
        return self._set_top(self.sync.book.top() if self.sync.in_sync else None)

    def _set_top(self, top: Top | None) -> bool:
        changed = top != self._top
        self._top = top
        return changed

    # -- snapshot fetching (the only async part) --------------------------------------------------

    def _new_generation(self) -> None:
        self._generation += 1
        self._fetching = False
        task = self._task
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
        self._task = None

    def _fetch(self, initial_delay: float = 0.0) -> None:
        self._fetching = True
        self._task = self._spawn(self._fetch_task(self._generation, initial_delay))

    async def _fetch_task(self, generation: int, initial_delay: float) -> None:
        if initial_delay:
            await asyncio.sleep(initial_delay)
        attempt = 0
        while generation == self._generation:
            try:
                snapshot = await self.rest.fetch_depth_snapshot(self.market_id, self.depth_limit)
            except TemporaryError as e:
                self.metrics.rest_errors.labels(type(e).__name__).inc()
                window = min(self.retry_max_s, self.retry_base_s * 2.0 ** min(attempt, 20))
                wait = max(e.retry_after or 0.0, window / 2 + random.random() * window / 2)
                attempt += 1
                log_event(log, "book_snapshot_retry", logging.WARNING, market=self.market_id,
                          error=str(e)[:300], wait_s=round(wait, 3), attempt=attempt)  # fmt: skip
                await asyncio.sleep(wait)
                continue
            except PermanentError as e:
                self.metrics.rest_errors.labels(type(e).__name__).inc()
                self.post(SnapshotFailed(self.market_id, generation, str(e)[:500]))
                await asyncio.sleep(self.permanent_retry_s)
                continue
            except Exception as e:  # a bug: report, keep the bot alive, retry slowly
                self.metrics.rest_errors.labels(type(e).__name__).inc()
                log.exception("snapshot fetch failed", extra={"event": "book_snapshot_error"})
                self.post(SnapshotFailed(self.market_id, generation, repr(e)[:500]))
                await asyncio.sleep(self.permanent_retry_s)
                continue
            if generation == self._generation:
                self.post(SnapshotReady(self.market_id, generation, snapshot))
            return

    def _default_spawn(self, coro: Coroutine[Any, Any, None]) -> object:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
