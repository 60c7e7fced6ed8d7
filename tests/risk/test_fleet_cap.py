"""The fleet cap on real processes: every bot signals BUY on the same candle close, round after round,
and the sum of the positions (counted on the simulator, from its own order book) never exceeds the cap;
a bot killed (-9) while holding its room stops blocking the fleet once its entry's TTL has passed."""

from __future__ import annotations

import random
import shutil
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisServer
from tests.risk.fleet import Bot, Sim, ms, wait, write_candles, zigzag

pytestmark = pytest.mark.slow


@pytest.fixture
def sim(tmp_path: Path, redis_server: RedisServer) -> Iterator[Sim]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/run installs it)")
    s = Sim(tmp_path, write_candles(tmp_path / "zigzag.csv", zigzag(600)), speed=1.5)
    try:
        yield s
    finally:
        s.stop()


def _exposure_timeline(sim: Sim, bots: list[Bot]) -> list[Decimal]:
    """The fleet's total quote held after each order the exchange executed, in the exchange's order."""
    owner = {e["client_order_id"]: b.name for b in bots for e in b.created()}
    held: dict[str, Decimal] = {}
    out = []
    for o in sim.orders():
        bot = owner.get(o["clientOrderId"])
        assert bot is not None, f"an order no bot created: {o}"
        if o["side"] == "BUY":
            held[bot] = held.get(bot, Decimal(0)) + Decimal(o["cummulativeQuoteQty"])
        elif Decimal(o["executedQty"]) > 0:
            held[bot] = Decimal(0)  # a SELL closes the whole position
        out.append(sum(held.values(), Decimal(0)))
    return out


def test_fleet_cap_holds_when_every_bot_buys_in_the_same_instant(
    tmp_path: Path, sim: Sim, redis_server: RedisServer
) -> None:
    cap, rounds = Decimal(250), 8
    rng = random.Random(16)
    # Different sizes per bot, so which bots fit into the room changes with who wins each race.
    amounts = [rng.choice([60, 90, 100, 130]) for _ in range(5)]
    bots = [
        Bot(tmp_path, sim, redis_server.url, f"cap-{i}", quote_amount=a, max_fleet_quote=cap)
        for i, a in enumerate(amounts)
    ]
    try:

        def buy_rounds() -> int:
            return len({e["signal_id"] for b in bots for e in b.created() if "-buy-" in e["signal_id"]})

        wait(lambda: buy_rounds() >= rounds, 240, f"{rounds} BUY rounds")
        sim.pause()
        time.sleep(1.0)
        timeline = _exposure_timeline(sim, bots)
        denied = [
            s for b in bots for s in b.rows("signals") if str(s["action"]).startswith("risk: fleet_cap")
        ]
        print(f"\nfleet cap {cap}: sizes {amounts}; {len(timeline)} orders on the exchange; "
              f"max total held {max(timeline)}; {len(denied)} BUYs refused for the cap")  # fmt: skip
        assert max(timeline) <= cap, timeline
        assert denied, "the cap never had to refuse anything: the test did not race"
        assert sim.describe()["duplicates"] == 0
        # Every bot's stored signals end with an order or a reason: none left pending.
        assert all(s["action"] != "pending" for b in bots for s in b.rows("signals")[:-1])
    finally:
        for b in bots:
            b.stop()


@pytest.mark.parametrize("holding", ["position", "order_in_flight"])
def test_a_bot_killed_holding_the_room_blocks_the_fleet_only_until_its_ttl(
    tmp_path: Path, sim: Sim, redis_server: RedisServer, holding: str
) -> None:
    ttl_ms = 6000
    if holding == "order_in_flight":
        sim.order_faults(delay_fill_ms=600_000)  # every BUY answers NEW and stays open: reserved, unfilled
    bots = [
        Bot(tmp_path, sim, redis_server.url, f"ttl-{i}", max_fleet_quote=100, reservation_ttl_ms=ttl_ms)
        for i in range(2)
    ]

    def holder() -> Bot | None:
        if holding == "position":
            return next((b for b in bots if (b.qty() or 0) > 0), None)
        return next((b for b in bots if any(e["status"] == "NEW" for e in b.events("order"))), None)

    try:
        winner = wait(holder, 180, f"one bot holding the room ({holding})")
        loser = next(b for b in bots if b is not winner)
        winner.kill(signal.SIGKILL)
        killed_ms = int(time.time() * 1000)
        winner.proc.wait(timeout=20)
        r = redis.Redis.from_url(redis_server.url, decode_responses=True)
        assert winner.name in r.hgetall("tradefleet:risk:default:exposure")  # still holding the room
        wait(lambda: len([e for e in loser.created() if ms(e["time"]) > killed_ms]) >= 1, 120,
             "the other bot to buy once the dead bot's entry expired")  # fmt: skip
        first = min(ms(e["time"]) for e in loser.created() if ms(e["time"]) > killed_ms)
        refused = [s for s in loser.rows("signals") if str(s["action"]).startswith("risk: fleet_cap")]
        print(f"\nkill -9 holding the room ({holding}): the other bot bought {first - killed_ms} ms after the kill "
              f"(entry TTL {ttl_ms} ms); {len(refused)} of its BUYs refused for the cap before")  # fmt: skip
        assert refused, "the loser was never refused: the dead bot did not hold the room"
        assert winner.name not in r.hgetall("tradefleet:risk:default:exposure")
    finally:
        for b in bots:
            b.stop()
