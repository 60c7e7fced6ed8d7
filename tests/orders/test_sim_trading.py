"""The simulator's private API, driven by ccxt unmodified (proof it speaks Binance's protocol) and by
the bot's own signed client (`binance_signed`, what `translate` sees: status + Binance code/msg), and
proof that its duplicate detector (what the exactly-once tests rely on) really fires."""

from __future__ import annotations

import time
from decimal import Decimal

import aiohttp
import ccxt
import pytest
from bench.ccxt_client import make_binance

from tests.orders.conftest import SIM_CREDENTIALS, bot_config, sim_orders, sim_trading_fault
from tradefleet.adapters.binance_exec import BinanceExecution, translate
from tradefleet.adapters.binance_signed import BinanceHttpError, BinanceSignedRest
from tradefleet.adapters.credentials import Credentials
from tradefleet.errors import (
    ExchangeUnavailable,
    ExecutionUnknown,
    OrderRejected,
    PermanentError,
    RateLimited,
)
from tradefleet.logs import now_ms
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET


@pytest.fixture
async def client(sim):
    ex = make_binance(rest_url=sim.rest_url, api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET)
    ex.options["fetchMargins"] = False
    await ex.load_markets()
    yield ex
    await ex.close()


@pytest.fixture
async def signed(sim):
    rest = BinanceSignedRest(sim.rest_url, SIM_CREDENTIALS)
    yield rest
    await rest.close()


def order_params(**extra):
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", **extra, "timestamp": now_ms()}


async def test_resending_a_filled_client_id_is_a_second_order_and_the_sim_counts_it(sim, client):
    params = {"newClientOrderId": "tf-dup", "quoteOrderQty": "60"}
    first = await client.create_order("BTC/USDT", "market", "buy", None, None, params)
    second = await client.create_order("BTC/USDT", "market", "buy", None, None, params)
    assert first["info"]["status"] == second["info"]["status"] == "FILLED"
    state = await sim_orders(sim)
    assert state["accepted_per_client_id"] == {"tf-dup": 2}
    assert state["duplicates"] == 1  # exactly what Binance does after a fill: our bots must never do this


async def test_duplicate_of_an_open_order_is_refused_and_means_unknown_outcome(sim, client, signed):
    await sim_trading_fault(sim, delay_fill_ms=3000)
    params = {"newClientOrderId": "tf-open", "quoteOrderQty": "60", "newOrderRespType": "RESULT"}
    first = await client.create_order("BTC/USDT", "market", "buy", None, None, params)
    assert first["info"]["status"] == "NEW"
    with pytest.raises(ccxt.InvalidOrder) as e:
        await client.create_order("BTC/USDT", "market", "buy", None, None, params)
    assert "-2010" in str(e.value) and "Duplicate order sent." in str(e.value)
    with pytest.raises(BinanceHttpError) as ours:
        await signed.request("POST", "/api/v3/order", order_params(**params))
    assert (ours.value.status, ours.value.code, ours.value.msg) == (400, -2010, "Duplicate order sent.")
    assert isinstance(translate(ours.value, sending=True), ExecutionUnknown)
    assert (await sim_orders(sim))["accepted_per_client_id"] == {"tf-open": 1}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"side": "SELL", "quantity": "0.000015"}, -1013),  # not a multiple of the 0.00001 step: LOT_SIZE
        ({"quoteOrderQty": "4"}, -1013),  # below the 5 USDT NOTIONAL
        ({"quoteOrderQty": "1000000"}, -2010),  # insufficient balance
        ({"symbol": "NOPEUSDT", "quoteOrderQty": "10"}, -1121),  # no such symbol
    ],
    ids=["lot_size", "notional", "balance", "symbol"],
)
async def test_filter_and_balance_failures_carry_binance_codes_and_become_rejections(
    sim, signed, params, code
):
    with pytest.raises(BinanceHttpError) as e:
        await signed.request("POST", "/api/v3/order", order_params(**params))
    err = translate(e.value, sending=True)
    assert isinstance(err, OrderRejected) and err.code == code
    assert (await sim_orders(sim))["orders"] == []


async def test_rate_limit_answer_carries_retry_after(sim, signed):
    await sim_trading_fault(sim, rate_limit=1, retry_after_s=7)
    with pytest.raises(BinanceHttpError) as e:
        await signed.request("POST", "/api/v3/order", order_params(quoteOrderQty="60"))
    assert e.value.status == 429
    err = translate(e.value, sending=True)
    assert isinstance(err, RateLimited) and err.retry_after == 7
    assert (await sim_orders(sim))["orders"] == []


async def test_server_errors_mean_unknown_when_sending_and_unavailable_otherwise(sim, signed):
    await sim_trading_fault(sim, server_error=1)  # placed, then 503 -1007
    with pytest.raises(BinanceHttpError) as e:
        await signed.request("POST", "/api/v3/order", order_params(quoteOrderQty="60"))
    assert (e.value.status, e.value.code) == (503, -1007)
    assert isinstance(translate(e.value, sending=True), ExecutionUnknown)
    assert isinstance(translate(e.value, sending=False), ExchangeUnavailable)
    assert len((await sim_orders(sim))["orders"]) == 1


async def test_wrong_secret_and_stale_timestamp_are_refused(sim):
    bad = make_binance(rest_url=sim.rest_url, api_key=DEFAULT_API_KEY, secret="not-the-secret")
    bad.options["fetchMargins"] = False
    try:
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await bad.fetch_balance()
    finally:
        await bad.close()
    stale = make_binance(rest_url=sim.rest_url, api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET)
    stale.options["fetchMargins"] = False
    stale.nonce = lambda: stale.milliseconds() - 120_000
    try:
        with pytest.raises(ccxt.BaseError, match="-1021"):
            await stale.fetch_balance()
    finally:
        await stale.close()
    # Ours: a wrong secret is -1022, permanent, and the bot refuses to start with it.
    wrong = BinanceExecution(bot_config(sim), Credentials(DEFAULT_API_KEY, "not-the-secret-at-all"),
                             user_stream=False)  # fmt: skip
    try:
        with pytest.raises(PermanentError, match="-1022"):
            await wrong.prepare()
    finally:
        await wrong.close()
    rest = BinanceSignedRest(sim.rest_url, SIM_CREDENTIALS)
    try:
        with pytest.raises(BinanceHttpError) as e:
            await rest.request("GET", "/api/v3/account", {"timestamp": now_ms() - 120_000})
        assert e.value.code == -1021
        err = translate(e.value, sending=True)  # refused before acceptance: safe to re-send
        assert isinstance(err, ExchangeUnavailable) and not isinstance(err, ExecutionUnknown)
    finally:
        await rest.close()


async def test_balances_move_by_fills_and_fees(sim, client):
    before = await client.fetch_balance()
    o = await client.create_order("BTC/USDT", "market", "buy", None, None, {"quoteOrderQty": "100"})
    info = o["info"]
    after = await client.fetch_balance()
    fee = sum(Decimal(f["commission"]) for f in info["fills"])
    assert Decimal(str(after["BTC"]["free"])) == Decimal(info["executedQty"]) - fee
    spent = Decimal(str(before["USDT"]["free"])) - Decimal(str(after["USDT"]["free"]))
    assert spent == Decimal(info["cummulativeQuoteQty"])
    trades = await client.fetch_my_trades("BTC/USDT", None, None, {"orderId": info["orderId"]})
    assert [t["info"]["id"] for t in trades] == [f["tradeId"] for f in info["fills"]]


async def test_binance_execution_query_returns_none_for_an_id_never_sent(sim):
    from tradefleet.domain.models import Order, OrderStatus, Side

    ex = BinanceExecution(bot_config(sim), SIM_CREDENTIALS, user_stream=False)
    try:
        order = Order("tfnever", "b", "binance", "BTC/USDT", Side.BUY, "MARKET", "s", OrderStatus.PENDING, 0, 0,
                      quote_amount=Decimal("10"))  # fmt: skip
        assert await ex.query(order) is None
    finally:
        await ex.close()


async def test_held_fills_answer_new_and_fill_when_released(sim, client):
    await sim_trading_fault(sim, hold_fills=True)
    params = {"newClientOrderId": "tf-held", "quoteOrderQty": "60", "newOrderRespType": "RESULT"}
    first = await client.create_order("BTC/USDT", "market", "buy", None, None, params)
    assert first["info"]["status"] == "NEW"
    assert (await client.fetch_order(first["id"], "BTC/USDT"))["status"] == "open"
    await sim_trading_fault(sim, hold_fills=False)
    filled = await client.fetch_order(first["id"], "BTC/USDT")
    assert filled["status"] == "closed" and Decimal(str(filled["filled"])) > 0


async def test_order_arrivals_are_recorded_on_the_hosts_monotonic_clock_only_when_asked(make_sim):
    recording = await make_sim(record_arrivals=True)
    await recording.exchange.stop()
    ex = make_binance(rest_url=recording.rest_url, api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET)
    ex.options["fetchMargins"] = False
    try:
        await ex.load_markets()
        before = time.monotonic_ns()
        params = {"newClientOrderId": "tf-arrival", "quoteOrderQty": "60"}
        await ex.create_order("BTC/USDT", "market", "buy", None, None, params)
        await ex.create_order("BTC/USDT", "market", "buy", None, None, params)  # the first request counts
        after = time.monotonic_ns()
    finally:
        await ex.close()
    quiet = await make_sim()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{recording.rest_url}/sim/orders/arrivals") as r:
            body = await r.json()
            arrivals, handled = body["arrivals"], body["handled"]
        async with s.get(f"{quiet.rest_url}/sim/orders/arrivals") as r:
            assert r.status == 404
            assert "--record-order-arrivals" in (await r.json())["error"]
    assert list(arrivals) == list(handled) == ["tf-arrival"]
    # Read from the simulator's socket first, then handed on by its parsing and routing.
    assert before < arrivals["tf-arrival"] < handled["tf-arrival"] < after
