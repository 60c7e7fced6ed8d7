"""Binance's user data stream over the WebSocket API: order reports as they happen.

Since the REST listenKey stream was retired (February 2026) a bot subscribes on a WebSocket API
connection with `userDataStream.subscribe.signature` (params `apiKey`, `timestamp`, `signature` =
HMAC-SHA256 of the other params sorted by name). Events then arrive wrapped as
`{"subscriptionId": N, "event": {...}}`; `executionReport` events become `OrderUpdate`s.

One task owns the socket (aiohttp's websocket client, as the market feed: a bot loads no
`websockets` since #17) and reconnects with capped, jittered backoff. Events missed while the
socket was down are NOT replayed by Binance: the order manager's REST reconciliation covers that gap,
so this module only reports `connected` and `last_event_monotonic` and never pretends to be complete.
It refuses to log the API key or the signature (only the subscription id and errors).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp

from tradefleet.adapters.credentials import Credentials
from tradefleet.adapters.http_session import client_session
from tradefleet.domain.models import OrderStatus, OrderUpdate
from tradefleet.errors import MalformedFrame
from tradefleet.logs import log_event, now_ms

log = logging.getLogger(__name__)

LIVE_WS_API = "wss://ws-api.binance.com:443/ws-api/v3"


def subscribe_request(credentials: Credentials, request_id: str, timestamp_ms: int) -> dict[str, Any]:
    params: dict[str, Any] = {"apiKey": credentials.api_key, "timestamp": timestamp_ms}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["signature"] = credentials.sign(payload)
    return {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}


def parse_execution_report(event: dict[str, Any]) -> OrderUpdate:
    """One `executionReport` event body as an `OrderUpdate` (cumulative quantities, this trade's fee)."""
    try:
        exec_type = str(event["x"])
        trade_id = int(event.get("t", -1))
        return OrderUpdate(
            client_order_id=str(event["c"]),
            status=OrderStatus(event["X"]),
            event_time=int(event["E"]),
            exchange_order_id=str(event["i"]),
            filled_qty=Decimal(event["z"]),
            cum_quote=Decimal(event.get("Z", "0")),
            last_qty=Decimal(event.get("l", "0")),
            last_price=Decimal(event.get("L", "0")),
            fee=Decimal(event.get("n") or "0"),
            fee_asset=event.get("N") or None,
            trade_id=trade_id if trade_id >= 0 else None,
            exec_type=exec_type,
            reason=None if event.get("r") in (None, "NONE") else str(event["r"]),
            source="stream",
        )
    except (KeyError, ValueError, TypeError, ArithmeticError) as e:
        raise MalformedFrame(f"bad executionReport: {e!r}") from e


class UserDataStream:
    """Keeps one WebSocket API subscription alive and hands every order report to `sink`."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        sink: Callable[[OrderUpdate], None],
        *,
        reconnect_max_s: float = 30.0,
        open_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self._credentials = credentials
        self._sink = sink
        self._reconnect_max_s = reconnect_max_s
        self._open_timeout_s = open_timeout_s
        self._ids = itertools.count(1)
        self.connected = asyncio.Event()
        self.last_event_monotonic: float | None = None
        self.subscription_id: int | None = None
        self.reconnects = 0
        self.malformed = 0

    async def run(self) -> None:
        delay = 0.5
        # One HTTP session for the stream's lifetime (its connector is reused across reconnects).
        async with client_session() as session:  # never via an env proxy
            while True:
                try:
                    await self._session(session)
                    delay = 0.5
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # any socket/protocol failure: reconnect, the manager reconciles
                    log_event(log, "user_stream_down", logging.WARNING, error=repr(e)[:300])
                self.connected.clear()
                self.subscription_id = None
                self.reconnects += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self._reconnect_max_s)

    async def _session(self, session: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(self._open_timeout_s):
            ws = await session.ws_connect(
                self.url,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                heartbeat=20.0,  # ping every 20 s; no pong within 10 s closes the connection
                autoping=True,  # Binance pings every 20 s and cuts clients that do not pong
                max_msg_size=2**22,
            )
        async with ws:
            req_id = f"sub-{next(self._ids)}"
            await ws.send_str(json.dumps(subscribe_request(self._credentials, req_id, now_ms())))
            while True:
                frame = await ws.receive()  # pings, pongs and the close handshake are answered inside
                if frame.type is aiohttp.WSMsgType.ERROR:
                    raise ConnectionError(f"user data stream error: {frame.data!r}"[:300])
                if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    if ws.close_code in (1000, 1001):
                        return  # a clean close: reconnect and subscribe again
                    raise ConnectionError(f"user data stream closed ({ws.close_code})")
                msg = json.loads(frame.data)
                if not isinstance(msg, dict):
                    continue
                if msg.get("id") == req_id:
                    if msg.get("status") != 200:
                        raise ConnectionError(f"subscription refused: {msg.get('error')}")
                    self.subscription_id = int(msg["result"]["subscriptionId"])
                    self.connected.set()
                    log_event(log, "user_stream_subscribed", subscription_id=self.subscription_id)
                    continue
                event = msg.get("event")
                if not isinstance(event, dict):
                    continue
                self.last_event_monotonic = time.monotonic()
                kind = event.get("e")
                if kind == "executionReport":
                    try:
                        self._sink(parse_execution_report(event))
                    except MalformedFrame as e:
                        self.malformed += 1
                        log_event(log, "user_stream_malformed", logging.WARNING, error=str(e))
                elif kind == "eventStreamTerminated":
                    return  # reconnect and subscribe again
