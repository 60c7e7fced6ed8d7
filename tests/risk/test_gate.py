"""The bot's risk gate on the real state backends: an unreachable Redis opens nothing, the file switch
halts and resumes, a BUY's reservation is released when its order is final; metrics on a fresh registry."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tests.conftest import RedisServer, free_port
from tradefleet.config import BotConfig
from tradefleet.coord.risk_state import LocalRiskState, RedisRiskState, new_halt
from tradefleet.domain.models import Position, Side
from tradefleet.domain.risk import Halt
from tradefleet.engine.risk_gate import RiskGate
from tradefleet.metrics import BotMetrics
from tradefleet.prom import Registry

FLAT = Position("b", "BTC/USDT")


def gate(
    state: object, metrics: BotMetrics, flattened: list[Halt] | None = None, **config: object
) -> RiskGate:
    c = BotConfig.from_mapping({"name": "b", **config})
    return RiskGate(
        config=c, state=state, metrics=metrics, quote_asset="USDT",  # type: ignore[arg-type]
        position=lambda: FLAT, mark=lambda: None, may_trade=lambda: True,
        on_flatten=(flattened if flattened is not None else []).append,
    )  # fmt: skip


async def test_an_unreachable_redis_refuses_a_buy_but_lets_a_sell_close() -> None:
    m = BotMetrics(Registry())
    g = gate(RedisRiskState(f"redis://127.0.0.1:{free_port()}/0", "x", timeout_s=0.2), m)
    await g.poll_once()
    assert m.registry.get_sample_value("tradefleet_risk_state_known") == 0
    denial = await g.before_send("s1", Side.BUY, Decimal(100), FLAT)
    assert denial is not None and denial.startswith("risk: risk_state_unknown")
    long_ = Position("b", "BTC/USDT", qty=Decimal(1), cost_quote=Decimal(100))
    assert await g.before_send("s2", Side.SELL, None, long_) is None
    assert m.registry.get_sample_value("tradefleet_risk_denials_total", {"reason": "risk_state_unknown"}) == 1


async def test_the_file_switch_halts_within_one_poll_and_resume_lifts_it(tmp_path: Path) -> None:
    m = BotMetrics(Registry())
    path = tmp_path / "HALT"
    g = gate(LocalRiskState(str(path)), m, risk_halt_file=str(path))
    await g.poll_once()
    assert await g.before_send("s1", Side.BUY, Decimal(100), FLAT) is None
    await LocalRiskState(str(path)).halt(new_halt("maintenance", "ops"))  # another process: the CLI
    await g.poll_once()
    denial = await g.before_send("s2", Side.BUY, Decimal(100), FLAT)
    assert denial is not None and denial.startswith("risk: halted (fleet: maintenance; by ops at 20")
    assert m.registry.get_sample_value("tradefleet_risk_halted") == 1
    assert g.snapshot()["halts"][0]["reason"] == "maintenance"
    await LocalRiskState(str(path)).resume(None, "ops")
    await g.poll_once()
    assert m.registry.get_sample_value("tradefleet_risk_halted") == 0


async def test_a_flatten_halt_is_offered_to_the_app_while_long(tmp_path: Path) -> None:
    m = BotMetrics(Registry())
    path = tmp_path / "HALT"
    offered: list[Halt] = []
    g = gate(LocalRiskState(str(path)), m, offered)
    g.position = lambda: Position("b", "BTC/USDT", qty=Decimal(1), cost_quote=Decimal(100))
    await LocalRiskState(str(path)).halt(new_halt("close all", "ops", flatten=True))
    await g.poll_once()
    await g.poll_once()  # re-offered at most once a second
    assert [h.reason for h in offered] == ["close all"]


async def test_a_buy_reserves_fleet_room_and_the_final_order_releases_it(redis_server: RedisServer) -> None:
    m = BotMetrics(Registry())
    state = RedisRiskState(redis_server.url, "g")
    g = gate(state, m, max_fleet_quote="150", risk_scope="g")
    other = RedisRiskState(redis_server.url, "g")
    try:
        await g.poll_once()
        assert await g.before_send("s1", Side.BUY, Decimal(100), FLAT) is None
        assert await g.before_send("s1", Side.BUY, Decimal(100), FLAT) is None  # a retry reserves once
        assert (await other.exposure())["b"].amount == 100
        denial = await other.reserve(
            "c", "USDT", Decimal(100), BotConfig(max_fleet_quote=Decimal(150)).risk_limits, 5000
        )
        assert denial is not None and "fleet_cap" in denial
        await g.order_final(Position("b", "BTC/USDT"))  # rejected, nothing filled: room released
        assert "b" not in await other.exposure()
        assert m.registry.get_sample_value("tradefleet_risk_exposure_quote") == 0
    finally:
        await state.close()
        await other.close()


async def test_the_fleets_summed_daily_loss_halts_every_bot_of_the_scope(redis_server: RedisServer) -> None:
    """Two bots each below their own limit; together past the fleet's: the scope is halted."""
    states = [RedisRiskState(redis_server.url, "f") for _ in range(2)]
    gates = []
    for i, state in enumerate(states):
        g = gate(state, BotMetrics(Registry()), max_fleet_daily_loss_quote="15", risk_scope="f")
        g.bot = f"b{i}"
        gates.append(g)
    marks = {"v": Decimal(100)}
    long_ = Position("b", "BTC/USDT", qty=Decimal(1), cost_quote=Decimal(100))
    try:
        for g in gates:
            g.position, g.mark = (lambda: long_), (lambda: marks["v"])
            await g.poll_once()  # the day starts at equity 0
        marks["v"] = Decimal(92)  # each bot -8: 16 together
        await gates[0].poll_once()
        assert not gates[0].halts  # the other bot's loss is not published yet
        await gates[1].poll_once()
        assert [h.bot for h in gates[1].halts] == [None] and gates[1].halts[0].reason.startswith(
            "fleet_daily_loss"
        )
        await gates[0].poll_once()
        assert gates[0].halts and gates[0].halts[0].bot is None  # every bot of the scope sees it
        denial = await gates[0].before_send("s", Side.BUY, Decimal(1), FLAT)
        assert denial is not None and "fleet: fleet_daily_loss" in denial
    finally:
        for s in states:
            await s.close()


async def test_the_gate_opens_the_reserve_connection_as_it_starts(redis_server: RedisServer) -> None:
    import asyncio

    from tests.conftest import until
    from tradefleet.tasks import stop_task

    state = RedisRiskState(redis_server.url, "open")
    g = gate(state, BotMetrics(Registry()))
    assert not state._hot.connected
    task = asyncio.get_running_loop().create_task(g.run())
    try:
        await until(lambda: state._hot.connected, what="the reserve's connection open")
        assert await g.before_send("s1", Side.BUY, Decimal(10), FLAT) is None
    finally:
        await stop_task(task)
        await state.close()
