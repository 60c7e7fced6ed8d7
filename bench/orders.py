"""Signal -> order -> fill latency through the real order path, against the simulator over loopback.

`python -m bench.orders [--n 40] [--rounds 2]`: one OrderManager with the real BinanceExecution (our
signed REST client on our own HTTP/1.1 client, `adapters/http1.py`) and a real SQLite store trades N
alternating BUY/SELL signals on the simulator's steady book; each is timed from `submit_signal` until
the final order state is applied. Two peers in the same run: the same path with the same signing on
an aiohttp session (`bench.aiohttp_signed`, the bot's client before `http1`), and the trading client
the bot had before #17, ccxt's async Binance client (`bench.ccxt_execution`, ccxt's client-side
throttle off as the bot ran it). The three alternate in rounds so all see the same machine load.
Also printed: the wall time of `submit` alone (sign, send, the simulator's handler, parse the FULL
answer) and the Python CPU time per order during each client's `submit` (signing, encoding, sending,
parsing). It is process CPU and the simulator runs in this process, so its order handler is in all
figures: the differences are the clients'. (`bench.signed_client` times the HTTP clients alone.)
Ends with one line:
`orders p50_ms=<x> p90_ms=<x> max_ms=<x> baseline_p50_ms=<x> ratio=<x> cpu_ms=<x> baseline_cpu_ms=<x>
submit_ms=<x> baseline_submit_ms=<x> aiohttp_submit_ms=<x> aiohttp_cpu_ms=<x>` (one line; baseline =
ccxt).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from tests.orders.conftest import (
    SIM_CREDENTIALS,
    bot_config,
    exchange_execution,
    make_signal,
    sim_rules,
    steady_book,
)

from bench.aiohttp_signed import AiohttpSignedRest
from bench.ccxt_execution import CcxtBinanceExecution
from tradefleet.adapters.binance_exec import BinanceExecution
from tradefleet.coord.lease import LocalLease
from tradefleet.domain.models import Side
from tradefleet.engine.order_manager import OrderManager
from tradefleet.metrics import BotMetrics
from tradefleet.store import open_store
from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.options import SimOptions
from tradefleet_sim.server import SimServer


class _CpuTimed:
    """An Execution whose `submit` adds the process CPU time it took to `cpu_s`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cpu_s: list[float] = []
        self.wall_s: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def submit(self, order: Any) -> Any:
        started, wall = time.process_time(), time.perf_counter()
        try:
            return await self.inner.submit(order)
        finally:
            self.cpu_s.append(time.process_time() - started)
            self.wall_s.append(time.perf_counter() - wall)


def _execution(config: Any, client: str) -> Any:
    if client == "ccxt":
        return CcxtBinanceExecution(config, SIM_CREDENTIALS, recv_window_ms=2000, timeout_ms=3000)
    if client == "aiohttp":
        rest: Any = AiohttpSignedRest(config.rest_url, SIM_CREDENTIALS, timeout_ms=3000)
        return BinanceExecution(config, SIM_CREDENTIALS, client=rest, recv_window_ms=2000, timeout_ms=3000)
    return exchange_execution(config)


async def run(n: int, *, client: str) -> dict[str, Any]:
    # Orders back to back to time them: with --n above 100 that is more than Binance's 100 orders per
    # 10 s, so the benchmark relaxes the simulator's limits on purpose (it measures latency, not limits).
    opts = SimOptions.from_mapping({"levels_per_side": 300, "klines": None, "enforce_limits": False})
    server = SimServer(SimExchange(opts), port=0)
    await server.start()
    await server.exchange.stop()  # a still book: only our orders move it
    market = server.exchange.markets["BTCUSDT"]
    bids, asks = steady_book(2000)
    market.seed(bids, asks, market.update_id + 1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(f"sqlite:///{tmp}/orders.sqlite")
            await store.open()
            lease = LocalLease("bench")
            await lease.start()
            config = bot_config(server)
            metrics = BotMetrics()
            inner = _execution(config, client)
            execution = _CpuTimed(inner)
            om = OrderManager(
                config=config, store=store, execution=execution, lease=lease, rules=sim_rules(server),
                metrics=metrics,
            )  # fmt: skip
            await om.recover()
            task = asyncio.create_task(om.run())
            latencies = []
            for i in range(n):
                signal = make_signal(config, Side.BUY if i % 2 == 0 else Side.SELL, i)
                started = time.perf_counter()
                om.submit_signal(signal)
                while not (
                    om.last_order is not None
                    and om.last_order.signal_id == signal.signal_id
                    and om.last_order.status.is_final
                ):
                    await asyncio.sleep(0.0005)
                latencies.append(time.perf_counter() - started)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await inner.close()
            await store.close()
    finally:
        await server.stop()
    return {"latencies": latencies, "cpu": execution.cpu_s, "wall": execution.wall_s}


def _merge(runs: list[dict[str, Any]]) -> dict[str, float]:
    lat = sorted(x for r in runs for x in r["latencies"])
    cpu = sorted(x for r in runs for x in r["cpu"])
    wall = sorted(x for r in runs for x in r["wall"])
    return {
        "p50_ms": statistics.median(lat) * 1000,
        "p90_ms": lat[int(len(lat) * 0.9)] * 1000,
        "max_ms": lat[-1] * 1000,
        "cpu_ms": statistics.median(cpu) * 1000,
        "submit_ms": statistics.median(wall) * 1000,
    }


async def main(n: int, rounds: int) -> None:
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "aiohttp": [], "ccxt": []}
    for _ in range(rounds):
        for client, client_runs in runs.items():
            client_runs.append(await run(n, client=client))
    ours, peer, baseline = _merge(runs["ours"]), _merge(runs["aiohttp"]), _merge(runs["ccxt"])
    print(f"{'':34} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'submit p50 ms':>14} {'submit CPU ms':>14}")
    for name, r in (("ours (signed REST, own HTTP/1.1)", ours), ("same signing on aiohttp", peer),
                    ("ccxt async client", baseline)):  # fmt: skip
        print(f"{name:34} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['max_ms']:8.1f} {r['submit_ms']:14.3f} "
              f"{r['cpu_ms']:14.3f}")  # fmt: skip
    print(
        f"orders p50_ms={ours['p50_ms']:.2f} p90_ms={ours['p90_ms']:.2f} max_ms={ours['max_ms']:.1f} "
        f"baseline_p50_ms={baseline['p50_ms']:.2f} ratio={baseline['p50_ms'] / ours['p50_ms']:.2f} "
        f"cpu_ms={ours['cpu_ms']:.3f} baseline_cpu_ms={baseline['cpu_ms']:.3f} "
        f"submit_ms={ours['submit_ms']:.3f} baseline_submit_ms={baseline['submit_ms']:.3f} "
        f"aiohttp_submit_ms={peer['submit_ms']:.3f} aiohttp_cpu_ms={peer['cpu_ms']:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.orders", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="signals to trade per round (alternating BUY/SELL)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per client (default 2)")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
