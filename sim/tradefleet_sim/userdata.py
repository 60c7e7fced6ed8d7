"""The simulator's WebSocket API endpoint (`/ws-api/v3`): user data stream subscriptions.

Speaks the part of Binance's WebSocket API a bot needs since the REST listenKey stream was retired:
`userDataStream.subscribe.signature` (params `apiKey`, `timestamp`, `signature` = HMAC-SHA256 of the
other params sorted by name as `k=v&...`), `userDataStream.unsubscribe`, `session.subscriptions` and
`ping`. Events are pushed as `{"subscriptionId": N, "event": {...}}`.

Faults (set through `trading.py`'s control endpoint): `mute` drops events without closing the socket
(a silent stream: the bot must reconcile over REST), `drop_user_streams()` closes every connection.
What it refuses: session logon (Ed25519) and every other WebSocket API method (-1002/400 answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tradefleet_sim.accounts import Accounts


class UserStreams:
    def __init__(
        self,
        accounts: Accounts,
        timestamp_problem: Callable[[int, int], str | None],
        recv_window_ms: int = 60_000,
    ) -> None:
        self.accounts = accounts
        self.timestamp_problem = timestamp_problem  # the exchange's one-clock -1021 rule
        self.recv_window_ms = recv_window_ms
        self.mute = False
        self._sessions: set[_Session] = set()
        self._ids = itertools.count(0)
        self.events_sent = 0
        self.events_muted = 0

    def publish(self, api_key: str, event: dict[str, Any]) -> None:
        """Push one user data event to every subscription of the account `api_key`."""
        for session in list(self._sessions):
            for sub_id, key in session.subscriptions.items():
                if key != api_key:
                    continue
                if self.mute:
                    self.events_muted += 1
                    continue
                session.send({"subscriptionId": sub_id, "event": event})
                self.events_sent += 1

    async def drop_all(self) -> int:
        sessions = list(self._sessions)
        for s in sessions:
            await s.ws.close(code=1006, message=b"dropped by fault")
        return len(sessions)

    def describe(self) -> dict[str, Any]:
        return {
            "sessions": len(self._sessions),
            "subscriptions": sum(len(s.subscriptions) for s in self._sessions),
            "events_sent": self.events_sent,
            "events_muted": self.events_muted,
            "mute": self.mute,
        }

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        session = _Session(ws)
        self._sessions.add(session)
        writer = asyncio.create_task(session.write_loop())
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                session.send(self._answer(session, msg.data))
        finally:
            self._sessions.discard(session)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    def _answer(self, session: _Session, text: str) -> dict[str, Any]:
        try:
            req = json.loads(text)
            req_id, method, params = req.get("id"), req["method"], req.get("params") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            return {"id": None, "status": 400, "error": {"code": -1100, "msg": "Malformed request."}}
        if method == "ping":
            return {"id": req_id, "status": 200, "result": {}}
        if method == "session.subscriptions":
            result = [{"subscriptionId": s} for s in session.subscriptions]
            return {"id": req_id, "status": 200, "result": result}
        if method == "userDataStream.unsubscribe":
            sub = params.get("subscriptionId")
            if sub is None:
                session.subscriptions.clear()
            else:
                session.subscriptions.pop(int(sub), None)
            return {"id": req_id, "status": 200, "result": {}}
        if method != "userDataStream.subscribe.signature":
            return _error(req_id, 400, -1002, f"Method {method} is not supported by the simulator.")
        account = self.accounts.get(str(params.get("apiKey", "")))
        if account is None:
            return _error(req_id, 401, -2015, "Invalid API-key, IP, or permissions for action.")
        signature = str(params.get("signature", ""))
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        if not account.verify(payload, signature):
            return _error(req_id, 400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", 5000))
        except (KeyError, ValueError):
            return _error(req_id, 400, -1102, "Mandatory parameter 'timestamp' was not sent.")
        problem = self.timestamp_problem(ts, min(window, self.recv_window_ms))
        if problem is not None:
            return _error(req_id, 400, -1021, problem)
        if account.api_key in session.subscriptions.values():
            return _error(req_id, 400, -1210, "This account is already subscribed on this connection.")
        sub_id = next(self._ids)
        session.subscriptions[sub_id] = account.api_key
        return {"id": req_id, "status": 200, "result": {"subscriptionId": sub_id}}


def _error(req_id: Any, status: int, code: int, msg: str) -> dict[str, Any]:
    return {"id": req_id, "status": status, "error": {"code": code, "msg": msg}}


class _Session:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.subscriptions: dict[int, str] = {}
        self._out: asyncio.Queue[str] = asyncio.Queue(maxsize=10_000)

    def send(self, payload: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._out.put_nowait(json.dumps(payload, separators=(",", ":")))

    async def write_loop(self) -> None:
        while True:
            text = await self._out.get()
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
