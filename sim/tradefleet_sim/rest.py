"""Binance Spot public REST: `/api/v3/depth`, `klines`, `exchangeInfo`, `time`, `ping`.

Field names, string-typed prices/quantities, error bodies (`{"code":-1121,"msg":"Invalid
symbol."}`, -1100/-1102 for bad or missing parameters, -1120 bad interval, -1023 bad window)
and the `X-MBX-USED-WEIGHT-1M` header follow the spot API documentation. The REST fault
middleware (delays, 429/418/5xx for the next N requests) wraps every `/api/` and `/sapi/` route,
including the signed ones another module adds, so a client's retry logic meets them everywhere.

It refuses to be lenient where Binance is strict (a non-numeric `limit` is an error, not a
default) and to be strict where Binance truncates (depth `limit` above 5000 returns 5000 levels,
klines `limit` above 1000 returns 1000 rows).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from tradefleet_sim.arrivals import ArrivalStamps
from tradefleet_sim.klines import (
    INTERVAL_MS,
    KlineWindowError,
    aggregate,
    derivable,
    parse_time_zone,
    rest_row,
    select,
)
from tradefleet_sim.ratelimit import ORDER_PATHS, Refusal, weight_for
from tradefleet_sim.streams import EXCHANGE

if TYPE_CHECKING:
    from tradefleet_sim.exchange import SimExchange

_DIGITS = re.compile(r"^[0-9]{1,20}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def error_response(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def _int_param(request: web.Request, name: str, *, required: bool = False) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if required:
            raise BinanceError(
                -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )
        return None
    if not _DIGITS.match(raw):
        raise BinanceError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(raw)


def _market_symbol(request: web.Request) -> str:
    symbol = request.query.get("symbol", "").upper()  # Binance accepts `btcusdt` too
    if not symbol:
        raise BinanceError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    if symbol not in request.app[EXCHANGE].markets:
        raise BinanceError(-1121, "Invalid symbol.")
    return symbol


async def depth(request: web.Request) -> web.Response:
    symbol = _market_symbol(request)
    limit = _int_param(request, "limit")
    limit = 100 if limit is None else limit
    if limit < 1:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    limit = min(limit, 5000)
    return web.json_response(request.app[EXCHANGE].markets[symbol].snapshot(limit))


async def klines(request: web.Request) -> web.Response:
    symbol = _market_symbol(request)
    interval = request.query.get("interval")
    if not interval:
        raise BinanceError(
            -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
        )
    if interval not in INTERVAL_MS:
        raise BinanceError(-1120, "Invalid interval.")
    start = _int_param(request, "startTime")
    end = _int_param(request, "endTime")
    limit = _int_param(request, "limit")
    limit = 500 if limit is None else limit
    if limit < 1:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    replay = request.app[EXCHANGE].klines
    if replay is None or replay.symbol != symbol:
        return web.json_response([])  # a valid request for a series this simulator does not hold
    try:
        offset = parse_time_zone(request.query.get("timeZone", "0"))
    except ValueError as e:
        raise BinanceError(-1100, f"Illegal characters found in parameter 'timeZone': {e}") from None
    rows = replay.rows()
    if interval != replay.interval or offset:
        if not derivable(replay.interval, interval, offset):
            return web.json_response([])  # finer than (or misaligned with) the replayed candles
        rows = aggregate(rows, interval, offset)
    try:
        rows = select(rows, start=start, end=end, limit=min(limit, 1000))
    except KlineWindowError as e:
        raise BinanceError(e.code, str(e)) from e
    return web.json_response([rest_row(c) for c in rows])


async def exchange_info(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    wanted: list[str] | None = None
    if "symbol" in request.query:
        wanted = [request.query["symbol"]]
    elif "symbols" in request.query:
        try:
            parsed = json.loads(request.query["symbols"])
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'symbols'; legal range is "
                '\'^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$\'.',
            )
        wanted = parsed
    if wanted is not None and any(s not in exchange.markets for s in wanted):
        raise BinanceError(-1121, "Invalid symbol.")
    symbols = wanted if wanted is not None else list(exchange.markets)
    limit = exchange.options.weight_limit
    return web.json_response(
        {
            "timezone": "UTC",
            "serverTime": exchange.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [exchange.rules(s).exchange_info() for s in symbols],
        }
    )


async def server_time(request: web.Request) -> web.Response:
    return web.json_response({"serverTime": request.app[EXCHANGE].now_ms()})


async def ping(request: web.Request) -> web.Response:
    return web.json_response({})


@web.middleware
async def binance_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Limits, REST faults, Binance error bodies and the limit headers for every `/api/` route.

    The weight is counted (and a 429/418 answered) before the handler runs, as on Binance: a
    refused request has no effect."""
    if not request.path.startswith(("/api/", "/sapi/")):
        return await handler(request)
    exchange = request.app[EXCHANGE]
    if exchange.options.record_arrivals:
        # When its bytes reached this process (`ArrivalStamps`), and now, as the exchange's code
        # first sees it (the order handler keeps both per client order id): what follows, the weight
        # and the checks, is the exchange's own time.
        now = time.monotonic_ns()
        request[ARRIVED_NS] = (ArrivalStamps.arrived_ns(request.transport) or now, now)
    ip = request.remote or "unknown"
    refusal = exchange.limits.request(ip, weight_for(request.method, request.path, request.query))
    if refusal is not None:
        return _limit_headers(request, exchange, refusal_response(refusal))
    if not exchange.options.rest_faults_on_orders and request.path.startswith(_SIGNED_PATHS):
        return _limit_headers(request, exchange, await _plain(request, handler))
    delay, failure = exchange.faults.next_rest_fault()
    if delay:
        await asyncio.sleep(delay)
    if failure is not None:
        headers = {}
        if failure.status in (418, 429):
            headers["Retry-After"] = str(failure.retry_after)
        response = web.json_response(failure.body(exchange.now_ms()), status=failure.status, headers=headers)
        return _limit_headers(request, exchange, response)
    return _limit_headers(request, exchange, await _plain(request, handler))


def refusal_response(refusal: Refusal) -> web.Response:
    return error_response(
        refusal.status, refusal.code, refusal.msg, headers={"Retry-After": str(refusal.retry_after_s)}
    )


ARRIVED_NS = web.RequestKey("tradefleet_sim.arrived_ns", tuple[int, int])
"""Request key (with `record_arrivals`): CLOCK_MONOTONIC ns at which the request's bytes reached the
simulator's process and at which it entered `binance_edge`."""

_SIGNED_PATHS = ("/api/v3/order", "/api/v3/openOrders", "/api/v3/account", "/api/v3/myTrades")


def _limit_headers(
    request: web.Request, exchange: SimExchange, response: web.StreamResponse
) -> web.StreamResponse:
    if response.prepared:  # a lost-response fault already cut the connection
        return response
    response.headers["X-MBX-USED-WEIGHT-1M"] = str(exchange.limits.used_weight(request.remote or "unknown"))
    key = request.headers.get("X-MBX-APIKEY")
    if key and (request.method, request.path) in ORDER_PATHS:
        ten, day = exchange.limits.order_counts(key)
        response.headers["X-MBX-ORDER-COUNT-10S"] = str(ten)
        response.headers["X-MBX-ORDER-COUNT-1D"] = str(day)
    return response


async def _plain(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BinanceError as e:
        return error_response(e.status, e.code, e.msg)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v3/depth", depth)
    app.router.add_get("/api/v3/klines", klines)
    app.router.add_get("/api/v3/uiKlines", klines)
    app.router.add_get("/api/v3/exchangeInfo", exchange_info)
    app.router.add_get("/api/v3/time", server_time)
    app.router.add_get("/api/v3/ping", ping)
