"""The order path's two Redis round trips, through redis-py's asyncio client and through `coord.resp`,
interleaved in one run against one real redis-server on loopback:

    python -m bench.redis_hot              # 2,000 rounds
    python -m bench.redis_hot --n 300      # quicker, rougher tails

Rows (each one awaited from the event loop, start to answer, µs):
- `confirm, redis-py`: the lease's confirmation as `RedisLease.confirm` made it before (its `_CONFIRM`
  script through redis-py's `register_script`, the same checks on the answer);
- `confirm, resp`: `RedisLease.confirm()` today (`start_confirm`, our client);
- `reserve, redis-py` / `reserve, resp`: the fleet reserve (`_RESERVE`) the same two ways, the second
  being `RedisRiskState.reserve` today;
- `confirm + 0.5 ms block, redis-py task` / `... resp`: the confirmation started, then 0.5 ms of work
  that blocks the loop (an order's commit in fsync), then its answer awaited: a task's request leaves
  only after the block, `start_confirm`'s before it; `0.5 ms block alone` is the floor (the block and
  one loop turn, nothing asked).

The four are run in a rotating order each round so both clients see the same machine. Ends with one
line: `redis_hot confirm_redispy_p50_us=… confirm_resp_p50_us=… confirm_ratio=… reserve_…`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

from tests.conftest import RedisServer

from tradefleet.coord import redis_client
from tradefleet.coord.lease import _CONFIRM, RedisLease, lease_key
from tradefleet.coord.risk_state import _RESERVE, RedisRiskState, to_units
from tradefleet.domain.risk import RiskLimits

BLOCK_S = 0.0005


def _block() -> None:
    """What the order's commit does to the loop: holds it (here in a sleep; there in fsync)."""
    time.sleep(BLOCK_S)


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="redis-hot-") as d:
        server = RedisServer(Path(d))
        server.start()
        try:
            await run(server.url, args.n)
        finally:
            server.stop()


async def run(url: str, n: int) -> None:
    lease = RedisLease(url, lease_key("bench", "binance", "BTCUSDT"), "bench", ttl_ms=60_000, renew_ms=20_000)
    await lease.start()
    state = RedisRiskState(url, "bench")
    await state.open()
    limits = RiskLimits()
    amount = Decimal(1)

    # The way before: redis-py, one client per object as `redis_client.connect` builds it.
    legacy = redis_client.connect(url, timeout_s=0.5)
    legacy_confirm = legacy.register_script(_CONFIRM)
    legacy_reserve = legacy.register_script(_RESERVE)
    key, value, margin = lease.key, lease._value, lease.safety_margin_ms
    assert value is not None and lease.may_trade()

    async def confirm_redispy() -> bool:
        pttl = int(await legacy_confirm(keys=[key], args=[value]))
        return pttl != -3 and pttl > margin and lease.may_trade()

    async def reserve_redispy() -> str | None:
        result = await legacy_reserve(
            keys=[state.exposure_key],
            args=["bench-legacy", "USDT", to_units(amount), to_units(limits.max_fleet_quote),
                  to_units(limits.max_quote_asset_quote), 60_000],
        )  # fmt: skip
        return None if str(result[0]) == "ok" else str(result[0])

    async def confirm_resp() -> bool:
        return await lease.confirm()

    async def reserve_resp() -> str | None:
        return await state.reserve("bench-resp", "USDT", amount, limits, 60_000)

    async def overlap_redispy() -> bool:
        task = asyncio.get_running_loop().create_task(confirm_redispy())
        _block()
        return await task

    async def overlap_resp() -> bool:
        answer = lease.start_confirm()
        _block()
        return await answer

    async def block_alone() -> None:
        _block()
        await asyncio.sleep(0)

    rows: dict[str, Callable[[], Awaitable[object]]] = {
        "confirm, redis-py": confirm_redispy,
        "confirm, resp": confirm_resp,
        "reserve, redis-py": reserve_redispy,
        "reserve, resp": reserve_resp,
        "confirm + 0.5 ms block, redis-py task": overlap_redispy,
        "confirm + 0.5 ms block, resp": overlap_resp,
        "0.5 ms block alone": block_alone,
    }
    names = list(rows)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(50):  # warm: connections, script caches
        for fn in rows.values():
            await fn()
    for i in range(n):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            start = time.perf_counter_ns()
            result = await rows[name]()
            times[name].append((time.perf_counter_ns() - start) / 1000)
            assert result in (True, None), (name, result)  # leading, and no cap to deny
            await asyncio.sleep(0)  # one loop turn between calls, as on a bot

    print(f"{'':40} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9}")
    for name in names:
        xs = times[name]
        print(f"{name:40} {statistics.median(xs):9.0f} {_pct(xs, 0.9):9.0f} {_pct(xs, 0.99):9.0f}")
    med = {name: statistics.median(times[name]) for name in names}
    p99 = {name: _pct(times[name], 0.99) for name in names}
    c_old, c_new = med["confirm, redis-py"], med["confirm, resp"]
    r_old, r_new = med["reserve, redis-py"], med["reserve, resp"]
    print(
        f"redis_hot confirm_redispy_p50_us={c_old:.0f} confirm_resp_p50_us={c_new:.0f}"
        f" confirm_ratio={c_old / c_new:.2f} confirm_resp_p99_us={p99['confirm, resp']:.0f}"
        f" reserve_redispy_p50_us={r_old:.0f} reserve_resp_p50_us={r_new:.0f}"
        f" reserve_ratio={r_old / r_new:.2f} reserve_resp_p99_us={p99['reserve, resp']:.0f}"
        f" overlap_redispy_p50_us={med['confirm + 0.5 ms block, redis-py task']:.0f}"
        f" overlap_resp_p50_us={med['confirm + 0.5 ms block, resp']:.0f}"
        f" block_alone_p50_us={med['0.5 ms block alone']:.0f} n={n}"
    )
    await legacy.aclose()
    await state.close()
    await lease.stop()


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="rounds (each times every row once)")
    asyncio.run(main(p.parse_args()))


if __name__ == "__main__":
    cli()
