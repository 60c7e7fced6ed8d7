"""Fixtures for the order tests: a real SQLite store, the simulator over sockets, ccxt as the client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tradefleet.adapters.binance_exec import BinanceExecution
from tradefleet.adapters.credentials import Credentials
from tradefleet.config import BotConfig
from tradefleet.coord.lease import LocalLease
from tradefleet.domain.models import Position, Side, Signal
from tradefleet.engine.order_manager import OrderManager
from tradefleet.engine.risk_gate import RiskGate
from tradefleet.metrics import BotMetrics
from tradefleet.ports import Execution, Lease, RiskState, Store, SymbolRules
from tradefleet.store import open_store
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

SIM_CREDENTIALS = Credentials(api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET)


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    """Wait for a (sync or async) predicate; generous timeout for a noisy 2-core machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def sim_orders(sim: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{sim.rest_url}/sim/orders") as r:
        result: dict[str, Any] = await r.json()
        return result


async def sim_trading_fault(sim: Any, **fault: Any) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{sim.rest_url}/sim/orders/faults", json=fault) as r:
        assert r.status == 200, await r.text()


def bot_config(sim: Any, **over: Any) -> BotConfig:
    base: dict[str, Any] = dict(
        name="orders-test",
        symbol="BTC/USDT",
        interval="1m",
        short_window=2,
        long_window=3,
        quote_amount=Decimal("100"),
        mode="testnet",
        rest_url=sim.rest_url,
        ws_api_url=f"{sim.ws_url}/ws-api/v3",
    )
    base.update(over)
    return BotConfig(**base)


def sim_rules(sim: Any, symbol: str = "BTCUSDT") -> SymbolRules:
    r = sim.exchange.rules(symbol)
    return SymbolRules(
        market_id=symbol, base_asset=r.base, quote_asset=r.quote, step_size=r.step_size, min_qty=r.min_qty,
        max_qty=r.max_qty, tick_size=r.tick_size, min_notional=r.min_notional,
    )  # fmt: skip


def make_signal(config: BotConfig, side: Side, n: int, close: str = "0") -> Signal:
    t = 1_700_000_000_000 + n * 60_000
    return Signal(
        signal_id=f"{config.name}:{config.interval}:{t}:{side.value}", bot=config.name, exchange="binance",
        symbol=config.symbol, interval=config.interval, side=side, candle_open_time=t,
        candle_close_time=t + 59_999, close=Decimal(close), sma_short=Decimal(1), sma_long=Decimal(1),
        created_at=t + 60_000,
    )  # fmt: skip


ASK0 = Decimal("50000.00")
BID0 = Decimal("49999.00")


def steady_book(levels: int = 200) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """A known book: asks 50000.00 + i, bids 49999.00 - i, 0.001 BTC each (walking levels is visible)."""
    asks = [(ASK0 + i, Decimal("0.001")) for i in range(levels)]
    bids = [(BID0 - i, Decimal("0.001")) for i in range(levels)]
    return bids, asks


@pytest.fixture
async def sim(make_sim: Any) -> Any:
    """The simulator with its producers stopped and a known, steady book: fills are predictable and
    no generated diff races the test's orders."""
    server = await make_sim()
    await server.exchange.stop()
    bids, asks = steady_book()
    market = server.exchange.markets["BTCUSDT"]
    market.seed(bids, asks, market.update_id + 1)
    return server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/orders.sqlite")
    await s.open()
    yield s
    await s.close()


@pytest.fixture(params=["sqlite", "buffered"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The raw SQLite store, and what the bot's runtime hands the order manager: the buffered
    writer (orders durable before they are sent; `apply_order_update` returns None)."""
    raw = open_store(f"sqlite:///{tmp_path}/orders.sqlite")
    await raw.open()
    if request.param == "sqlite":
        yield raw
        await raw.close()
        return
    from tradefleet.store.buffered import BufferedStore

    buffered = BufferedStore(raw, BotMetrics(), flush_ms=20)
    buffered.start()
    yield buffered
    await buffered.close()


@pytest.fixture
async def lease() -> AsyncIterator[Lease]:
    lease = LocalLease("test-holder")
    await lease.start()
    yield lease
    await lease.stop()


Running = tuple[OrderManager, "asyncio.Task[None]"]


@pytest.fixture
async def run_manager() -> AsyncIterator[Callable[..., Awaitable[OrderManager]]]:
    """Start managers (recover + run as a task); everything is stopped at teardown."""
    started: list[tuple[OrderManager, asyncio.Task[None]]] = []

    async def start(**kw: Any) -> OrderManager:
        kw.setdefault("metrics", BotMetrics())
        kw.setdefault("reconcile_interval_s", 0.5)
        manager = OrderManager(**kw)
        await manager.recover()
        task = asyncio.get_running_loop().create_task(manager.run())
        started.append((manager, task))
        return manager

    yield start
    for manager, task in started:
        task.cancel()
        with __import__("contextlib").suppress(asyncio.CancelledError, Exception):
            await task
        await manager.execution.close()


def exchange_execution(config: BotConfig, **kw: Any) -> Execution:
    kw.setdefault("recv_window_ms", 2000)
    kw.setdefault("timeout_ms", 3000)
    return BinanceExecution(config, SIM_CREDENTIALS, **kw)


class HoldingProxy:
    """TCP between the bot and a server on `port` (the simulator, Redis): requests go through at once;
    while `hold` is set, the server's answers wait here until `release()`. `async with` it: its
    address is then `url` (with `scheme`)."""

    def __init__(self, port: int, scheme: str = "http") -> None:
        self.port = port
        self.scheme = scheme
        self.url = ""
        self.hold = False
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HoldingProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.url = f"{self.scheme}://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        assert self._server is not None
        self._server.close()

    def release(self) -> None:
        self._released.set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, held: bool) -> None:
            while data := await src.read(65536):
                if held and self.hold:
                    await self._released.wait()
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_w, False), pipe(up_r, writer, True), return_exceptions=True)


def risk_gate(
    config: BotConfig, state: RiskState, metrics: BotMetrics, holder: list[OrderManager]
) -> RiskGate:
    """The risk gate as the runtime builds it, on `state`, reading the position of the manager in
    `holder` (appended once it runs)."""
    empty = Position(config.name, config.symbol)
    return RiskGate(
        config=config, state=state, metrics=metrics, quote_asset="USDT",
        position=lambda: holder[0].position if holder else empty, mark=lambda: None,
        may_trade=lambda: bool(holder and holder[0].trading_ready), on_flatten=lambda h: None,
    )  # fmt: skip
