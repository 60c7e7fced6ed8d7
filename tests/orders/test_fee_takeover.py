"""A successor rebuilds the position its predecessor traded on, fees included (the 0.00001143 BTC bot).

A market order's answer (`Execution.submit`: Binance's FULL response, paper's summary) carries the
order's total fee; the individual fills that carry it again, one TRADE report each, travel through
the execution's in-memory update queue and reach the store a moment later (much later when the store
was failing and the consumer backs off). The manager sizes its next SELL from the answer at once. A
kill -9 in between loses the queued reports with the process: the store must already hold the fee,
or the new leader folds a BUY that received its full quantity, and after the SELL its predecessor
sized without the fee it holds a remainder of a whole step or more, worth less than the minimum
notional (a compose CI run: 0.00001143 BTC after a failover, every BUY `already_long` after it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

from tests.orders.conftest import bot_config, make_signal, sim_rules, until
from tradefleet.adapters.paper import PaperExecution
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import OrderStatus, OrderUpdate, Side
from tradefleet.metrics import BotMetrics

FEE = Decimal("0.001")


class ReportsLostWithTheProcess(PaperExecution):
    """Paper execution whose fill reports never leave its queue: the state a kill -9 leaves when it
    lands after the answer was stored and before the reports were (the queue is process memory)."""

    async def updates(self) -> AsyncIterator[OrderUpdate]:  # type: ignore[override]
        await asyncio.Event().wait()
        yield  # pragma: no cover (never reached: makes this an async generator)


async def test_the_new_leader_holds_what_the_killed_leader_held_after_a_round_trip(sim, any_store, lease,
                                                                                   run_manager):  # fmt: skip
    store = any_store  # raw SQLite, and the buffered writer the runtime hands the manager
    config = bot_config(sim, mode="paper")
    rules = sim_rules(sim)
    market = sim.exchange.markets["BTCUSDT"]
    ask, bid = market.levels("BUY", 1)[0][0], market.levels("SELL", 1)[0][0]
    leader = await run_manager(
        config=config, store=store, lease=lease, rules=rules, metrics=BotMetrics(),
        execution=ReportsLostWithTheProcess(market.levels, FEE, base_asset="BTC", quote_asset="USDT",
                                            step_size=rules.step_size),
    )  # fmt: skip
    buy, sell = (
        make_signal(config, Side.BUY, 1, close=str(ask)),
        make_signal(config, Side.SELL, 2, close=str(bid)),
    )
    leader.submit_signal(buy)
    await until(lambda: leader.position.qty > 0, what="the BUY filled")
    leader.submit_signal(sell)
    await until(lambda: leader.position.qty < rules.step_size, what="the SELL sold the position")
    held = leader.position
    # kill -9 of the leader: its queued fill reports are gone; a new leader recovers from the store.
    successor = await run_manager(
        config=config, store=store, lease=lease, rules=rules, metrics=BotMetrics(),
        execution=PaperExecution(market.levels, FEE, base_asset="BTC", quote_asset="USDT",
                                 step_size=rules.step_size),
    )  # fmt: skip
    assert (successor.position.qty, successor.position.cost_quote) == (held.qty, held.cost_quote)
    bought = await store.get_order(client_order_id(buy.signal_id))
    assert bought is not None and bought.status is OrderStatus.FILLED
    assert bought.fee == bought.filled_qty * FEE  # the answer's total, not only the fills stored
    assert successor.position.qty < rules.step_size
    assert successor.position.realized_pnl_quote == held.realized_pnl_quote
