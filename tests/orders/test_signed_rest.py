"""The bot's own signed Binance client (`binance_signed`) and what `translate` makes of its answers.

Two references: Binance's documented HMAC example (the signature must be exactly theirs), and ccxt's
Binance client, which the trading path used before #17: for every error code in ccxt's spot table and
the HTTP answers a server or proxy gives, our mapping must give the same outcome as ccxt + the old
`translate` did (`bench.ccxt_execution` is that code, kept as the benchmark's peer).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import ccxt
import pytest
from aiohttp import web
from bench.ccxt_execution import translate as ccxt_translate

from tests.orders.conftest import SIM_CREDENTIALS, bot_config
from tradefleet.adapters.binance_exec import BinanceExecution, translate
from tradefleet.adapters.binance_signed import (
    BinanceHttpError,
    BinanceSignedRest,
    BinanceTransportError,
    signed_query,
)
from tradefleet.adapters.credentials import Credentials
from tradefleet.domain.models import Order, OrderStatus, Side
from tradefleet.errors import ExecutionUnknown

# https://developers.binance.com/docs/binance-spot-api-docs/rest-api/endpoint-security-type (HMAC example)
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_signature_is_binances_documented_hmac_of_the_exact_query_string():
    creds = Credentials(api_key=DOC_KEY, secret=DOC_SECRET)
    assert creds.sign(DOC_QUERY) == DOC_SIGNATURE
    params = [("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
              ("quantity", "1"), ("price", "0.1"), ("recvWindow", 5000), ("timestamp", 1499827319559)]  # fmt: skip
    assert signed_query(creds, params) == f"{DOC_QUERY}&signature={DOC_SIGNATURE}"
    assert signed_query(creds, dict(params)) == f"{DOC_QUERY}&signature={DOC_SIGNATURE}"


async def _serve(handler):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_the_request_on_the_wire_is_the_signed_string_with_the_key_header_only():
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"ok": True})

    runner, url = await _serve(handler)
    creds = Credentials(api_key=DOC_KEY, secret=DOC_SECRET)
    rest = BinanceSignedRest(url, creds)
    try:
        # A decimal string and a client id with characters a URL must escape: signed as sent.
        params = {"symbol": "BTCUSDT", "quantity": "0.00001000", "newClientOrderId": "a b/c", "timestamp": 1}
        assert await rest.request("POST", "/api/v3/order", params) == {"ok": True}
    finally:
        await rest.close()
        await runner.cleanup()
    request = seen[0]
    query, _, signature = request.raw_path.split("?", 1)[1].rpartition("&signature=")
    assert query == "symbol=BTCUSDT&quantity=0.00001000&newClientOrderId=a+b%2Fc&timestamp=1"
    assert signature == creds.sign(query)
    assert request.method == "POST" and request.headers["X-MBX-APIKEY"] == DOC_KEY
    assert DOC_SECRET not in str(dict(request.headers))


async def test_decimals_are_sent_as_the_orders_own_strings_never_through_float():
    """0.1 + 0.2 style values: a float would send 0.30000000000000004 (or round)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.query_string)
        return web.json_response({"orderId": 1, "status": "FILLED", "executedQty": "0.00030000",
                                  "cummulativeQuoteQty": "15.00000001", "fills": []})  # fmt: skip

    runner, url = await _serve(handler)

    class _Sim:
        rest_url = url
        ws_url = url.replace("http", "ws")

    ex = BinanceExecution(bot_config(_Sim), SIM_CREDENTIALS, user_stream=False)
    try:
        sell = Order("tfsell", "b", "binance", "BTC/USDT", Side.SELL, "MARKET", "s", OrderStatus.PENDING, 0, 0,
                     quantity=Decimal("0.1") + Decimal("0.2"))  # fmt: skip
        buy = Order("tfbuy", "b", "binance", "BTC/USDT", Side.BUY, "MARKET", "s", OrderStatus.PENDING, 0, 0,
                    quote_amount=Decimal("15.00000001"))  # fmt: skip
        update = await ex.submit(sell)
        await ex.submit(buy)
    finally:
        await ex.close()
        await runner.cleanup()
    assert "quantity=0.3&" in seen[0] and "side=SELL" in seen[0] and "newOrderRespType=FULL" in seen[0]
    assert "quoteOrderQty=15.00000001&" in seen[1] and "newClientOrderId=tfbuy" in seen[1]
    assert update.filled_qty == Decimal("0.00030000") and update.cum_quote == Decimal("15.00000001")


# Every Binance code in ccxt's spot table, codes it does not know, and answers without a Binance body.
def _ccxt_codes() -> list[int]:
    ex = ccxt.binance()
    table = dict(ex.exceptions["exact"])
    table.update(ex.get_exceptions_by_url("https://api.binance.com/api/v3/order", "exact") or {})
    return sorted(int(k) for k in table if k.lstrip("-").isdigit() and -3000 < int(k) < 0)


_CODE_CASES = [(400, code, "whatever the message") for code in [*_ccxt_codes(), -1999, -2999]]
_MSG_CASES = [
    (400, -2010, "Duplicate order sent."),
    (400, -2010, "Account has insufficient balance for requested action."),
    (400, -2010, "This account may not place or cancel orders."),
    (400, -2010, "This symbol is restricted for this account."),
    (400, -1013, "Filter failure: LOT_SIZE"),
    (400, -1100, "Too many requests. Please try again later."),
    (503, -1000, "Filter failure: PRICE_FILTER"),
    (403, -2015, "Invalid API-key, IP, or permissions for action."),
]
_STATUS_CASES = [(status, None, "") for status in (400, 401, 403, 404, 405, 408, 409, 410, 418, 429, 451,
                                                   500, 501, 502, 503, 504, 520, 530)]  # fmt: skip


def _answer(status: int, code: int | None, msg: str) -> tuple[str, dict[str, str]]:
    body = json.dumps({"code": code, "msg": msg}) if code is not None else "<html>busy</html>"
    headers = {"Retry-After": "7"} if status in (418, 429) else {}
    return body, headers


def _ccxt_outcome(status: int, code: int | None, msg: str, *, sending: bool, after_success: bool) -> object:
    ex = ccxt.binance({"apiKey": "k", "secret": "s"})
    ex.options["hasAlreadyAuthenticatedSuccessfully"] = after_success
    body, headers = _answer(status, code, msg)
    url = "https://api.binance.com/api/v3/order"
    ex.last_response_headers = headers
    ex.last_http_response = body
    try:
        parsed = json.loads(body) if code is not None else None
        ex.handle_errors(status, "reason", url, "POST", headers, body, parsed, {}, "")
        ex.handle_http_status_code(status, "reason", url, "POST", body)
    except ccxt.BaseError as e:
        err = ccxt_translate(e, ex, sending=sending)
        return type(err), getattr(err, "retry_after", None), getattr(err, "code", None)
    return None


@pytest.mark.parametrize("after_success", [False, True], ids=["first", "after_success"])
@pytest.mark.parametrize("sending", [True, False], ids=["sending", "query"])
@pytest.mark.parametrize(("status", "code", "msg"), _CODE_CASES + _MSG_CASES + _STATUS_CASES)
def test_translate_gives_the_outcome_ccxt_gave_for_every_answer(status, code, msg, sending, after_success):
    expected = _ccxt_outcome(status, code, msg, sending=sending, after_success=after_success)
    assert expected is not None, "ccxt raised nothing for this answer: not a case"
    body, headers = _answer(status, code, msg)
    retry_after = float(headers["Retry-After"]) if headers else None
    ours = translate(BinanceHttpError(status, code, msg, retry_after, body, after_success=after_success),
                     sending=sending)  # fmt: skip
    assert (type(ours), getattr(ours, "retry_after", None), getattr(ours, "code", None)) == expected


@pytest.mark.parametrize("sending", [True, False])
def test_no_answer_is_unknown_when_sending_and_unavailable_otherwise(sending):
    err = translate(BinanceTransportError("POST /api/v3/order: TimeoutError"), sending=sending)
    assert isinstance(err, ExecutionUnknown) == sending
    assert ccxt_translate(ccxt.RequestTimeout("t"), None, sending=sending).__class__ is type(err)


async def test_dropped_and_refused_connections_are_transport_errors_without_the_signature():
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # the answer never comes
        await asyncio.sleep(0)
        return web.Response()

    runner, url = await _serve(handler)
    creds = Credentials(api_key=DOC_KEY, secret=DOC_SECRET)
    rest = BinanceSignedRest(url, creds, timeout_ms=2000)
    try:
        with pytest.raises(BinanceTransportError) as dropped:
            await rest.request("POST", "/api/v3/order", {"timestamp": 1})
    finally:
        await rest.close()
        await runner.cleanup()
    refused = BinanceSignedRest(url, creds, timeout_ms=2000)  # the server is gone now
    try:
        with pytest.raises(BinanceTransportError) as gone:
            await refused.request("GET", "/api/v3/account", {"timestamp": 1})
    finally:
        await refused.close()
    signature = creds.sign("timestamp=1")
    for e in (dropped.value, gone.value):
        assert e.__cause__ is None and e.__suppress_context__
        for text in (str(e), repr(e)):
            assert signature not in text and DOC_KEY not in text and DOC_SECRET not in text


async def test_a_2xx_body_that_is_not_json_is_a_transport_error():
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>gateway</html>")

    runner, url = await _serve(handler)
    rest = BinanceSignedRest(url, SIM_CREDENTIALS)
    try:
        with pytest.raises(BinanceTransportError, match="not JSON"):
            await rest.request("POST", "/api/v3/order", {"timestamp": 1})
    finally:
        await rest.close()
        await runner.cleanup()
