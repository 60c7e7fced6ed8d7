"""A bot's market-data path, wired for tests: real Feed (websocket) + real BookKeeper (pure or native
book) + real BinanceMarketRest, all pointed at the simulator, with a probe that captures our book at the exact
update id the simulator reports for its TRUE book."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from functools import partial
from typing import Any

from tests.feed.wsserver import wait_until
from tests.plugins.sim import sim_book
from tradefleet.adapters.binance import BinanceSpot
from tradefleet.adapters.feed import Feed
from tradefleet.adapters.market_rest import BinanceMarketRest
from tradefleet.domain.market import DepthDiff, MarketEvent, StreamStatus
from tradefleet.domain.native_book import ParsedDiff
from tradefleet.engine.book_keeper import BookKeeper
from tradefleet.metrics import BotMetrics
from tradefleet_sim.server import SimServer

BookDict = dict[str, dict[Decimal, Decimal]]
DIFF_TYPES = (DepthDiff, ParsedDiff)
HISTORY = 256  # update ids of our book kept while comparing: 5 s of the fault matrix's 50 diffs/s


class MarketPath:
    def __init__(self, sim: SimServer, metrics: BotMetrics, *, native: bool = False, **feed_kw: Any) -> None:
        self.sim = sim
        self.metrics = metrics
        self.rest = BinanceMarketRest(rest_url=sim.rest_url)
        self.keeper = BookKeeper(market_id="BTCUSDT", rest=self.rest, depth_limit=1000, metrics=metrics,
                                 post=self._handle, retry_base_s=0.1, retry_max_s=2.0,
                                 native=native)  # fmt: skip
        adapter = BinanceSpot(native=native)
        feed_kw.setdefault("stale_after_s", 10.0)
        feed_kw.setdefault("reconnect_max_s", 1.0)
        feed_kw.setdefault("reconnect_base_s", 0.1)
        self.feed = Feed(adapter, adapter.stream_url(sim.ws_url, "BTCUSDT", "1m"), self._handle, metrics,
                         **feed_kw)  # fmt: skip
        self.statuses: list[StreamStatus] = []
        # While `assert_matches_true_book` runs: our book at each update id it reached, newest last.
        self._history: dict[int, BookDict] | None = None

    def _handle(self, event: MarketEvent | object) -> None:
        if isinstance(event, StreamStatus):
            self.statuses.append(event)
        self.keeper.handle(event)
        k = self.keeper
        self._record()
        if type(event) in DIFF_TYPES and k.in_sync:
            assert k.top() is not None

    def _record(self) -> None:
        k, history = self.keeper, self._history
        if history is not None and k.in_sync and k.last_update_id not in history:
            history[k.last_update_id] = k.sync.book.as_dict()
            assert not k.sync.book.crossed()
            while len(history) > HISTORY:
                del history[next(iter(history))]

    def _reached(self, target: int) -> bool:
        """Our book has been at `target`, or is past it (then a resync jumped over it)."""
        history, k = self._history or {}, self.keeper
        return (
            target in history or (k.in_sync and k.last_update_id > target) or min(history, default=0) > target
        )

    def counter(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    async def wait_in_sync(self, what: str = "book in sync") -> None:
        await wait_until(lambda: self.keeper.in_sync, 30, what)

    async def assert_matches_true_book(self) -> int:
        """Fetch the simulator's true book at update id X and require ours, at X, to equal it level
        for level. Our book is recorded at every id it reaches from before the fetch on, so the diffs
        that arrive while the answer is on its way (the stream does not wait for the test) cannot
        make it miss X however slowly the machine runs it; if ours has not reached X yet, wait."""
        history: dict[int, BookDict] = {}
        self._history = history
        self._record()  # where our book is now
        try:
            for _ in range(5):
                true = await sim_book(self.sim, "BTCUSDT")
                target = int(true["lastUpdateId"])
                await wait_until(partial(self._reached, target), 30, f"our book at update id {target}")
                ours = history.get(target)
                if ours is None:  # a resync jumped over X (or ours was past it before recording began)
                    continue
                expected = {
                    side: {Decimal(p): Decimal(q) for p, q in true[side]} for side in ("bids", "asks")
                }
                assert ours == expected, f"book differs from the simulator's at update id {target}"
                return target
            ids = f"{min(history)}-{max(history)}" if history else "none, never in sync"
            raise AssertionError(
                f"our book never stopped at the simulator's update id in 5 tries (ours: {ids})"
            )
        finally:
            self._history = None


@contextlib.asynccontextmanager
async def market_path(
    sim: SimServer, metrics: BotMetrics, *, native: bool = False, **feed_kw: Any
) -> AsyncIterator[MarketPath]:
    path = MarketPath(sim, metrics, native=native, **feed_kw)
    task = asyncio.create_task(path.feed.run())
    try:
        yield path
    finally:
        await path.feed.stop()
        await asyncio.wait_for(task, 20)
        path.keeper._new_generation()  # cancel a snapshot fetch still in flight
        await path.rest.close()
