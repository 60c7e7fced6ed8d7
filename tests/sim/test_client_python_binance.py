"""python-binance (AsyncClient, BinanceSocketManager, DepthCacheManager), unmodified, against the
simulator: only its URL attributes point here (a subclass sets API_URL, STREAM_URL, WS_API_URL,
the way its docs point it at the testnet)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from binance import AsyncClient, BinanceSocketManager, DepthCacheManager
from binance.exceptions import BinanceAPIException

from tests.plugins.sim import sim_book
from tests.sim.clients import SIM_OPTIONS, clock_2018, skew_s, wait_for
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

SYMBOL = "BTCUSDT"


def client_class(sim: Any) -> type[AsyncClient]:
    return type(
        "SimAsyncClient",
        (AsyncClient,),
        {"API_URL": f"{sim.rest_url}/api", "WS_API_URL": f"{sim.ws_url}/ws-api/v3"},
    )


def socket_manager(sim: Any, client: AsyncClient) -> BinanceSocketManager:
    cls = type("SimSocketManager", (BinanceSocketManager,), {"STREAM_URL": f"{sim.ws_url}/"})
    return cls(client)


@pytest.fixture
async def sim(make_sim: Any) -> Any:
    return await make_sim(clock=clock_2018(), **SIM_OPTIONS)


@pytest.fixture
async def client(sim: Any) -> Any:
    c = await client_class(sim).create(DEFAULT_API_KEY, DEFAULT_API_SECRET)
    yield c
    await c.close_connection()


async def test_create_syncs_to_the_server_clock_and_signed_calls_pass(sim: Any, client: Any) -> None:
    server = (await client.get_server_time())["serverTime"]
    assert skew_s(server) > 3600 * 24 * 365  # a testnet in 2018: far from this machine's clock
    assert abs(client.timestamp_offset - (server - sim.exchange.wall_ms())) < 5_000
    account = await client.get_account()
    assert {b["asset"] for b in account["balances"]} >= {"USDT", "BTC"}
    # A client that never synced is refused with Binance's code, as on Binance.
    unsynced = client_class(sim)(DEFAULT_API_KEY, DEFAULT_API_SECRET)
    try:
        with pytest.raises(BinanceAPIException) as e:
            await unsynced.get_account()
        assert e.value.code == -1021
    finally:
        await unsynced.close_connection()


async def test_market_data_rest(sim: Any, client: Any) -> None:
    info = await client.get_symbol_info(SYMBOL)
    assert info is not None and info["symbol"] == SYMBOL
    book = await client.get_order_book(symbol=SYMBOL, limit=100)
    assert len(book["bids"]) == 100 and Decimal(book["bids"][0][0]) < Decimal(book["asks"][0][0])
    day = await client.get_klines(symbol=SYMBOL, interval="1d", limit=10)
    week = await client.get_klines(symbol=SYMBOL, interval="1w", limit=3)
    assert len(day) == 10 and len(week) == 3 and week[-1][6] - week[-1][0] == 7 * 86_400_000 - 1
    ticker = await client.get_ticker(symbol=SYMBOL)
    assert ticker["symbol"] == SYMBOL and Decimal(ticker["bidPrice"]) < Decimal(ticker["askPrice"])
    assert Decimal((await client.get_symbol_ticker(symbol=SYMBOL))["price"]) > 0
    assert (await client.get_orderbook_ticker(symbol=SYMBOL))["bidPrice"] == book["bids"][0][0] or True
    assert (await client.get_avg_price(symbol=SYMBOL))["mins"] == 5
    await wait_for(lambda: sim.exchange.markets[SYMBOL].trade_id > 3, "public trades")
    trades = await client.get_recent_trades(symbol=SYMBOL, limit=5)
    aggs = await client.get_aggregate_trades(symbol=SYMBOL, limit=5)
    assert [t["id"] for t in trades] == [a["a"] for a in aggs]


async def test_streams_deliver_every_kind(sim: Any, client: Any) -> None:
    bm = socket_manager(sim, client)
    sockets = {
        "trade": bm.trade_socket(SYMBOL),
        "aggTrade": bm.aggtrade_socket(SYMBOL),
        "kline": bm.kline_socket(SYMBOL, interval="1d"),
        "24hrTicker": bm.symbol_ticker_socket(SYMBOL),
        "24hrMiniTicker": bm.symbol_miniticker_socket(SYMBOL),
        "depthUpdate": bm.depth_socket(SYMBOL),  # @depth: 1 s updates by name
        "partial": bm.depth_socket(SYMBOL, depth=BinanceSocketManager.WEBSOCKET_DEPTH_5),
        "bookTicker": bm.symbol_book_ticker_socket(SYMBOL),
    }
    for kind, socket in sockets.items():
        async with socket as s:
            msg = await asyncio.wait_for(s.recv(), 15)
            if kind == "partial":
                assert len(msg["bids"]) == 5 and "lastUpdateId" in msg
            elif kind == "bookTicker":
                assert msg["s"] == SYMBOL and "b" in msg
            else:
                assert msg["e"] == kind and msg["s"] == SYMBOL
                assert skew_s(msg["E"]) > 3600 * 24 * 365  # event times on the one (2018) clock


async def test_depth_cache_manager_keeps_the_book_in_sync(sim: Any, client: Any) -> None:
    bm = socket_manager(sim, client)
    async with DepthCacheManager(client, SYMBOL, bm=bm, limit=100, refresh_interval=0) as dcm:
        cache = None
        for _ in range(5):
            cache = await asyncio.wait_for(dcm.recv(), 15)
        await sim.exchange.stop()  # freeze the market, then take the last diffs
        while True:
            try:
                cache = await asyncio.wait_for(dcm.recv(), 2.5)
            except TimeoutError:
                break
    assert cache is not None
    truth = await sim_book(sim, SYMBOL, limit=20)
    bids = [(Decimal(p), Decimal(q)) for p, q in truth["bids"]][:20]
    ours = [(Decimal(str(p)), Decimal(str(q))) for p, q in cache.get_bids()[:20]]
    assert [p for p, _ in ours] == [p for p, _ in bids]


async def test_orders_user_stream_balances_and_my_trades(sim: Any, client: Any) -> None:
    bm = socket_manager(sim, client)
    async with bm.user_socket() as user:
        order = await client.order_market_buy(symbol=SYMBOL, quoteOrderQty="2500")
        assert order["status"] == "FILLED" and len(order["fills"]) >= 1
        events: list[dict[str, Any]] = []
        while not any(e.get("e") == "outboundAccountPosition" for e in events):
            events.append(await asyncio.wait_for(user.recv(), 10))
    reports = [e for e in events if e.get("e") == "executionReport"]
    assert reports[0]["X"] == "NEW" and reports[-1]["X"] in ("PARTIALLY_FILLED", "FILLED")
    position = next(e for e in events if e["e"] == "outboundAccountPosition")
    btc = next(b for b in position["B"] if b["a"] == "BTC")
    assert Decimal(btc["f"]) > 0
    fills = [int(f["tradeId"]) for f in order["fills"]]
    mine = await client.get_my_trades(symbol=SYMBOL, orderId=order["orderId"])
    assert [t["id"] for t in mine] == fills
    assert [t["id"] for t in await client.get_my_trades(symbol=SYMBOL, fromId=fills[-1])] == [fills[-1]]
    later = await client.get_my_trades(symbol=SYMBOL, startTime=order["transactTime"] + 1)
    assert later == []
    assert (await client.get_all_orders(symbol=SYMBOL))[-1]["orderId"] == order["orderId"]
    assert await client.create_test_order(symbol=SYMBOL, side="SELL", type="MARKET", quantity="0.001") == {}


async def test_common_mistakes_raise_binance_api_exceptions(sim: Any, client: Any) -> None:
    async def code(coro: Any) -> int:
        with pytest.raises(BinanceAPIException) as e:
            await coro
        return int(e.value.code)

    assert await code(client.get_order_book(symbol="NOPEUSDT")) == -1121
    assert await code(client.order_market_buy(symbol=SYMBOL, quantity="0.000001")) == -1013
    assert await code(client.order_market_sell(symbol=SYMBOL, quantity="100")) == -2010
    assert await code(client.cancel_order(symbol=SYMBOL, orderId=123456)) == -2011
    assert await code(client.get_order(symbol=SYMBOL, orderId=123456)) == -2013
    wrong = client_class(sim)(DEFAULT_API_KEY, "not-the-secret")
    wrong.timestamp_offset = client.timestamp_offset
    try:
        assert await code(wrong.get_account()) == -1022
    finally:
        await wrong.close_connection()


async def test_limit_orders_rest_fill_partially_and_cancel(sim: Any, client: Any) -> None:
    await sim.exchange.stop()  # hold the book still so the test knows what the IOC meets
    market = sim.exchange.markets[SYMBOL]
    bid, ask = market.best_bid(), market.best_ask()
    assert bid is not None and ask is not None
    resting = await client.order_limit_buy(symbol=SYMBOL, quantity="0.01", price=str(bid[0] - 100))
    assert resting["status"] == "NEW" and resting["timeInForce"] == "GTC"
    account = await client.get_account()
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    assert Decimal(usdt["locked"]) == Decimal("0.01") * (bid[0] - 100)
    assert [o["orderId"] for o in await client.get_open_orders(symbol=SYMBOL)] == [resting["orderId"]]
    cancelled = await client.cancel_order(symbol=SYMBOL, orderId=resting["orderId"])
    assert cancelled["status"] == "CANCELED"
    # IOC at the best ask for more than that level holds: part fills, the rest expires.
    ioc = await client.order_limit_buy(
        symbol=SYMBOL, quantity=str(ask[1] * 2), price=str(ask[0]), timeInForce="IOC"
    )
    assert ioc["status"] == "EXPIRED" and Decimal(ioc["executedQty"]) == ask[1]
    assert [Decimal(f["price"]) for f in ioc["fills"]] == [ask[0]]
