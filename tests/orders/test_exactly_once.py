"""Exactly one order per signal whatever the exchange does: lost responses, 5xx, timeouts, 429s,
rejects, delayed fills and a silent user data stream. Real sockets, ccxt as the client."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.orders.conftest import (
    bot_config,
    exchange_execution,
    make_signal,
    sim_orders,
    sim_rules,
    sim_trading_fault,
    until,
)
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import OrderStatus, Side


async def _buy(sim, store, lease, run_manager, metrics, **config_over):
    config = bot_config(sim, **config_over)
    execution = exchange_execution(config)
    m = await run_manager(config=config, store=store, execution=execution, lease=lease, rules=sim_rules(sim),
                          metrics=metrics)  # fmt: skip
    signal = make_signal(config, Side.BUY, 1)
    m.submit_signal(signal)
    return m, config, signal, client_order_id(signal.signal_id)


async def _final(store, cid):
    async def done() -> bool:
        o = await store.get_order(cid)
        return o is not None and o.status.is_final

    await until(done, timeout=45, what=f"order {cid} final")
    order = await store.get_order(cid)
    assert order is not None
    return order


@pytest.mark.parametrize(
    "fault",
    [
        {"lose_response": 1},  # placed, the answer never comes
        {"server_error": 1},  # placed, then 503 -1007 "execution status unknown"
        {"server_error_before": 1},  # 503 -1007 and NOT placed: only a settled query allows a re-send
        {"timeout": 1, "timeout_s": 6},  # placed, the answer comes after the client's 3 s timeout
        {"rate_limit": 1, "retry_after_s": 1},  # 429 + Retry-After: not placed, re-sent after the wait
    ],
    ids=["lost_response", "5xx_after_accept", "5xx_before_accept", "timeout", "429"],
)
async def test_uncertain_outcomes_end_with_exactly_one_order_on_the_exchange(sim, store, lease, run_manager,
                                                                             metrics, fault):  # fmt: skip
    await sim_trading_fault(sim, **fault)
    m, _, _, cid = await _buy(sim, store, lease, run_manager, metrics)
    order = await _final(store, cid)
    assert order.status is OrderStatus.FILLED
    state = await sim_orders(sim)
    assert state["accepted_per_client_id"] == {cid: 1}
    assert state["duplicates"] == 0
    assert sum(state["faults"].values()) == 1, "the fault really happened"
    await until(lambda: m.position.qty > 0, what="position")
    await until(lambda: m.position.qty == order.filled_qty - m._orders[cid].fee and m._orders[cid].fee > 0,
                what="fee from trades")  # fmt: skip


async def test_rejected_order_is_stored_with_reason_and_signal_marked(
    sim, store, lease, run_manager, metrics
):
    await sim_trading_fault(sim, reject=1, reject_msg="Order rejected by the simulator.")
    m, config, signal, cid = await _buy(sim, store, lease, run_manager, metrics)
    order = await _final(store, cid)
    assert order.status is OrderStatus.REJECTED and order.reason and "-2010" in order.reason
    await until(lambda: metrics.registry.get_sample_value("tradefleet_orders_rejected_total") == 1)
    actions = {s.signal_id: s.action for s in await store.signals(config.name)}
    assert actions[signal.signal_id] == "rejected"
    assert m.position.qty == 0
    assert (await sim_orders(sim))["orders"] == []


async def test_insufficient_balance_is_a_rejection_not_a_retry(sim, store, lease, run_manager, metrics):
    _m, _, _, cid = await _buy(sim, store, lease, run_manager, metrics, quote_amount=Decimal("1000000"))
    order = await _final(store, cid)
    assert order.status is OrderStatus.REJECTED and "insufficient balance" in (order.reason or "")
    assert (await sim_orders(sim))["client_ids_seen"] == {cid: 1}


async def test_signal_below_min_notional_is_stored_with_reason_and_sends_nothing(sim, store, lease, run_manager,
                                                                                 metrics):  # fmt: skip
    _m, config, _signal, cid = await _buy(sim, store, lease, run_manager, metrics, quote_amount=Decimal("4"))

    async def stored() -> bool:
        return any(s.action == "below_min_notional" for s in await store.signals(config.name))

    await until(stored, what="reason stored")
    assert await store.get_order(cid) is None
    assert (await sim_orders(sim))["client_ids_seen"] == {}


async def test_delayed_fill_with_silent_stream_is_found_by_rest_reconciliation(sim, store, lease, run_manager,
                                                                               metrics):  # fmt: skip
    await sim_trading_fault(sim, delay_fill_ms=1500, user_stream_mute=True)
    m, _, _, cid = await _buy(sim, store, lease, run_manager, metrics)
    order = await _final(store, cid)
    assert order.status is OrderStatus.FILLED

    async def fee_stored() -> bool:
        # The FILLED query and the myTrades fills it queues are applied one after the other.
        o = await store.get_order(cid)
        return o is not None and o.fee > 0

    await until(fee_stored, what="fee from myTrades")
    history = await store.order_updates(cid)
    # Acknowledged NEW first, filled later: read from the stored history, not by polling for the
    # 1.5 s NEW window (under load the poll missed it while reconciliation filled the order).
    assert history[0].status is OrderStatus.NEW and OrderStatus.FILLED in {u.status for u in history}
    assert all(u.source != "stream" for u in history)

    # The order may have been read between the two trades' reports (under load it was): compare the
    # position with what the store holds now, and wait for the two to agree.
    async def position_from_rest() -> bool:
        o = await store.get_order(cid)
        return o is not None and m.position.qty == o.filled_qty - o.fee

    await until(position_from_rest, what="position from REST")
    assert (await sim_orders(sim))["duplicates"] == 0


async def test_standby_replica_stores_the_signal_but_leaves_its_action_to_the_leader(
    sim, store, lease, run_manager, metrics
):
    await lease.stop()  # this replica does not lead
    _m, config, signal, cid = await _buy(sim, store, lease, run_manager, metrics)

    async def stored() -> bool:
        return any(s.signal_id == signal.signal_id for s in await store.signals(config.name))

    await until(stored, what="signal stored")
    await asyncio.sleep(0.3)  # time for a (wrong) action write to land
    # The shared store's action is the leader's to set: a standby must not overwrite it.
    assert [s.action for s in await store.signals(config.name)] == ["pending"]
    assert await store.get_order(cid) is None
    assert (await sim_orders(sim))["client_ids_seen"] == {}


async def test_same_signal_delivered_twice_and_after_restart_gives_one_order(sim, store, lease, run_manager,
                                                                             metrics):  # fmt: skip
    m, config, signal, cid = await _buy(sim, store, lease, run_manager, metrics)
    m.submit_signal(signal)  # a second delivery (replayed candle, engine retry)
    await _final(store, cid)
    # A restarted bot that sees the same signal again acts on nothing new.
    m2 = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                           rules=sim_rules(sim), metrics=metrics.__class__())  # fmt: skip
    m2.submit_signal(signal)
    await until(lambda: m2._signals.empty(), what="second manager handled the signal")
    state = await sim_orders(sim)
    assert state["client_ids_seen"] == {cid: 1} and state["duplicates"] == 0


async def test_rate_limited_order_is_resent_only_after_retry_after(sim, store, lease, run_manager, metrics):
    await sim_trading_fault(sim, rate_limit=1, retry_after_s=2)
    _m, _, _, cid = await _buy(sim, store, lease, run_manager, metrics)
    await _final(store, cid)
    requests = [r for r in (await sim_orders(sim))["requests"] if r["client_order_id"] == cid]
    assert [r["outcome"] for r in requests] == ["-1003", "accepted"]
    # A lower bound only (a slow machine makes the gap longer, never shorter).
    assert requests[1]["time"] - requests[0]["time"] >= 2000 - 5
