"""A scriptable websocket server on a real socket, for the feed loop's own tests: the test decides
what each accepted connection sends, when it stalls and when it is cut."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType

from websockets.asyncio.server import Server, ServerConnection, serve


class ScriptedServer:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.count = 0
        self._server: Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(self._handler, "127.0.0.1", self.port, compression=None)
        self.port = self._server.sockets[0].getsockname()[1] if self.port == 0 else self.port
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream?streams=btcusdt@depth@100ms"

    async def _handler(self, ws: ServerConnection) -> None:
        self.count += 1
        await self.accepted.put(ws)
        await ws.wait_closed()

    async def next_connection(self, timeout: float = 20.0) -> ServerConnection:
        return await asyncio.wait_for(self.accepted.get(), timeout)


async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Wait for a condition the code under test will make true; fail clearly after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
