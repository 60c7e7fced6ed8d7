"""Resting LIMIT orders (GTC/IOC/FOK) and LIMIT_MAKER through unmodified ccxt, on a known book with
the producers stopped, so the market's flow is driven by the test (`market.flow_trade`, `apply`):
partial fills, maker/taker, locked balances, cancel, and fill ids equal to the public trade ids."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt
import pytest
from bench.ccxt_client import make_binance

from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

SYMBOL = "BTC/USDT"
ASK0, BID0 = Decimal("50000.00"), Decimal("49999.00")


@pytest.fixture
async def sim(make_sim: Any) -> Any:
    server = await make_sim(klines=None)
    await server.exchange.stop()
    market = server.exchange.markets["BTCUSDT"]
    asks = [(ASK0 + i, Decimal("0.01")) for i in range(50)]
    bids = [(BID0 - i, Decimal("0.01")) for i in range(50)]
    market.seed(bids, asks, market.update_id + 1)
    return server


@pytest.fixture
async def ex(sim: Any) -> Any:
    client = make_binance(rest_url=sim.rest_url, api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET)
    client.options["fetchMargins"] = False
    await client.load_markets()
    yield client
    await client.close()


async def test_gtc_rests_locks_funds_and_fills_partially_from_the_flow(sim: Any, ex: Any) -> None:
    market = sim.exchange.markets["BTCUSDT"]
    order = await ex.create_order(SYMBOL, "limit", "buy", 0.05, 49999.50)
    assert order["status"] == "open" and order["filled"] == 0
    assert (await ex.fetch_balance())["used"]["USDT"] == pytest.approx(0.05 * 49999.50)
    market.flow_trade(Decimal("49999.00"), Decimal("0.02"), buyer_is_maker=True)  # a seller hits bids
    part = await ex.fetch_order(order["id"], SYMBOL)
    assert (
        part["status"] == "open" and part["filled"] == 0.02 and part["info"]["status"] == "PARTIALLY_FILLED"
    )
    market.flow_trade(Decimal("49999.00"), Decimal("0.10"), buyer_is_maker=True)
    done = await ex.fetch_order(order["id"], SYMBOL)
    assert done["status"] == "closed" and done["filled"] == 0.05 and done["average"] == 49999.50
    trades = await ex.fetch_my_trades(SYMBOL, params={"orderId": order["id"]})
    assert [t["amount"] for t in trades] == [0.02, 0.03] and {t["takerOrMaker"] for t in trades} == {"maker"}
    public = [t.id for t in market.tape.trades]
    assert [int(t["id"]) for t in trades] == public[:2]  # the user's fills are the public trades
    assert public[2:] and market.tape.trades[2].qty == Decimal("0.07")  # the rest reached the book
    balance = await ex.fetch_balance()
    assert balance["used"]["USDT"] == 0 and balance["free"]["BTC"] == pytest.approx(0.05 * 0.999)


async def test_crossing_limit_takes_up_to_its_price_then_rests(sim: Any, ex: Any) -> None:
    order = await ex.create_order(SYMBOL, "limit", "buy", 0.05, 50001.00)  # asks 50000, 50001 cross
    assert order["filled"] == 0.02 and order["status"] == "open"
    assert [f["price"] for f in order["trades"]] == [50000.0, 50001.0]
    assert {t["takerOrMaker"] for t in await ex.fetch_my_trades(SYMBOL)} == {"taker"}
    cancelled = await ex.cancel_order(order["id"], SYMBOL)
    assert cancelled["status"] == "canceled" and cancelled["filled"] == 0.02
    assert (await ex.fetch_balance())["used"]["USDT"] == 0


async def test_ioc_fok_and_limit_maker(sim: Any, ex: Any) -> None:
    ioc = await ex.create_order(SYMBOL, "limit", "buy", 0.05, 50000.00, {"timeInForce": "IOC"})
    assert ioc["info"]["status"] == "EXPIRED" and ioc["filled"] == 0.01
    fok = await ex.create_order(SYMBOL, "limit", "buy", 0.05, 50002.00, {"timeInForce": "FOK"})
    assert fok["info"]["status"] == "EXPIRED" and fok["filled"] == 0  # only 0.02 up to that price
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await ex.create_order(SYMBOL, "limit", "buy", 0.01, 50010.00, {"postOnly": True})
    maker = (
        await ex.create_order(SYMBOL, "limit", "sell", 0.0, 50100.00, {"postOnly": True}) if False else None
    )
    assert maker is None
    assert (await ex.fetch_balance())["used"]["USDT"] == 0


async def test_book_moving_through_a_resting_order_fills_it(sim: Any, ex: Any) -> None:
    market = sim.exchange.markets["BTCUSDT"]
    buy = await ex.create_order(SYMBOL, "limit", "buy", 0.015, 49999.50)  # inside the spread
    assert buy["status"] == "open"
    market.apply([], [(Decimal("49999.40"), Decimal("0.01"))])  # an ask appears below our bid: it trades
    after = await ex.fetch_order(buy["id"], SYMBOL)
    assert after["filled"] == 0.01 and after["info"]["status"] == "PARTIALLY_FILLED"
    assert Decimal("49999.40") not in market.book.asks.qty  # the crossing level traded away
    assert market.tape.trades[-1].price == Decimal("49999.50")  # at the resting order's price


async def test_limit_errors_carry_binance_codes(sim: Any, ex: Any) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order(SYMBOL, "limit", "buy", 10, 49000.00)
    with pytest.raises(ccxt.ExchangeError, match="stopPrice"):  # the raw call: ccxt checks this itself
        await ex.private_post_order(
            {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS", "quantity": "0.01"}
        )


async def test_stop_orders_wait_for_their_stop_price_then_work(sim: Any, ex: Any) -> None:
    market = sim.exchange.markets["BTCUSDT"]
    await ex.create_order(SYMBOL, "market", "buy", 0.03)  # BTC to sell; the last price is now 50002
    stop_limit = await ex.create_order(
        SYMBOL, "STOP_LOSS_LIMIT", "sell", 0.01, 49990.00, {"stopPrice": "49995.00", "timeInForce": "GTC"}
    )
    stop_market = await ex.create_order(SYMBOL, "STOP_LOSS", "sell", 0.01, None, {"stopPrice": "49995.00"})
    assert stop_limit["status"] == stop_market["status"] == "open"
    assert (await ex.fetch_balance())["used"]["BTC"] == pytest.approx(0.02)
    market.flow_trade(Decimal("49999.00"), Decimal("0.001"), buyer_is_maker=True)  # above the stop
    assert (await ex.fetch_order(stop_market["id"], SYMBOL))["filled"] == 0
    market.flow_trade(Decimal("49994.00"), Decimal("0.001"), buyer_is_maker=True)  # through the stop
    sold = await ex.fetch_order(stop_market["id"], SYMBOL)
    limit = await ex.fetch_order(stop_limit["id"], SYMBOL)
    assert sold["status"] == "closed" and sold["filled"] == 0.01  # sold into the bids as a market order
    assert limit["filled"] == 0.01 and limit["info"]["stopPrice"] == "49995.00000000"
    assert (await ex.fetch_balance())["used"]["BTC"] == 0
    with pytest.raises(ccxt.InvalidOrder):  # a stop that would trigger at once
        await ex.create_order(SYMBOL, "STOP_LOSS", "sell", 0.01, None, {"stopPrice": "60000.00"})


async def test_cancel_replace_moves_a_resting_order_and_reports_failures(sim: Any, ex: Any) -> None:
    old = await ex.create_order(SYMBOL, "limit", "buy", 0.01, 49990.00)
    body = await ex.private_post_order_cancelreplace(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
         "price": "49995.00", "cancelReplaceMode": "STOP_ON_FAILURE", "cancelOrderId": old["id"]}
    )  # fmt: skip
    assert body["cancelResult"] == body["newOrderResult"] == "SUCCESS"
    assert (
        body["cancelResponse"]["status"] == "CANCELED"
        and body["newOrderResponse"]["price"] == "49995.00000000"
    )
    with pytest.raises(ccxt.ExchangeError, match="-2022"):
        await ex.private_post_order_cancelreplace(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
             "price": "49995.00", "cancelReplaceMode": "STOP_ON_FAILURE", "cancelOrderId": old["id"]}
        )  # fmt: skip
