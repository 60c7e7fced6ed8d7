"""Binance's connection rules for market-data websockets: a ping every `ping_interval` (20 s), a
close when no pong came back within `pong_timeout` (Binance documents one minute), and, if asked,
a close when the connection reaches `max_age` (Binance cuts every connection at 24 hours).

Why a module: aiohttp's built-in heartbeat cuts a silent peer after half a ping period with no close
frame, far stricter than Binance; a client tuned against the simulator would then be wrong on the
real exchange. Any pong counts, solicited or not, as on Binance. These are real-time durations (a
socket lives in real time), never the exchange clock.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web


class KeepAlive:
    def __init__(self, ws: web.WebSocketResponse, *, ping_interval: float, pong_timeout: float,
                 max_age: float | None) -> None:  # fmt: skip
        self.ws = ws
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_age = max_age
        self.opened = self.last_pong = time.monotonic()

    def pong(self) -> None:
        self.last_pong = time.monotonic()

    async def run(self) -> None:
        while not self.ws.closed:
            now = time.monotonic()
            waits = [self.ping_interval, self.last_pong + self.pong_timeout - now]
            if self.max_age is not None:
                waits.append(self.opened + self.max_age - now)
            await asyncio.sleep(max(0.0, min(waits)))
            now = time.monotonic()
            if self.ws.closed:
                return
            if self.max_age is not None and now - self.opened >= self.max_age:
                await self.ws.close(code=1001, message=b"connection lifetime reached")
                return
            if now - self.last_pong >= self.pong_timeout:
                await self.ws.close(code=1008, message=b"pong timeout")
                return
            try:
                await self.ws.ping()
            except (ConnectionError, RuntimeError):
                return
