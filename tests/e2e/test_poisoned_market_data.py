"""Poisoned numbers over real sockets: counted, skipped, and the strategy keeps deciding.

A real `tradefleet bot` process (paper mode) against the simulator, which replays 1-minute candles
fast (windows 2/5: a crossing every few candles). Once signals flow, the simulator's `bad_numbers`
fault sends well-formed frames on every subscribed stream whose numbers are poison: NaN, Infinity,
1e30, zero, negative, Unicode digits, 3000 digits, `1_0`, ` 1` (on the kline stream, the open
candle marked closed with that close). Before: ticker and trade garbage was not counted, a NaN
close stopped every later signal, 1e30 bent the SMAs for good. Now every poisoned frame is a counted
malformed frame, the book stays in sync with the exchange, and signals keep coming with finite SMAs.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from tests.feed.wsserver import wait_until
from tests.obs.botproc import BotProcess
from tests.plugins.sim import MakeSim, sim_fault

pytestmark = pytest.mark.slow

ROUNDS = 10  # one per poisoned value in the simulator's list


async def test_poisoned_numbers_on_every_stream_are_counted_and_the_strategy_keeps_deciding(
    tmp_path: Path, make_sim: MakeSim
) -> None:
    sim = await make_sim(kline_interval="1m", speed=4.0, history=60, progress_frames=1)
    bot = BotProcess(tmp_path, sim, interval="1m", short_window=2, long_window=5, depth_limit=100)
    bot.start()
    try:
        async with aiohttp.ClientSession() as session:
            await bot.wait_ready(session)

            async def status() -> dict[str, object]:
                _, body = await bot.get(session, "/status")
                result: dict[str, object] = body
                return result

            signals: list[int] = []

            async def signals_at_least(n: int) -> bool:
                signals.append(int((await status())["signals"]))  # type: ignore[call-overload]
                return signals[-1] >= n

            await wait_until_async(lambda: signals_at_least(1), 90, "a first signal")
            before_malformed = await bot.metric(session, "tradefleet_malformed_frames_total")
            for _ in range(ROUNDS):
                await sim_fault(sim, kind="malformed", count=1, shape="bad_numbers")
            # 4 streams (depth, bookTicker, trade, kline) x ROUNDS poisoned frames, each counted.
            malformed: list[float] = []

            async def all_counted() -> bool:
                malformed.append(await bot.metric(session, "tradefleet_malformed_frames_total"))
                return malformed[-1] - before_malformed >= 4 * ROUNDS

            await wait_until_async(all_counted, 60, f"{4 * ROUNDS} malformed frames counted")
            after = signals[-1]
            await wait_until_async(lambda: signals_at_least(after + 2), 120, "signals after the poison")
            s = await status()
            strategy = s["strategy"]
            assert isinstance(strategy, dict)
            for key in ("sma_short", "sma_long"):
                value = Decimal(strategy[key])
                assert value.is_finite() and 0 < value < Decimal(10) ** 7, (key, value)
            assert math.isfinite(await bot.metric(session, "tradefleet_last_price"))
            await bot.wait_ready(session)  # the book resynced after the poisoned diffs
            assert "Traceback" not in bot.tail(200_000), bot.tail()
    finally:
        bot.stop()


async def wait_until_async(cond: object, timeout: float, what: str) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        if await cond():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


_ = wait_until
