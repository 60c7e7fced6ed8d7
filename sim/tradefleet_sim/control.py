"""The simulator's own HTTP API for tests and the demo, under `/sim/` (never Binance's paths).

- `GET /sim/state`: `symbols`, `markets` (update_id, best bid/ask, diffs sent/withheld),
  `klines` (position, started, paused, holding, replay_done), `capture`, `replay_done`,
  `faults` (counters per kind, pending REST faults, stall left), `clients`,
  `connected_clients`, `now_ms` (sim clock), `wall_ms`, `failure`, `extensions`.
- `GET /sim/book?symbol=X[&limit=N]`: the TRUE book (all levels by default), to compare with a
  client's local book.
- `POST /sim/control/start`, `POST /sim/control/pause`: the kline/capture replay.
- `POST /sim/faults` with one fault object or a list of them (see `faults.py`).

Errors are `{"error": "..."}` with status 400 or 404; it refuses unknown fault kinds or keys.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tradefleet_sim.book import wire_levels
from tradefleet_sim.faults import FaultError
from tradefleet_sim.streams import EXCHANGE


def _bad(msg: str, status: int = 400) -> web.Response:
    return web.json_response({"error": msg}, status=status)


async def state(request: web.Request) -> web.Response:
    return web.json_response(request.app[EXCHANGE].state())


async def book(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    symbol = request.query.get("symbol", "")
    market = exchange.markets.get(symbol)
    if market is None:
        return _bad(f"no market {symbol!r}; markets: {', '.join(exchange.markets)}", 404)
    raw = request.query.get("limit")
    if raw is not None and not raw.isdigit():
        return _bad("limit must be a positive integer")
    limit = int(raw) if raw else None
    return web.json_response(
        {
            "symbol": symbol,
            "lastUpdateId": market.update_id,
            "bids": wire_levels(market.book.bids.levels(limit)),
            "asks": wire_levels(market.book.asks.levels(limit)),
        }
    )


async def start(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    exchange.start_replay()
    return web.json_response(_replays(exchange.state()))


async def pause(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    exchange.pause_replay()
    return web.json_response(_replays(exchange.state()))


def _replays(s: dict[str, Any]) -> dict[str, Any]:
    return {"klines": s["klines"], "capture": s["capture"], "replay_done": s["replay_done"]}


async def faults(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE]
    try:
        body = await request.json()
    except ValueError:
        return _bad("body must be JSON: a fault object or a list of them")
    requests = body if isinstance(body, list) else [body]
    try:
        # Validate everything before applying anything, so a bad list changes nothing.
        for r in requests:
            exchange.faults.validate(r)
        results = [exchange.faults.apply(r) for r in requests]
    except FaultError as e:
        return _bad(str(e))
    return web.json_response({"applied": results})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/sim/state", state)
    app.router.add_get("/sim/book", book)
    app.router.add_post("/sim/control/start", start)
    app.router.add_post("/sim/control/pause", pause)
    app.router.add_post("/sim/faults", faults)
