"""`OrderManager.act_now`: the signal the engine hands over as its candle closes is acted on at once,
on the caller's stack, with no turn of the loop first: by the time `act_now` returns, the signal, its
action and the PENDING order are committed and the request has been handed to the exchange client.
Signals that come meanwhile queue behind it and are acted on after it, in order; `settle` waits for
both; an unexpected error in it fails the manager's task as one in a queued signal does. The
simulator over sockets, a real SQLite file read with its own connection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.orders.conftest import bot_config, exchange_execution, make_signal, sim_orders, sim_rules, until
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import Order, OrderStatus, OrderUpdate, Side
from tradefleet.engine.order_manager import OrderManager
from tradefleet.metrics import BotMetrics
from tradefleet.ports import Execution


class Submits:
    """The bot's Execution, noting each request it is asked to send."""

    def __init__(self, inner: Execution) -> None:
        self.inner = inner
        self.submitted: list[str] = []

    async def submit(self, order: Order) -> OrderUpdate:
        self.submitted.append(order.client_order_id)
        return await self.inner.submit(order)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _stored(db: Path) -> list[tuple[str, str]]:
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return reader.execute("SELECT client_order_id, status FROM orders ORDER BY created_at").fetchall()
    finally:
        reader.close()


async def _manager(
    sim: Any, store: Any, lease: Any, run_manager: Any, metrics: BotMetrics
) -> tuple[OrderManager, Submits]:
    config = bot_config(sim)
    execution = Submits(exchange_execution(config))
    m = await run_manager(config=config, store=store, execution=execution, lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    return m, execution


async def test_the_order_is_stored_and_on_its_way_when_act_now_returns(
    sim, store, lease, run_manager, metrics, tmp_path
):
    m, execution = await _manager(sim, store, lease, run_manager, metrics)
    config = m.config
    # A first order through the queue opens the connection to the exchange (a connect waits).
    first = make_signal(config, Side.BUY, 1)
    m.submit_signal(first)
    await until(lambda: m.idle() and execution.submitted, what="the first order final")
    assert m.ready_to_act()

    sell = make_signal(config, Side.SELL, 2)
    cid = client_order_id(sell.signal_id)
    task = asyncio.current_task()
    m.act_now(sell)
    # No await since: whatever happened, happened on this stack.
    assert execution.submitted[-1] == cid, "the request was handed to the exchange client"
    assert (cid, "PENDING") in _stored(tmp_path / "orders.sqlite")
    assert asyncio.current_task() is task
    assert m.acting() and not m.ready_to_act()

    await m.settle()
    assert m.idle()
    assert (await store.get_order(cid)).status is OrderStatus.FILLED
    assert (await sim_orders(sim))["accepted_per_client_id"] == {client_order_id(first.signal_id): 1, cid: 1}


async def test_signals_that_come_meanwhile_are_acted_on_after_it_in_order(
    sim, store, lease, run_manager, metrics
):
    m, execution = await _manager(sim, store, lease, run_manager, metrics)
    config = m.config
    buy, sell = make_signal(config, Side.BUY, 1), make_signal(config, Side.SELL, 2)
    m.act_now(buy)  # waits at its first step: the connection to the exchange is opened
    assert not m.ready_to_act()
    m.act_now(sell)  # not ready: queued behind the BUY, never acted on beside it
    await m.settle()
    assert execution.submitted == [client_order_id(buy.signal_id), client_order_id(sell.signal_id)]
    orders = {o.client_order_id: o for o in await store.orders(config.name)}
    bought = orders[client_order_id(buy.signal_id)]
    sold = orders[client_order_id(sell.signal_id)]
    assert bought.status is OrderStatus.FILLED and sold.status is OrderStatus.FILLED
    assert 0 < sold.filled_qty <= bought.filled_qty - bought.fee  # the SELL saw the BUY's position
    await until(m.ready_to_act, what="ready for the next signal")  # fills are applied under the lock too


async def test_an_unexpected_error_in_it_fails_the_managers_task(sim, store, lease, metrics):
    config = bot_config(sim)
    m = OrderManager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                     rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    await m.recover()
    run = asyncio.get_running_loop().create_task(m.run())
    try:
        await asyncio.sleep(0)

        async def broken(signal: Any, queued_at: float) -> None:
            raise RuntimeError("a bug in the order path")

        m._act = broken  # type: ignore[method-assign]
        m.act_now(make_signal(config, Side.BUY, 1))
        with pytest.raises(ExceptionGroup) as failed:
            await asyncio.wait_for(run, 30)
        assert [str(e) for e in failed.value.exceptions] == ["a bug in the order path"]
        assert not m.acting(), "the signal is not left counted as in progress"
    finally:
        run.cancel()
        await m.execution.close()
