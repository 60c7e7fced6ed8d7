"""Shared setup for the third-party client tests: a simulator whose one clock is NOT the wall
clock (a testnet "in 2018", running at real rate), so a client that does not sync its clock to the
server fails (-1021) and one that does passes: the proof that every time the simulator shows and
checks comes from one clock."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tradefleet_sim.clock import OffsetClock

TESTNET_2018_MS = 1_525_392_000_000  # 2018-05-04, inside the replayed candle history
SIM_OPTIONS: dict[str, Any] = {"history": 600, "speed": 1.0, "depth_rate": 20.0, "trade_probability": 0.8}


def clock_2018() -> OffsetClock:
    return OffsetClock(TESTNET_2018_MS)


def skew_s(server_ms: int) -> float:
    return abs(server_ms - time.time() * 1000) / 1000


async def wait_for(check: Callable[[], Awaitable[Any] | Any], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class ThreadedSim:
    """A simulator on its own event loop in a background thread, for clients that block their
    caller's loop with synchronous HTTP while they start (cryptofeed's symbol and listenKey loads)."""

    def __init__(self, clock: Any = None, tls: Any = None, **options: Any) -> None:
        from tests.plugins.sim import TEST_DEFAULTS
        from tradefleet_sim.exchange import SimExchange
        from tradefleet_sim.options import SimOptions
        from tradefleet_sim.server import SimServer

        opts = SimOptions.from_mapping({**TEST_DEFAULTS, **options})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="threaded-sim", daemon=True)
        self.thread.start()
        self.server = SimServer(SimExchange(opts, clock=clock), port=0, tls=tls)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
