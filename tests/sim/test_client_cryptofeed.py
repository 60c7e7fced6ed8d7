"""cryptofeed's Binance feed, unmodified, against the simulator: only its endpoint configuration
(the class's `websocket_endpoints` / `rest_endpoints`) points here. It refuses any websocket
address but `wss://`, so the simulator serves TLS too (a certificate made for this test, trusted
through `SSL_CERT_FILE`). It loads symbols and its listenKey with blocking HTTP while it starts, so
the simulator runs on its own thread's loop.

Shown: symbol load, a local L2 book kept in sync (snapshot + `@depth@1000ms` diffs, checked against
the simulator's true book), trades (`@aggTrade`), ticker (`@bookTicker`), candles (`@kline_1d`),
and, on an authenticated feed, balances and order updates over the REST listenKey user stream."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import BALANCES, CANDLES, L2_BOOK, ORDER_INFO, TICKER, TRADES
from cryptofeed.exchanges import Binance

from tests.sim.clients import SIM_OPTIONS, ThreadedSim, wait_for
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET
from tradefleet_sim.clock import WallClock
from tradefleet_sim.tls import self_signed

PAIR = "BTC-USDT"


@pytest.fixture
def tsim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    files = self_signed(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(files.cert))
    sim = ThreadedSim(clock=WallClock(), tls=files, **SIM_OPTIONS)
    yield sim
    sim.stop()


def feed_class(sim: Any) -> type[Binance]:
    routes = Routes(
        "/api/v3/exchangeInfo",
        l2book="/api/v3/depth?symbol={}&limit={}",
        authentication="/api/v3/userDataStream",
    )
    return type(
        "SimBinance",
        (Binance,),
        {
            "websocket_endpoints": [WebsocketEndpoint(sim.server.wss_url)],
            "rest_endpoints": [RestEndpoint(sim.server.rest_url, routes=routes)],
        },
    )


async def _get(url: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return await r.json()


async def test_public_feed_book_trades_ticker_candles(tsim: Any) -> None:
    seen: dict[str, list[Any]] = {"book": [], "trades": [], "ticker": [], "candles": []}

    async def on(kind: str, obj: Any, _ts: float) -> None:
        seen[kind].append(obj)

    feed = feed_class(tsim)(
        symbols=[PAIR],
        channels=[L2_BOOK, TRADES, TICKER, CANDLES],
        depth_interval="1000ms",
        candle_interval="1d",
        callbacks={
            L2_BOOK: lambda o, t: on("book", o, t),
            TRADES: lambda o, t: on("trades", o, t),
            TICKER: lambda o, t: on("ticker", o, t),
            CANDLES: lambda o, t: on("candles", o, t),
        },
    )
    feed.start(asyncio.get_running_loop())
    try:
        await wait_for(lambda: all(len(v) >= 2 for v in seen.values()), "every channel", timeout=30)
        # Freeze the market, let the last diff arrive, then the local book must equal the truth.
        # Freeze the market; once the last diffs arrive, the local book must equal the truth.
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(tsim.server.exchange.stop(), tsim.loop))
        truth = await _get(f"{tsim.server.rest_url}/sim/book?symbol=BTCUSDT&limit=50")
        bids = [(Decimal(p), Decimal(q)) for p, q in truth["bids"]]

        def local_bids() -> list[tuple[Decimal, Decimal]]:
            book = feed._l2_book[PAIR].book
            return [(Decimal(p), Decimal(q)) for p, q in book.bids.to_list()[:50]]

        await wait_for(lambda: local_bids() == bids, "local book equal to the true book", timeout=20)
        assert seen["trades"][-1].symbol == PAIR and seen["candles"][-1].interval == "1d"
    finally:
        await feed.shutdown()


async def test_authenticated_feed_balances_and_orders_over_the_listen_key(tsim: Any) -> None:
    updates: dict[str, list[Any]] = {"balances": [], "orders": []}

    async def on_balance(b: Any, _ts: float) -> None:
        updates["balances"].append(b)

    async def on_order(o: Any, _ts: float) -> None:
        updates["orders"].append(o)

    feed = feed_class(tsim)(
        channels=[BALANCES, ORDER_INFO],
        symbols=[PAIR],
        config={"binance": {"key_id": DEFAULT_API_KEY, "key_secret": DEFAULT_API_SECRET}},
        callbacks={BALANCES: on_balance, ORDER_INFO: on_order},
    )
    feed.start(asyncio.get_running_loop())
    try:
        exchange = tsim.server.exchange
        await wait_for(
            lambda: any(exchange.hub.has_subscribers(k) for k in list(exchange.listen_keys)), "listenKey"
        )
        from binance.spot import Spot  # any signed client places the order; the feed only listens

        spot = Spot(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, base_url=tsim.server.rest_url)
        await asyncio.to_thread(spot.new_order, "BTCUSDT", "BUY", "MARKET", quoteOrderQty="500")
        await wait_for(lambda: updates["balances"] and updates["orders"], "balances and orders", timeout=15)
        assert {b.currency for b in updates["balances"]} >= {"BTC"}
        assert updates["orders"][-1].symbol == PAIR
    finally:
        await feed.shutdown()
