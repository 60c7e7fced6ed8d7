"""One aiohttp server for everything the simulator speaks: Binance REST, Binance websockets and
the `/sim/` control API, on one port.

`build_app(exchange)` wires the routes and, if another module provides
`tradefleet_sim.trading.setup(app, exchange)` (signed order endpoints, account, user data),
lets it add its own. `SimServer` is the async context manager tests, the CLI and the demo use:

    async with SimServer(SimExchange(SimOptions(...)), port=0) as sim:
        sim.rest_url   # http://127.0.0.1:PORT  (REST under /api/v3/...)
        sim.ws_url     # ws://127.0.0.1:PORT    (/ws/<stream>, /stream?streams=...)

It refuses to listen anywhere but the host it is given (127.0.0.1 by default).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import TracebackType
from typing import Any

from aiohttp import web

from tradefleet_sim import control, market_rest, rest, streams
from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.streams import EXCHANGE


def build_app(exchange: SimExchange) -> web.Application:
    app = web.Application(middlewares=[rest.binance_edge])
    app[EXCHANGE] = exchange
    rest.add_routes(app)
    market_rest.add_routes(app)
    streams.add_routes(app)
    control.add_routes(app)
    # The orders engineer's module is optional: a market-data-only simulator still works.
    if importlib.util.find_spec("tradefleet_sim.trading") is not None:
        trading = importlib.import_module("tradefleet_sim.trading")
        trading.setup(app, exchange)
    return app


class SimServer:
    def __init__(self, exchange: SimExchange | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.exchange = exchange or SimExchange()
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        app = build_app(self.exchange)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server: Any = site._server  # aiohttp exposes the bound port only here
        if server is not None and getattr(server, "sockets", None):
            self.port = int(server.sockets[0].getsockname()[1])
        await self.exchange.start()

    async def stop(self) -> None:
        await self.exchange.stop()
        await self.exchange.hub.close_all(1001, b"simulator stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
