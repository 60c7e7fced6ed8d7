"""Pytest fixtures for the exchange simulator (registered by tests/conftest.py).

- `sim`: a started `SimServer` on a free port with a generated BTCUSDT market (depth diffs at
  20/s) and the real BTCUSDT daily klines (replay starts on the first kline subscriber).
- `make_sim(clock=None, **options)`: an async factory for custom setups; options are `SimOptions`
  fields (unknown names fail), e.g. `await make_sim(replay_capture="2021-10-12", capture_speed=0)`;
  `clock` replaces the exchange's one clock (`tradefleet_sim.clock`).
  Every server it starts is stopped at teardown.

Helpers for tests: `sim_state(sim)`, `sim_book(sim, symbol)`, `sim_fault(sim, **fault)` talk to
the control API over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tradefleet_sim.clock import Clock
from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.options import SimOptions
from tradefleet_sim.server import SimServer

# Fast, light defaults for tests: a smaller book and a brisk diff rate.
TEST_DEFAULTS: dict[str, Any] = {"depth_rate": 20.0, "levels_per_side": 300}

MakeSim = Callable[..., Awaitable[SimServer]]


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    servers: list[SimServer] = []

    async def factory(clock: Clock | None = None, **options: Any) -> SimServer:
        opts = SimOptions.from_mapping({**TEST_DEFAULTS, **options})
        server = SimServer(SimExchange(opts, clock=clock), port=0)
        await server.start()
        servers.append(server)
        return server

    yield factory
    for s in reversed(servers):
        await s.stop()


@pytest.fixture
async def sim(make_sim: MakeSim) -> SimServer:
    return await make_sim()


async def _request(method: str, url: str, **kw: Any) -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kw) as r:
        body = await r.json()
        if r.status >= 400:
            raise AssertionError(f"{method} {url} -> {r.status}: {body}")
        return body


async def sim_state(sim: SimServer) -> dict[str, Any]:
    result: dict[str, Any] = await _request("GET", f"{sim.rest_url}/sim/state")
    return result


async def sim_book(sim: SimServer, symbol: str = "BTCUSDT", limit: int | None = None) -> dict[str, Any]:
    q = f"&limit={limit}" if limit else ""
    result: dict[str, Any] = await _request("GET", f"{sim.rest_url}/sim/book?symbol={symbol}{q}")
    return result


async def sim_fault(sim: SimServer, **fault: Any) -> dict[str, Any]:
    result: dict[str, Any] = await _request("POST", f"{sim.rest_url}/sim/faults", json=fault)
    return result
