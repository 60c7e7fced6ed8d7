"""Binance Spot public REST beyond book and candles: tickers, average price and public trades.

`GET /api/v3/ticker/24hr` (`type` FULL or MINI), `ticker/price`, `ticker/bookTicker`, `ticker`
(rolling window, `windowSize` 1h/4h/1d or Nm/Nh/Nd), `avgPrice`, `trades`, `historicalTrades`
(`fromId`), `aggTrades` (`fromId`, `startTime`/`endTime`). Each takes `symbol`, or `symbols` as a
JSON list, or (tickers) nothing for every market, like Binance; symbols are accepted in any case.
The numbers come from `tickers.py` on the exchange's one clock. Weights are `ratelimit.py`'s.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from tradefleet_sim.rest import BinanceError, _int_param, _market_symbol
from tradefleet_sim.streams import EXCHANGE
from tradefleet_sim.tickers import avg_price, book_ticker, day_stats, mini, window_stats

_WINDOW = re.compile(r"^([0-9]{1,3})([mhd])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _symbols(request: web.Request, *, all_if_none: bool = True) -> tuple[list[str], bool]:
    """(symbols, single): `symbol` -> one (answered as an object), `symbols` -> a list."""
    exchange = request.app[EXCHANGE]
    if request.query.get("symbol"):
        return [_market_symbol(request)], True
    raw = request.query.get("symbols")
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
            raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.")
        wanted = [s.upper() for s in parsed]
        if any(s not in exchange.markets for s in wanted):
            raise BinanceError(-1121, "Invalid symbol.")
        return wanted, False
    if not all_if_none:
        raise BinanceError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    return list(exchange.markets), False


def _answer(rows: list[dict[str, Any]], single: bool) -> web.Response:
    return web.json_response(rows[0] if single else rows)


async def ticker_24hr(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    kind = request.query.get("type", "FULL")
    if kind not in ("FULL", "MINI"):
        raise BinanceError(-1100, "Illegal characters found in parameter 'type'.")
    names, single = _symbols(request)
    now = exchange.now_ms()
    rows = [day_stats(exchange.markets[s], now) for s in names]
    return _answer([mini(r) if kind == "MINI" else r for r in rows], single)


async def ticker_price(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    names, single = _symbols(request)
    now = exchange.now_ms()
    rows = []
    for s in names:
        rows.append({"symbol": s, "price": day_stats(exchange.markets[s], now)["lastPrice"]})
    return _answer(rows, single)


async def ticker_book(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    names, single = _symbols(request)
    return _answer([book_ticker(exchange.markets[s]) for s in names], single)


async def ticker_rolling(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    names, single = _symbols(request, all_if_none=False)
    m = _WINDOW.match(request.query.get("windowSize", "1d"))
    if m is None:
        raise BinanceError(-1100, "Illegal characters found in parameter 'windowSize'.")
    window = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if not (60_000 <= window <= 7 * 86_400_000):
        raise BinanceError(-1100, "Invalid windowSize: 1m..59m, 1h..23h or 1d..7d.")
    now = exchange.now_ms()
    return _answer([window_stats(exchange.markets[s], now, window) for s in names], single)


async def avg_price_handler(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    symbol = _market_symbol(request)
    return web.json_response(avg_price(exchange.markets[symbol], exchange.now_ms()))


def _limit(request: web.Request, default: int = 500) -> int:
    limit = _int_param(request, "limit")
    limit = default if limit is None else limit
    if limit < 1:
        raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
    return min(limit, 1000)


async def trades(request: web.Request) -> web.Response:
    market = request.app[EXCHANGE].markets[_market_symbol(request)]
    return web.json_response([t.rest() for t in market.tape.select(limit=_limit(request))])


async def historical_trades(request: web.Request) -> web.Response:
    market = request.app[EXCHANGE].markets[_market_symbol(request)]
    rows = market.tape.select(limit=_limit(request), from_id=_int_param(request, "fromId"))
    return web.json_response([t.rest() for t in rows])


async def agg_trades(request: web.Request) -> web.Response:
    market = request.app[EXCHANGE].markets[_market_symbol(request)]
    start, end = _int_param(request, "startTime"), _int_param(request, "endTime")
    if start is not None and end is not None and end - start > 3_600_000:
        raise BinanceError(-1127, "More than 1 hours between startTime and endTime.")
    rows = market.tape.select(
        limit=_limit(request), from_id=_int_param(request, "fromId"), start=start, end=end
    )
    return web.json_response([t.agg() for t in rows])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v3/ticker/24hr", ticker_24hr)
    app.router.add_get("/api/v3/ticker/price", ticker_price)
    app.router.add_get("/api/v3/ticker/bookTicker", ticker_book)
    app.router.add_get("/api/v3/ticker", ticker_rolling)
    app.router.add_get("/api/v3/avgPrice", avg_price_handler)
    app.router.add_get("/api/v3/trades", trades)
    app.router.add_get("/api/v3/historicalTrades", historical_trades)
    app.router.add_get("/api/v3/aggTrades", agg_trades)
