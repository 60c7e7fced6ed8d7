"""One aiohttp server for everything the simulator speaks: Binance REST, Binance websockets and
the `/sim/` control API, on one port.

`build_app(exchange)` wires the routes and, if another module provides
`tradefleet_sim.trading.setup(app, exchange)` (signed order endpoints, account, user data),
lets it add its own. `SimServer` is the async context manager tests, the CLI and the demo use:

    async with SimServer(SimExchange(SimOptions(...)), port=0) as sim:
        sim.rest_url   # http://127.0.0.1:PORT  (REST under /api/v3/...)
        sim.ws_url     # ws://127.0.0.1:PORT    (/ws/<stream>, /stream?streams=...)

With `tls=TlsFiles` (`tls.py`) it also listens with TLS on `tls_port` (0 = any free port), for
clients that insist on `wss://`/`https://`: `sim.wss_url`, `sim.https_url`.

It refuses to listen anywhere but the host it is given (127.0.0.1 by default).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from types import TracebackType
from typing import Any

from aiohttp import web

from tradefleet_sim import control, market_rest, rest, streams
from tradefleet_sim.arrivals import ArrivalStamps
from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.streams import EXCHANGE
from tradefleet_sim.tls import TlsFiles, server_context


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


def _bound_port(site: web.TCPSite, asked: int) -> int:
    server: Any = site._server  # aiohttp exposes the bound port only here
    if server is not None and getattr(server, "sockets", None):
        return int(server.sockets[0].getsockname()[1])
    return asked


class SimServer:
    def __init__(
        self,
        exchange: SimExchange | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: TlsFiles | None = None,
        tls_port: int = 0,
    ) -> None:
        self.exchange = exchange or SimExchange()
        self.host = host
        self.port = port
        self.tls = tls
        self.tls_port = tls_port
        self._runner: web.AppRunner | None = None
        self._stamped: asyncio.Server | None = None  # the listener with `ArrivalStamps`

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def https_url(self) -> str:
        return f"https://{self.host}:{self.tls_port}"

    @property
    def wss_url(self) -> str:
        return f"wss://{self.host}:{self.tls_port}"

    async def start(self) -> None:
        app = build_app(self.exchange)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        if self.exchange.options.record_arrivals:
            handler = self._runner.server
            assert handler is not None
            self._stamped = await asyncio.get_running_loop().create_server(
                lambda: ArrivalStamps(handler()), self.host, self.port, reuse_address=True
            )
            self.port = int(self._stamped.sockets[0].getsockname()[1])
        else:
            site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
            await site.start()
            self.port = _bound_port(site, self.port)
        if self.tls is not None:
            tls_site = web.TCPSite(
                self._runner,
                self.host,
                self.tls_port,
                reuse_address=True,
                ssl_context=server_context(self.tls),
            )
            await tls_site.start()
            self.tls_port = _bound_port(tls_site, self.tls_port)
        await self.exchange.start()

    async def stop(self) -> None:
        await self.exchange.stop()
        await self.exchange.hub.close_all(1001, b"simulator stopping")
        if self._stamped is not None:
            self._stamped.close()  # no new connections; the runner's cleanup closes the open ones
            self._stamped = None
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
