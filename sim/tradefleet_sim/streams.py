"""Binance Spot market-data websocket endpoints: `/ws/<stream>`, `/ws` and `/stream?streams=`.

- Raw (`/ws/a/b`): the valid stream names in the path are subscribed; a number or nothing is
  ignored (ccxt.pro connects to `/ws/<n>` and subscribes by message); any other name is answered
  with an error frame and a 1008 close instead of an open, silent connection. A live listenKey
  (`POST /api/v3/userDataStream`) is a stream name too: its user data events arrive raw.
- Live control messages on any connection: `SUBSCRIBE`, `UNSUBSCRIBE` -> `{"result":null,"id":N}`,
  `LIST_SUBSCRIPTIONS` -> `{"result":[...],"id":N}`, `SET_PROPERTY`/`GET_PROPERTY` `combined`.
  Bad requests get Binance's `{"error":{"code":N,"msg":...},"id":...}` and the connection lives.
- Combined (`/stream?streams=a/b`): frames wrapped as `{"stream":...,"data":...}`.
- The server pings every `ping_interval` seconds and closes (1008) a connection that sent no pong
  for `pong_timeout` (a minute, as Binance documents); `max_connection_s` closes (1001) at that
  age, like Binance's 24-hour cut (`keepalive.py`). Client pings are answered.

This module only speaks the protocol; what is published lives in the producers, and ordering,
stalls and drops live in `hub.py`. It refuses stream names that are not lower-case Binance names.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import WSMsgType, web

from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.hub import Client, dumps
from tradefleet_sim.keepalive import KeepAlive
from tradefleet_sim.klines import INTERVAL_MS

EXCHANGE: web.AppKey[SimExchange] = web.AppKey("exchange", SimExchange)

_INTERVALS = "|".join(INTERVAL_MS)
STREAM_RE = re.compile(
    rf"^[a-z0-9]+@(depth(5|10|20)?(@100ms|@1000ms)?|bookTicker|trade|aggTrade|kline_({_INTERVALS})(@\+08:00)?"
    r"|ticker|miniTicker|ticker_(1h|4h|1d)|avgPrice)$"
    r"|^!(miniTicker|ticker|ticker_(1h|4h|1d))@arr$"
)
_IGNORED_PATH = re.compile(r"^[0-9]*$")


def valid_stream(name: str, listen_keys: dict[str, str] | None = None) -> bool:
    return bool(STREAM_RE.match(name)) or (listen_keys is not None and name in listen_keys)


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    exchange = request.app[EXCHANGE]
    combined = request.path.startswith("/stream")
    if combined:
        names = request.query.get("streams", "").split("/")
    else:
        names = request.match_info.get("tail", "").split("/")
    ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    opts = exchange.options
    alive = KeepAlive(
        ws, ping_interval=opts.ping_interval, pong_timeout=opts.pong_timeout, max_age=opts.max_connection_s
    )
    bad = [n for n in names if not valid_stream(n, exchange.listen_keys) and not _IGNORED_PATH.match(n)]
    if bad:
        await ws.send_str(dumps(_error(2, f"Invalid request: unknown stream name(s) {bad}", None)))
        await ws.close(code=1008, message=b"unknown stream")
        return ws
    client = Client(ws, request, combined=combined, queue_size=exchange.options.send_queue)
    hub = exchange.hub
    hub.add(client)
    hub.subscribe(client, [n for n in names if valid_stream(n, exchange.listen_keys)])
    limiter = exchange.ws_message_limiter()
    pinger = asyncio.create_task(alive.run(), name=f"sim-ws-ping-{client.id}")
    try:
        async for msg in ws:
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                alive.pong()
            elif msg.type == WSMsgType.TEXT:
                if not limiter.allow():
                    # Binance: more than 5 incoming messages a second disconnects the client. The
                    # answers already queued go first (bounded wait), then the close frame.
                    for _ in range(100):
                        if client.queue.empty():
                            break
                        await asyncio.sleep(0.01)
                    await asyncio.sleep(0.05)  # the writer's last send in flight
                    await ws.close(code=1008, message=b"too many messages")
                    break
                reply = handle_command(exchange, client, msg.data)
                if reply is not None:
                    client.offer(dumps(reply))
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        pinger.cancel()
        await hub.remove(client)
    return ws


def _error(code: int, msg: str, req_id: Any) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": req_id}


def handle_command(exchange: SimExchange, client: Client, text: str) -> dict[str, Any] | None:
    """One client control message -> the reply to queue (in order with the data frames)."""
    try:
        req = json.loads(text)
    except ValueError as e:
        return _error(3, f"Invalid JSON: {e}", None)
    if not isinstance(req, dict):
        return _error(2, "Invalid request: expected an object", None)
    req_id = req.get("id")
    if req_id is not None and (isinstance(req_id, bool) or not isinstance(req_id, int | str)):
        return _error(1, "Invalid value type: expected u64 or string for 'id'", None)
    method = req.get("method")
    params = req.get("params", [])
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return _error(2, "Invalid request: 'params' must be a list of stream names", req_id)
        bad = [p for p in params if not valid_stream(p, exchange.listen_keys)]
        if bad:
            return _error(2, f"Invalid request: invalid stream name(s) {bad}", req_id)
        if method == "SUBSCRIBE":
            exchange.hub.subscribe(client, params)
        else:
            exchange.hub.unsubscribe(client, params)
        return {"result": None, "id": req_id}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": list(client.streams), "id": req_id}
    if method == "SET_PROPERTY":
        if not (
            isinstance(params, list)
            and len(params) == 2
            and params[0] == "combined"
            and isinstance(params[1], bool)
        ):
            return _error(2, "Invalid request: SET_PROPERTY takes ['combined', true|false]", req_id)
        client.combined = params[1]
        return {"result": None, "id": req_id}
    if method == "GET_PROPERTY":
        if params != ["combined"]:
            return _error(2, "Invalid request: GET_PROPERTY takes ['combined']", req_id)
        return {"result": client.combined, "id": req_id}
    return _error(2, f"Invalid request: unknown method {method!r}", req_id)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/ws/{tail:.*}", ws_handler)
    app.router.add_get("/stream", ws_handler)
