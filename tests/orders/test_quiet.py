"""`OrderManager.quiet()`: what the feed waits for after the frame that made a signal. It must return
once the order's request has been written to the exchange, not when the answer comes back (the market
data would wait a whole round trip), and at once when no request follows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.orders.conftest import (
    HoldingProxy,
    bot_config,
    exchange_execution,
    make_signal,
    sim_orders,
    sim_rules,
    until,
)
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import OrderStatus, Side


@pytest.fixture
async def proxy(sim) -> AsyncIterator[tuple[HoldingProxy, str]]:
    async with HoldingProxy(int(sim.rest_url.rsplit(":", 1)[1])) as p:
        yield p, p.url


async def test_quiet_returns_once_the_request_is_written_not_when_the_answer_comes(
    sim, store, lease, run_manager, metrics, proxy
):
    p, url = proxy
    config = bot_config(sim, rest_url=url)
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    await m.quiet()  # nothing submitted: nothing to wait for
    p.hold = True  # the exchange's answers wait in the proxy from now on
    signal = make_signal(config, Side.BUY, 1)
    m.submit_signal(signal)
    waiting = asyncio.get_running_loop().create_task(m.quiet())
    await asyncio.sleep(0)
    assert not waiting.done()  # a request is about to leave
    await asyncio.wait_for(waiting, 10)
    cid = client_order_id(signal.signal_id)
    # The exchange has the request; its answer is still held, so the order is PENDING here.
    await until(lambda: _accepted(sim, cid), what="the request at the simulator")
    assert m._orders[cid].status is OrderStatus.PENDING
    p.release()
    await until(lambda: m.position.qty > 0, what="the answer applied")


async def test_quiet_returns_when_a_signal_leads_to_no_request(sim, store, lease, run_manager, metrics):
    config = bot_config(sim)
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    m.submit_signal(make_signal(config, Side.SELL, 1))  # flat: nothing to sell
    await asyncio.wait_for(m.quiet(), 10)
    await m.settle()
    assert (await sim_orders(sim))["client_ids_seen"] == {}


async def _accepted(sim, cid: str) -> bool:
    return (await sim_orders(sim))["accepted_per_client_id"].get(cid) == 1
