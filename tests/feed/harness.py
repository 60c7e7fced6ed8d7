"""A bot's market-data path, wired for tests: real Feed (websocket) + real BookKeeper (pure or native
book) + real BinanceMarketRest, all pointed at the simulator, with a probe that captures our book at the exact
update id the simulator reports for its TRUE book."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
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
        self._target: int | None = None
        self._captured: BookDict | None = None

    def _handle(self, event: MarketEvent | object) -> None:
        if isinstance(event, StreamStatus):
            self.statuses.append(event)
        self.keeper.handle(event)
        k = self.keeper
        if self._target is not None and k.in_sync and k.last_update_id == self._target:
            self._captured = k.sync.book.as_dict()
            assert not k.sync.book.crossed()
        if type(event) in DIFF_TYPES and k.in_sync:
            assert k.top() is not None

    def counter(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    async def wait_in_sync(self, what: str = "book in sync") -> None:
        await wait_until(lambda: self.keeper.in_sync, 30, what)

    async def assert_matches_true_book(self) -> int:
        """Fetch the simulator's true book at id X and wait until our book is exactly at X; the two
        must be equal level for level. Retries if our book had already moved past X."""
        for _ in range(50):
            true = await sim_book(self.sim, "BTCUSDT")
            target = int(true["lastUpdateId"])
            self._target, self._captured = target, None
            if self.keeper.in_sync and self.keeper.last_update_id == target:
                self._captured = self.keeper.sync.book.as_dict()
            elif self.keeper.in_sync and self.keeper.last_update_id > target:
                continue
            with contextlib.suppress(AssertionError):
                await wait_until(lambda: self._captured is not None, 10, f"our book at update id {target}")
            if self._captured is None:
                continue
            expected = {side: {Decimal(p): Decimal(q) for p, q in true[side]} for side in ("bids", "asks")}
            assert self._captured == expected, f"book differs from the simulator's at update id {target}"
            self._target = None
            return target
        raise AssertionError("never caught our book at the simulator's update id")


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
