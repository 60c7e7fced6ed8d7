"""The hot close in the real bot process: `tradefleet bot` (its own event loop from `tradefleet.awake`)
against the simulator replaying candles fast, seen only from outside, as a pod is: its /metrics says
it rehearsed before closes and how far off its forecasts were, and the SQLite file it leaves holds
exactly the orders its signals made, nothing a rehearsal built."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from tests.obs.botproc import BotProcess
from tests.plugins.sim import MakeSim

pytestmark = pytest.mark.slow


def _samples(text: str, name: str) -> dict[str, float]:
    return {
        labels: float(value) for labels, value in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)
    }


async def test_the_bot_rehearses_before_closes_and_stores_only_what_it_traded(
    tmp_path: Path, make_sim: MakeSim, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(kline_interval="1m", speed=4.0, history=60, loop=True)
    bot = BotProcess(tmp_path, sim, interval="1m", short_window=2, long_window=5, hot_close_ms=20)
    bot.start()
    try:
        await bot.wait_ready(http)
        deadline = time.monotonic() + 120
        rehearsed = orders = 0.0
        text = ""
        while time.monotonic() < deadline and not (rehearsed >= 3 and orders >= 2):
            bot.check_alive()
            _, text = await bot.get(http, "/metrics")
            rehearsals = _samples(text, "tradefleet_close_rehearsals_total")
            rehearsed = sum(
                v for k, v in rehearsals.items() if 'result="order"' in k or 'result="no_order"' in k
            )
            orders = sum(_samples(text, "tradefleet_orders_total").values())
            await asyncio.sleep(0.2)
        assert rehearsed >= 3 and orders >= 2, f"rehearsed {rehearsed}, orders {orders}\n{bot.tail()}"
        assert _samples(text, "tradefleet_close_rehearsals_total")['{result="failed"}'] == 0
        assert _samples(text, "tradefleet_close_forecast_error_seconds")[""] != 0.0  # a close was forecast
    finally:
        assert bot.stop() == 0, bot.tail()
    with sqlite3.connect(bot.db) as db:
        stored = db.execute("SELECT count(*) FROM orders").fetchone()[0]
        acted = db.execute("SELECT count(*) FROM signals WHERE action = 'order'").fetchone()[0]
        unsent = db.execute("SELECT count(*) FROM orders WHERE status = 'PENDING'").fetchone()[0]
    assert stored == acted >= orders and unsent == 0  # one order per signal that traded, none rehearsed
