"""A BUY's fleet reserve (a Redis round trip) runs beside the order's commit when the store has one
writer: its request leaves before the commit, its answer is read after. The order leaves only on a
yes; a no closes the stored PENDING order unsent, with the denial as the signal's action. A real
redis-server behind a proxy that holds its answers, the simulator, a real SQLite file."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.orders.conftest import (
    HoldingProxy,
    bot_config,
    exchange_execution,
    make_signal,
    risk_gate,
    sim_orders,
    sim_rules,
    until,
)
from tradefleet.config import BotConfig
from tradefleet.coord.risk_state import LocalRiskState, RedisRiskState
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import OrderStatus, Side
from tradefleet.domain.risk import RiskLimits
from tradefleet.engine.order_manager import OrderManager
from tradefleet.engine.risk_gate import RiskGate
from tradefleet.metrics import BotMetrics
from tradefleet.ports import RiskState


@pytest.fixture
async def redis_proxy(redis_server: RedisServer) -> AsyncIterator[tuple[HoldingProxy, str]]:
    async with HoldingProxy(redis_server.port, "redis") as p:
        yield p, p.url


async def _start(
    sim: Any,
    store: Any,
    lease: Any,
    run_manager: Any,
    metrics: BotMetrics,
    config: BotConfig,
    state: RiskState,
) -> tuple[OrderManager, RiskGate]:
    holder: list[OrderManager] = []
    gate = risk_gate(config, state, metrics, holder)
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics, risk=gate)  # fmt: skip
    holder.append(m)
    return m, gate


async def _stored_while_held(store: Any, sim: Any, cid: str) -> None:
    """The order is stored PENDING while the reserve's answer waits in the proxy, and not sent."""
    await until(lambda: store.get_order(cid), what="the PENDING order stored")
    order = await store.get_order(cid)
    assert order is not None and order.status is OrderStatus.PENDING
    await asyncio.sleep(0.05)  # time enough for a request that should not leave
    assert (await sim_orders(sim))["client_ids_seen"] == {}


async def test_the_reserve_is_answered_after_the_commit_and_the_order_leaves_on_a_yes(
    sim, store, lease, run_manager, metrics, redis_server, redis_proxy
):
    proxy, url = redis_proxy
    scope = f"t{uuid.uuid4().hex[:8]}"
    config = bot_config(sim, max_fleet_quote=Decimal(1000), risk_scope=scope)
    m, _ = await _start(sim, store, lease, run_manager, metrics, config,
                        RedisRiskState(url, scope, timeout_s=30))  # fmt: skip
    signal = make_signal(config, Side.BUY, 1)
    cid = client_order_id(signal.signal_id)
    proxy.hold = True  # Redis's answers wait from now on: the reserve's too
    m.submit_signal(signal)
    # Before: the reserve was answered before the commit began, so nothing was stored while held.
    await _stored_while_held(store, sim, cid)
    proxy.release()

    async def accepted() -> bool:
        return bool((await sim_orders(sim))["accepted_per_client_id"] == {cid: 1})

    await until(accepted, what="the order at the exchange")
    await m.settle()
    assert {s.signal_id: s.action for s in await store.signals(config.name)} == {signal.signal_id: "order"}
    # The room taken (then renewed to what the fill holds, a little under 100 after the fee).
    exposure = await RedisRiskState(redis_server.url, scope).exposure()
    assert Decimal(99) < exposure[config.name].amount <= Decimal(100)


async def test_a_no_from_the_reserve_after_the_commit_closes_the_order_unsent(
    sim, store, lease, run_manager, metrics, redis_server, redis_proxy, caplog
):
    caplog.set_level(logging.INFO, logger="tradefleet")
    proxy, url = redis_proxy
    scope = f"t{uuid.uuid4().hex[:8]}"
    cap = Decimal(1000)
    # Another bot of the fleet holds 950 of the 1000: this bot's 100 does not fit.
    other = RedisRiskState(redis_server.url, scope)
    assert (
        await other.reserve("other-bot", "USDT", Decimal(950), RiskLimits(max_fleet_quote=cap), 60_000)
        is None
    )
    config = bot_config(sim, max_fleet_quote=cap, risk_scope=scope)
    m, gate = await _start(sim, store, lease, run_manager, metrics, config,
                           RedisRiskState(url, scope, timeout_s=30))  # fmt: skip
    signal = make_signal(config, Side.BUY, 1)
    cid = client_order_id(signal.signal_id)
    proxy.hold = True
    m.submit_signal(signal)
    await _stored_while_held(store, sim, cid)
    proxy.release()
    await m.settle()
    assert (await sim_orders(sim))["client_ids_seen"] == {}  # never sent
    closed = await store.get_order(cid)
    assert closed is not None and closed.status is OrderStatus.CANCELED
    assert closed.reason is not None and closed.reason.startswith("not_sent: risk: fleet_cap (950 held + 100")
    action = {s.signal_id: s.action for s in await store.signals(config.name)}[signal.signal_id]
    assert action.startswith("risk: fleet_cap (950 held + 100")  # as when the no comes before the commit
    assert m.position.qty == 0 and not m._open_orders()
    assert gate.reserved == 0 and gate._reserved_for is None
    assert metrics.registry.get_sample_value("tradefleet_risk_denials_total", {"reason": "fleet_cap"}) == 1
    assert config.name not in await other.exposure()  # no room held for the order that never left
    # Logged as closed, never as PENDING (a PENDING line means its request follows).
    logged = [getattr(r, "status", None) for r in caplog.records if r.getMessage() == "order"]
    assert logged == ["CANCELED"]


async def test_an_answer_known_before_the_commit_stores_no_order(
    sim, store, lease, run_manager, metrics, tmp_path
):
    """The in-process twin answers at once: a denial then comes before the commit, as it always did."""
    cap = Decimal(1000)
    state = LocalRiskState(str(tmp_path / "HALT"))
    assert (
        await state.reserve("other-bot", "USDT", Decimal(950), RiskLimits(max_fleet_quote=cap), 60_000)
        is None
    )
    config = bot_config(sim, max_fleet_quote=cap)
    m, _ = await _start(sim, store, lease, run_manager, metrics, config, state)
    signal = make_signal(config, Side.BUY, 1)
    m.submit_signal(signal)
    await m.settle()
    assert await store.get_order(client_order_id(signal.signal_id)) is None
    action = {s.signal_id: s.action for s in await store.signals(config.name)}[signal.signal_id]
    assert action.startswith("risk: fleet_cap (950 held + 100")
