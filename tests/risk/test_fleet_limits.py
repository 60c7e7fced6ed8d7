"""Fleet limits and the fleet's equity: the pure rules, the Redis scripts on a real redis-server (which
must agree with the pure rules), and the gate that reads a TradingFleet's limits with the halts."""

from __future__ import annotations

import random
from decimal import Decimal

from tests.risk.test_gate import gate
from tradefleet.coord.risk_state import LocalRiskState, RedisRiskState, new_halt
from tradefleet.domain.models import Position, Side
from tradefleet.domain.risk import (
    FleetEquity,
    RiskLimits,
    fleet_drawdown_breach,
    merge_limits,
    report_equity,
)
from tradefleet.metrics import BotMetrics
from tradefleet.prom import Registry

D = Decimal


def test_a_fleet_limit_tightens_a_bot_limit_and_never_loosens_it() -> None:
    own = RiskLimits(max_fleet_quote=D(500), max_position_quote=D(100))
    assert merge_limits(own, RiskLimits(max_fleet_quote=D(300))).max_fleet_quote == 300
    assert merge_limits(own, RiskLimits(max_fleet_quote=D(900))).max_fleet_quote == 500
    both = merge_limits(own, RiskLimits(max_fleet_drawdown_quote=D(40), max_quote_asset_quote=D(200)))
    assert (both.max_fleet_drawdown_quote, both.max_quote_asset_quote, both.max_position_quote) == (
        40,
        200,
        100,
    )
    # Only fleet limits come from a fleet: a per-bot limit in it is ignored.
    assert merge_limits(own, RiskLimits(max_position_quote=D(1))).max_position_quote == 100
    assert merge_limits(own, RiskLimits()) is own


def test_fleet_equity_peak_follows_members_and_drawdown_trips_at_the_limit() -> None:
    table: dict[str, tuple[Decimal, int]] = {}
    peak = None
    table, f = report_equity(table, peak, "a", D(10), now_ms=0, ttl_ms=100)
    assert (f.total, f.peak, f.drawdown) == (10, 10, 0)
    table, f = report_equity(table, f.peak, "b", D(5), now_ms=1, ttl_ms=100)  # joins: peak moves with it
    assert (f.total, f.peak) == (15, 15)
    table, f = report_equity(table, f.peak, "a", D(-20), now_ms=2, ttl_ms=100)  # a loses 30
    assert (f.total, f.peak, f.drawdown) == (-15, 15, 30)
    limits = RiskLimits(max_fleet_drawdown_quote=D(30))
    reason = fleet_drawdown_breach(f, limits)
    assert reason is not None and reason.startswith("fleet_drawdown: 2 bots 30 below peak 15")
    assert fleet_drawdown_breach(f, RiskLimits(max_fleet_drawdown_quote=D(31))) is None
    # b (profit 5) stops reporting: it leaves with its equity, the drawdown is still a's 30 alone.
    table, f = report_equity(table, f.peak, "a", D(-20), now_ms=150, ttl_ms=100)
    assert (f.total, f.peak, f.drawdown, f.members) == (-20, 10, 30, 1)


async def test_the_redis_script_keeps_the_same_equity_as_the_pure_rule(redis_server) -> None:
    state = RedisRiskState(redis_server.url, "eq")
    rng = random.Random(16)
    table: dict[str, tuple[Decimal, int]] = {}
    peak = None
    try:
        for _ in range(60):
            bot = rng.choice(["a", "b", "c"])
            value = D(rng.randint(-5000, 5000)) / 100
            got = await state.report_equity(bot, value, 60_000)
            table, want = report_equity(table, peak, bot, value, now_ms=0, ttl_ms=60_000)
            peak = want.peak
            assert (got.total, got.peak, got.members) == (want.total, want.peak, want.members)
        assert await state.fleet_equity() == FleetEquity(total=want.total, peak=want.peak, members=3)
    finally:
        await state.close()


async def test_fleet_limits_are_read_with_the_halts_and_replaced_whole(redis_server) -> None:
    state = RedisRiskState(redis_server.url, "lim")
    try:
        await state.halt(new_halt("maintenance", "ops"))
        await state.set_fleet_limits(RiskLimits(max_fleet_quote=D("250.5"), max_fleet_drawdown_quote=D(40)))
        halts, limits = await state.switch()
        assert [h.reason for h in halts] == ["maintenance"]
        assert (limits.max_fleet_quote, limits.max_fleet_drawdown_quote) == (D("250.5"), 40)
        await state.set_fleet_limits(RiskLimits(max_quote_asset_quote=D(10)))
        assert (await state.switch())[1] == RiskLimits(max_quote_asset_quote=D(10))
        await state.set_fleet_limits(RiskLimits())
        assert (await state.switch())[1] == RiskLimits()
        # A hand-written typo in the hash is skipped, not fatal.
        await state._redis.hset(state.limits_key, mapping={"max_fleet_quote": "lots", "max_typo": "1"})
        assert (await state.switch())[1] == RiskLimits()
    finally:
        await state.close()


async def test_replace_halt_swaps_only_the_halt_it_names(redis_server) -> None:
    state = RedisRiskState(redis_server.url, "rep")
    try:
        first = await state.halt(new_halt("one", "ops"))
        second = new_halt("two", "ops", flatten=True)
        assert await state.replace_halt("someone-elses", second) is False
        assert await state.replace_halt(first.halt_id, second) is True
        assert [h.halt_id for h in await state.halts()] == [second.halt_id]
    finally:
        await state.close()


async def test_the_gate_applies_a_fleet_cap_it_reads_from_redis_without_a_restart(redis_server) -> None:
    state = RedisRiskState(redis_server.url, "g2")
    admin = RedisRiskState(redis_server.url, "g2")
    flat = Position("b", "BTC/USDT")
    try:
        g = gate(state, BotMetrics(Registry()), risk_scope="g2", max_fleet_quote="1000")
        await g.poll_once()
        assert await g.before_send("s1", Side.BUY, D(100), flat) is None
        await g.order_final(flat)
        await admin.set_fleet_limits(RiskLimits(max_fleet_quote=D(50)))
        await g.poll_once()
        denial = await g.before_send("s2", Side.BUY, D(100), flat)
        assert denial is not None and denial.startswith("risk: fleet_cap"), denial
        assert g.snapshot()["fleet_limits"] == {"max_fleet_quote": "50"}
        await admin.set_fleet_limits(RiskLimits())
        await g.poll_once()
        assert await g.before_send("s3", Side.BUY, D(100), flat) is None  # back to its own 1000
    finally:
        await state.close()
        await admin.close()


async def test_local_state_keeps_fleet_limits_and_equity_like_redis() -> None:
    state = LocalRiskState()
    await state.set_fleet_limits(RiskLimits(max_fleet_quote=D(5), max_position_quote=D(1)))
    assert (await state.switch())[1] == RiskLimits(max_fleet_quote=D(5))
    f = await state.report_equity("a", D(3), 60_000)
    f = await state.report_equity("a", D(-2), 60_000)
    assert (f.total, f.peak, f.drawdown) == (-2, 3, 5)
    assert await state.fleet_equity() == f


async def test_resuming_the_fleet_starts_a_new_peak_so_the_limit_does_not_trip_again_at_once(
    redis_server,
) -> None:
    state = RedisRiskState(redis_server.url, "again")
    limits = RiskLimits(max_fleet_drawdown_quote=D(10))
    try:
        await state.report_equity("a", D(5), 60_000)
        fell = await state.report_equity("a", D(-6), 60_000)
        assert fleet_drawdown_breach(fell, limits) is not None
        await state.halt(new_halt(fleet_drawdown_breach(fell, limits) or "", "bot a (risk limit)"))
        await state.resume(None, "ops")
        after = await state.report_equity("a", D(-6), 60_000)
        assert (after.peak, after.drawdown) == (-6, 0) and fleet_drawdown_breach(after, limits) is None
        # A bot's own resume leaves the fleet's peak alone.
        await state.report_equity("a", D(-17), 60_000)
        await state.halt(new_halt("loss", "bot a (risk limit)", bot="a"))
        await state.resume("a", "ops")
        assert (await state.report_equity("a", D(-17), 60_000)).drawdown == 11
    finally:
        await state.close()
