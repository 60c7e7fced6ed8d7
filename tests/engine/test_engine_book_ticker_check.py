"""The engine's live cross-check of the book against @bookTicker, on real recorded Binance sessions:
the real parser, book keeper and engine, fed frame by frame in recorded order, with the recorded REST
snapshot served when it was taken."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal

import pytest

from tests.feed.captures import CAPTURES, load, symbols
from tests.feed.test_capture_replay import EXPECTED_TICKER_MATCHES
from tradefleet.adapters.binance import BinanceSpot
from tradefleet.config import BotConfig
from tradefleet.domain.market import BookTicker, DepthSnapshot
from tradefleet.domain.models import Candle, PriceSample, Signal
from tradefleet.engine.book_keeper import BookKeeper
from tradefleet.engine.pipeline import BotEngine
from tradefleet.metrics import BotMetrics


class RecordedRest:
    """Serves each symbol's recorded REST snapshot once the replay reaches the moment it was taken."""

    def __init__(self) -> None:
        self.snapshots: dict[str, DepthSnapshot] = {}
        self.released: dict[str, asyncio.Event] = {}

    def release(self, snapshot: DepthSnapshot) -> None:
        self.snapshots[snapshot.symbol] = snapshot
        self.released.setdefault(snapshot.symbol, asyncio.Event()).set()

    async def fetch_depth_snapshot(self, market_id: str, limit: int) -> DepthSnapshot:
        await self.released.setdefault(market_id, asyncio.Event()).wait()
        return self.snapshots[market_id]

    async def fetch_candles(self, *a: object) -> list[Candle]:
        return []


class Sink:
    def __init__(self) -> None:
        self.prices: list[PriceSample] = []

    def enqueue_price(self, sample: PriceSample) -> None:
        self.prices.append(sample)

    def enqueue_candle(self, candle: Candle) -> None:
        pass

    async def record_signal(self, signal: Signal) -> bool:
        return True

    def defer_market_data(self, seconds: float) -> None:
        pass


async def replay(capture: str, symbol: str, tamper: bool = False) -> BotMetrics:
    metrics, rest, sink = BotMetrics(), RecordedRest(), Sink()
    parser = BinanceSpot()
    engine: BotEngine | None = None

    def post(event: object) -> None:
        assert engine is not None
        engine.handle(event)

    book = BookKeeper(market_id=symbol, rest=rest, depth_limit=1000, metrics=metrics, post=post)  # type: ignore[arg-type]
    engine = BotEngine(BotConfig(), metrics, book=book, rest=rest, sink=sink)  # type: ignore[arg-type]
    for step in load(capture):
        if step.snapshot is not None:
            if step.snapshot.symbol == symbol:
                rest.release(step.snapshot)
                for _ in range(20):  # let the fetch task return and post the snapshot
                    await asyncio.sleep(0)
            continue
        assert step.frame is not None
        event = parser.parse(step.frame)
        if getattr(event, "symbol", None) != symbol:
            continue
        if tamper and isinstance(event, BookTicker):
            event = dataclasses.replace(event, bid=str(Decimal(event.bid) - Decimal("0.0001")))
        engine.handle(event)
    assert book.in_sync
    await engine.close()
    return metrics


def checks(metrics: BotMetrics, result: str) -> float:
    return metrics.registry.get_sample_value("tradefleet_book_ticker_checks_total", {"result": result}) or 0.0


@pytest.mark.parametrize("capture", CAPTURES)
async def test_every_aligned_book_ticker_matches_the_engines_book(capture: str) -> None:
    matched = 0.0
    for symbol in symbols(capture):
        metrics = await replay(capture, symbol)
        assert checks(metrics, "mismatch") == 0
        matched += checks(metrics, "match")
    assert matched == EXPECTED_TICKER_MATCHES[capture]


async def test_tickers_that_disagree_with_the_book_are_counted_as_mismatches() -> None:
    mismatched = 0.0
    for symbol in symbols("2021-10-12"):
        metrics = await replay("2021-10-12", symbol, tamper=True)
        assert checks(metrics, "match") == 0
        mismatched += checks(metrics, "mismatch")
    assert mismatched == EXPECTED_TICKER_MATCHES["2021-10-12"]
