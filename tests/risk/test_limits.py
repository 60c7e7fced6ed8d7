"""Loss limit and order-rate guard on a real bot process, the simulator over sockets and a real Redis.

- A bot fed a falling market after its BUY halts itself with a `daily_loss` reason before its own SELL
  signal comes, and that SELL is then refused with the halt's reason (stored).
- A bot driven by a signal storm (a crossover on every candle) sends exactly `max_orders_per_minute`
  orders, then trips its halt (`order_rate`) and refuses the rest.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisServer
from tests.risk.fleet import Bot, Sim, wait, write_candles

pytestmark = pytest.mark.slow


@pytest.fixture
def need_redis() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/run installs it)")


@pytest.fixture
def falling(tmp_path: Path, need_redis: None) -> Iterator[Sim]:
    # 25 slowly sinking candles (history and a little replay: SMA 2 below SMA 5), a jump (BUY), then
    # -1000 a candle: the SMA 2/5 SELL comes 5 candles after the jump, the 4-quote loss limit (on 100
    # quote) is reached on the 2nd falling candle.
    closes = [30_000.0 - 10 * k for k in range(25)] + [45_000.0 - 1000 * k for k in range(30)]
    s = Sim(tmp_path, write_candles(tmp_path / "falling.csv", closes), speed=1.0)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def storm(tmp_path: Path, need_redis: None) -> Iterator[Sim]:
    # Alternating closes: SMA(2) stays put while SMA(5) swings around it, a crossover on every candle.
    closes = [30_000.0] * 20 + [30_000.0 + (600 if k % 2 else 0) for k in range(400)]
    s = Sim(tmp_path, write_candles(tmp_path / "storm.csv", closes), speed=4.0)
    try:
        yield s
    finally:
        s.stop()


def test_loss_limit_halts_a_bot_fed_a_falling_market(
    tmp_path: Path, falling: Sim, redis_server: RedisServer
) -> None:
    bot = Bot(tmp_path, falling, redis_server.url, "loser", max_daily_loss_quote=4)
    try:
        wait(lambda: any(s["side"] == "SELL" for s in bot.rows("signals")), 180, "the SELL signal")
        trips = bot.events("risk_tripped")
        assert len(trips) == 1 and trips[0]["reason"].startswith("daily_loss"), trips
        sell = next(s for s in bot.rows("signals") if s["side"] == "SELL")
        wait(
            lambda: str(next(s for s in bot.rows("signals") if s["side"] == "SELL")["action"]) != "pending",
            30,
        )
        sell = next(s for s in bot.rows("signals") if s["side"] == "SELL")
        assert str(sell["action"]).startswith("risk: halted (bot loser: daily_loss"), sell
        assert [o["side"] for o in falling.orders()] == ["BUY"]  # only the BUY reached the exchange
        halts = redis.Redis.from_url(redis_server.url, decode_responses=True).hgetall(
            "tradefleet:risk:default:halts"
        )
        assert list(halts) == ["loser"] and '"by": "bot loser (risk limit)"' in halts["loser"]
        st = bot.status()
        assert st is not None and st["risk"]["halted"] and float(st["risk"]["equity_quote"]) <= -4
    finally:
        bot.stop()


def test_order_rate_guard_stops_a_bot_driven_by_a_signal_storm(
    tmp_path: Path, storm: Sim, redis_server: RedisServer
) -> None:
    limit = 5
    bot = Bot(tmp_path, storm, redis_server.url, "stormy", max_orders_per_minute=limit)
    try:
        wait(lambda: bot.events("risk_tripped"), 180, "the order-rate guard to trip")
        refused = lambda: [s for s in bot.rows("signals") if str(s["action"]).startswith("risk: ")]  # noqa: E731
        wait(lambda: len(refused()) >= 5, 60, "refused signals after the trip")
        storm.pause()
        assert len(storm.orders()) == limit, storm.orders()
        assert len(bot.created()) == limit
        trip = bot.events("risk_tripped")
        assert len(trip) == 1 and trip[0]["reason"].startswith("order_rate"), trip
        first = refused()[0]
        assert str(first["action"]).startswith("risk: order_rate"), first
        assert all(str(s["action"]).startswith("risk: halted (bot stormy: order_rate") for s in refused()[1:])
        assert storm.describe()["duplicates"] == 0
    finally:
        bot.stop()


def test_fleet_drawdown_limit_halts_the_whole_fleet_when_their_summed_equity_falls(
    tmp_path: Path, falling: Sim, redis_server: RedisServer
) -> None:
    """Three bots, no limit of their own; the fleet's drawdown limit (6 quote) comes from the scope's
    Redis limits, as a TradingFleet's operator writes it. Each bot loses about 2.2 quote a falling
    candle on its 100-quote BUY: the fleet trips on the summed fall, before the SMA SELL comes, and
    every bot's SELL is then refused with the fleet halt's reason."""
    admin = redis.Redis.from_url(redis_server.url, decode_responses=True)
    admin.hset("tradefleet:risk:default:limits", mapping={"max_fleet_drawdown_quote": "6"})
    bots = [Bot(tmp_path, falling, redis_server.url, f"dd-{i}") for i in range(3)]
    try:

        def sells() -> list[dict[str, object]]:
            rows = [s for b in bots for s in b.rows("signals") if s["side"] == "SELL"]
            return rows if len(rows) == len(bots) and all(s["action"] != "pending" for s in rows) else []

        for s in wait(sells, 240, "every bot's SELL signal decided"):
            assert str(s["action"]).startswith("risk: halted (fleet: fleet_drawdown: 3 bots"), s
        halts = admin.hgetall("tradefleet:risk:default:halts")
        assert list(halts) == ["*"], halts  # one fleet halt, no bot halted on its own
        assert '"reason": "fleet_drawdown: 3 bots' in halts["*"] and "(risk limit)" in halts["*"]
        assert sorted(o["side"] for o in falling.orders()) == ["BUY"] * 3  # no SELL reached the exchange
        for b in bots:
            st = b.status()
            assert (
                st is not None
                and st["risk"]["halted"]
                and st["risk"]["fleet_limits"] == {"max_fleet_drawdown_quote": "6"}
            )
            assert float(st["risk"]["fleet_drawdown_quote"]) >= 6
        assert falling.describe()["duplicates"] == 0
    finally:
        for b in bots:
            b.stop()
