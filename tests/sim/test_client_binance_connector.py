"""binance-connector (Binance's own Python connector: `binance.spot.Spot`, the websocket stream
client), unmodified, against the simulator; only `base_url` and `stream_url` point here. Its REST
client is synchronous (requests), so it runs in a thread next to the simulator's event loop; its
websocket client runs its own thread and hands frames to a queue."""

from __future__ import annotations

import asyncio
import json
import queue
import time
from decimal import Decimal
from typing import Any

import pytest
from binance.error import ClientError
from binance.spot import Spot
from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

from tests.sim.clients import SIM_OPTIONS, clock_2018, wait_for
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET
from tradefleet_sim.clock import WallClock

SYMBOL = "BTCUSDT"


@pytest.fixture
async def sim(make_sim: Any) -> Any:
    # The connector stamps signed requests with the local clock and has no clock sync: a testnet
    # on this machine's clock is what it can trade with (the 2018 one refuses it: see below).
    return await make_sim(clock=WallClock(), **SIM_OPTIONS)


def spot(sim: Any, secret: str = DEFAULT_API_SECRET) -> Spot:
    return Spot(api_key=DEFAULT_API_KEY, api_secret=secret, base_url=sim.rest_url)


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


class Frames:
    """The connector's stream client (it connects in its constructor, so it is built in a thread:
    the simulator shares this test's event loop) and the frames it received."""

    def __init__(self) -> None:
        self.q: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ws: Any = None

    @classmethod
    async def connect(cls, sim: Any) -> Frames:
        frames = cls()
        frames.ws = await asyncio.to_thread(
            SpotWebsocketStreamClient, stream_url=sim.ws_url, on_message=frames._on_message
        )
        return frames

    def _on_message(self, _ws: Any, text: str) -> None:
        self.q.put(json.loads(text))

    async def until(self, match: Any, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await asyncio.to_thread(self.q.get, True, 0.5)
            except queue.Empty:
                continue
            if match(msg):
                return msg
        raise AssertionError("no matching frame")

    async def stop(self) -> None:
        await asyncio.to_thread(self.ws.stop)


async def test_market_data_rest(sim: Any) -> None:
    c = spot(sim)
    assert abs((await call(c.time))["serverTime"] - sim.exchange.now_ms()) < 5_000
    info = await call(c.exchange_info, symbol=SYMBOL)
    assert info["symbols"][0]["symbol"] == SYMBOL
    book = await call(c.depth, SYMBOL, limit=5)
    assert len(book["asks"]) == 5
    assert len(await call(c.klines, SYMBOL, "3d", limit=4)) == 4
    assert (await call(c.ticker_24hr, SYMBOL))["symbol"] == SYMBOL
    assert (await call(c.ticker_24hr, symbols=[SYMBOL], type="MINI"))[0]["symbol"] == SYMBOL
    assert Decimal((await call(c.ticker_price, SYMBOL))["price"]) > 0
    assert (await call(c.book_ticker, SYMBOL))["symbol"] == SYMBOL
    assert (await call(c.rolling_window_ticker, SYMBOL, windowSize="4h"))["symbol"] == SYMBOL
    assert (await call(c.avg_price, SYMBOL))["mins"] == 5
    await call(c.trades, SYMBOL, limit=3)
    await call(c.agg_trades, SYMBOL, limit=3)


async def test_streams_with_default_names(sim: Any) -> None:
    frames = await Frames.connect(sim)
    try:
        kinds = {
            "depthUpdate": lambda: frames.ws.diff_book_depth(SYMBOL),  # @depth@1000ms by default
            "24hrTicker": lambda: frames.ws.ticker(SYMBOL),
            "24hrMiniTicker": lambda: frames.ws.mini_ticker(SYMBOL),
            "trade": lambda: frames.ws.trade(SYMBOL),
            "aggTrade": lambda: frames.ws.agg_trade(SYMBOL),
            "kline": lambda: frames.ws.kline(SYMBOL, "1d"),
            "1hTicker": lambda: frames.ws.rolling_window_ticker(SYMBOL, "1h"),
        }
        for subscribe in kinds.values():
            await asyncio.to_thread(subscribe)
            await asyncio.sleep(0.4)  # Binance allows 5 incoming messages a second
        for kind in kinds:
            msg = await frames.until(lambda m, k=kind: m.get("e") == k)
            assert msg["s"] == SYMBOL
    finally:
        await frames.stop()


async def test_orders_listen_key_user_stream_and_my_trades(sim: Any) -> None:
    c = spot(sim)
    listen_key = (await call(c.new_listen_key))["listenKey"]
    assert (await call(c.new_listen_key))["listenKey"] == listen_key  # one per account, as on Binance
    await call(c.renew_listen_key, listen_key)
    frames = await Frames.connect(sim)
    try:
        await asyncio.to_thread(frames.ws.user_data, listen_key)
        await wait_for(lambda: sim.exchange.hub.has_subscribers(listen_key), "listenKey subscribed")
        order = await call(c.new_order, SYMBOL, "BUY", "MARKET", quoteOrderQty="1000")
        report = await frames.until(lambda m: m.get("e") == "executionReport" and m["x"] == "TRADE")
        position = await frames.until(lambda m: m.get("e") == "outboundAccountPosition")
        assert report["i"] == order["orderId"] and int(report["t"]) == order["fills"][0]["tradeId"]
        assert {b["a"] for b in position["B"]} == {"BTC", "USDT"}
        await call(c.close_listen_key, listen_key)
        assert (await frames.until(lambda m: m.get("e") == "listenKeyExpired"))["listenKey"] == listen_key
    finally:
        await frames.stop()
    trades = await call(c.my_trades, SYMBOL, orderId=order["orderId"])
    assert [t["id"] for t in trades] == [f["tradeId"] for f in order["fills"]]
    assert await call(c.my_trades, SYMBOL, fromId=trades[-1]["id"] + 1) == []
    limits = await call(c.get_order_rate_limit)
    assert limits[0]["count"] >= 1
    assert (await call(c.account))["balances"]


async def test_common_mistakes_raise_client_error(sim: Any, make_sim: Any) -> None:
    async def code(fn: Any, *args: Any, **kwargs: Any) -> int:
        with pytest.raises(ClientError) as e:
            await call(fn, *args, **kwargs)
        return int(e.value.error_code)

    c = spot(sim)
    assert await code(c.depth, "NOPEUSDT") == -1121
    assert await code(c.new_order, SYMBOL, "BUY", "MARKET", quantity="0.0000001") == -1013
    assert await code(c.cancel_order, SYMBOL, orderId=99999) == -2011
    assert await code(c.get_order, SYMBOL, orderId=99999) == -2013
    assert await code(spot(sim, "wrong-secret").account) == -1022
    assert await code(c.renew_listen_key, "no-such-key") == -1125
    testnet_2018 = await make_sim(clock=clock_2018(), **SIM_OPTIONS)
    assert await code(spot(testnet_2018).account) == -1021  # a local clock far from the server's


async def test_limit_order_rests_then_is_cancelled_and_cancel_all(sim: Any) -> None:
    c = spot(sim)
    bid = sim.exchange.markets[SYMBOL].best_bid()
    assert bid is not None
    price = str(bid[0] - 200)
    first = await call(c.new_order, SYMBOL, "BUY", "LIMIT", quantity="0.01", price=price, timeInForce="GTC")
    second = await call(c.new_order, SYMBOL, "BUY", "LIMIT_MAKER", quantity="0.01", price=price)
    assert first["status"] == second["status"] == "NEW"
    assert (await call(c.cancel_order, SYMBOL, orderId=first["orderId"]))["status"] == "CANCELED"
    rest = await call(c.cancel_open_orders, SYMBOL)
    assert [o["orderId"] for o in rest] == [second["orderId"]]
    assert await call(c.get_open_orders, SYMBOL) == []
