"""Signal -> order -> fill latency through the real order path, against the simulator over loopback.

`python -m bench.orders [--n 40]`: one OrderManager with the real BinanceExecution (ccxt, signed
REST) and a real SQLite store trades N alternating BUY/SELL signals on the simulator's steady book;
each is timed from `submit_signal` until the final order state is applied. The baseline in the same
run is the same path with ccxt's client-side rate limiter switched back on (ccxt's default, which the
trading client turns off). Ends with one line:
`orders p50_ms=<x> p90_ms=<x> max_ms=<x> baseline_p50_ms=<x> ratio=<x>`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

from tests.orders.conftest import bot_config, exchange_execution, make_signal, sim_rules, steady_book

from tradefleet.coord.lease import LocalLease
from tradefleet.domain.models import Side
from tradefleet.engine.order_manager import OrderManager
from tradefleet.metrics import BotMetrics
from tradefleet.store import open_store
from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.options import SimOptions
from tradefleet_sim.server import SimServer


async def run(n: int, *, client_throttle: bool) -> dict[str, float]:
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
            execution: Any = exchange_execution(config)
            execution._ex.enableRateLimit = client_throttle
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
            await execution.close()
            await store.close()
    finally:
        await server.stop()
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p90_ms": latencies[int(len(latencies) * 0.9)] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


async def main(n: int) -> None:
    ours = await run(n, client_throttle=False)
    baseline = await run(n, client_throttle=True)
    print(f"{'':24} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}")
    for name, r in (("ours (no client throttle)", ours), ("ccxt default throttle", baseline)):
        print(f"{name:24} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f} {r['max_ms']:8.1f}")
    print(
        f"orders p50_ms={ours['p50_ms']:.1f} p90_ms={ours['p90_ms']:.1f} max_ms={ours['max_ms']:.1f} "
        f"baseline_p50_ms={baseline['p50_ms']:.1f} ratio={baseline['p50_ms'] / ours['p50_ms']:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.orders", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="signals to trade (alternating BUY/SELL)")
    asyncio.run(main(parser.parse_args().n))
