"""Recovery goes through the fleet's risk gate like a live signal: the switch is read before anything
is sent, and a stored order that never left is sent again only if the gate still lets it (#16)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

from tests.orders.conftest import (
    bot_config,
    exchange_execution,
    make_signal,
    risk_gate,
    sim_orders,
    sim_rules,
)
from tradefleet.config import BotConfig
from tradefleet.coord.risk_state import LocalRiskState, new_halt
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import Order, OrderStatus, Side
from tradefleet.engine.order_manager import OrderManager
from tradefleet.engine.risk_gate import RiskGate
from tradefleet.metrics import BotMetrics


def _gate(config: BotConfig, halt_file: Path, metrics: BotMetrics, holder: list[OrderManager]) -> RiskGate:
    """The gate as the runtime builds it with the switch in a file (no Redis)."""
    return risk_gate(config, LocalRiskState(str(halt_file)), metrics, holder)


async def test_a_takeover_buy_is_placed_with_the_switch_read_before_recovery(
    sim, store, lease, run_manager, metrics, tmp_path: Path
):
    config = bot_config(sim, risk_halt_file=str(tmp_path / "HALT"))
    latest = dataclasses.replace(make_signal(config, Side.BUY, 1), action="pending")
    await store.insert_signal(latest)
    holder: list[OrderManager] = []
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics,
                          risk=_gate(config, tmp_path / "HALT", metrics, holder))  # fmt: skip
    holder.append(m)
    # Before: the gate had never read the switch when recovery acted, so the BUY was refused as
    # "risk: risk_state_unknown" and the signal was lost.
    assert (await sim_orders(sim))["accepted_per_client_id"] == {client_order_id(latest.signal_id): 1}
    actions = {s.signal_id: s.action for s in await store.signals(config.name)}
    assert actions == {latest.signal_id: "order"}


async def test_an_order_stored_but_never_sent_is_not_sent_while_a_halt_is_in_force(
    sim, store, lease, run_manager, metrics, tmp_path: Path
):
    halt_file = tmp_path / "HALT"
    config = bot_config(sim, risk_halt_file=str(halt_file))
    signal = make_signal(config, Side.BUY, 1)
    await store.insert_signal(dataclasses.replace(signal, action="order"))
    # Stored PENDING, then the process died before the request left; meanwhile the fleet was halted.
    pending = Order(
        client_order_id=client_order_id(signal.signal_id), bot=config.name, exchange="binance",
        symbol=config.symbol, side=Side.BUY, order_type="MARKET", signal_id=signal.signal_id,
        status=OrderStatus.PENDING, created_at=1, updated_at=1, quote_amount=Decimal("100"),
    )  # fmt: skip
    await store.insert_order(pending)
    await LocalRiskState(str(halt_file)).halt(new_halt("exchange misbehaving", "ops"))
    holder: list[OrderManager] = []
    m = await run_manager(config=config, store=store, execution=exchange_execution(config, recv_window_ms=1000),
                          lease=lease, rules=sim_rules(sim), metrics=metrics,
                          risk=_gate(config, halt_file, metrics, holder))  # fmt: skip
    holder.append(m)
    assert (await sim_orders(sim))["client_ids_seen"] == {}  # before: sent again, through the halt
    closed = await store.get_order(pending.client_order_id)
    assert closed is not None and closed.status is OrderStatus.CANCELED
    assert closed.reason is not None and closed.reason.startswith(
        "not_sent: risk: halted (fleet: exchange misbehaving"
    )
    action = {s.signal_id: s.action for s in await store.signals(config.name)}[signal.signal_id]
    assert action.startswith("not_sent: risk: halted")
    assert m.position.qty == 0
