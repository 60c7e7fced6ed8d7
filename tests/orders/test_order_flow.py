"""Signal -> order -> fill -> position, in paper and in exchange mode, over real sockets to the sim."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from tests.orders.conftest import (
    bot_config,
    exchange_execution,
    make_signal,
    sim_orders,
    sim_rules,
    until,
)
from tradefleet.adapters.paper import PaperExecution
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import OrderStatus, Side
from tradefleet.logs import JsonFormatter


async def test_exchange_mode_buy_then_sell_fills_on_sim_and_position_follows(sim, any_store, lease, run_manager,
                                                                             metrics, caplog):  # fmt: skip
    store = any_store
    config = bot_config(sim)
    execution = exchange_execution(config)
    m = await run_manager(config=config, store=store, execution=execution, lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    await until(lambda: execution.stream.connected.is_set(), what="user data stream subscribed")
    caplog.set_level(logging.INFO, logger="tradefleet.engine.order_manager")

    buy = make_signal(config, Side.BUY, 1)
    m.submit_signal(buy)
    cid = client_order_id(buy.signal_id)

    async def buy_filled() -> bool:
        # The buffered writer stores each trade's report after the manager has applied it: under
        # load the stored order can show the first trade's fee while the position has both.
        o = await store.get_order(cid)
        return (
            o is not None and o.status is OrderStatus.FILLED and o.fee > 0
            and m.position.qty == o.filled_qty - o.fee
        )  # fmt: skip

    await until(buy_filled, what="BUY filled with its whole fee stored, as the position has it")
    order = await store.get_order(cid)
    assert order is not None and order.fencing_token == lease.fencing_token
    assert order.cum_quote <= Decimal("100") and order.filled_qty > 0
    # A fee in BTC reduces what we hold: position = filled - fee.
    assert m.position.qty == order.filled_qty - order.fee

    # The REST answer can fill the order before the stream's executionReport arrives or, through
    # the buffered writer, is written: under load that order is common, so wait for it.
    async def stream_report_stored() -> bool:
        return any(u.source == "stream" for u in await store.order_updates(cid))

    await until(stream_report_stored, what="executionReports from the WebSocket API stored")
    history = await store.order_updates(cid)
    assert {u.status for u in history} >= {OrderStatus.FILLED}

    sell = make_signal(config, Side.SELL, 2)
    m.submit_signal(sell)
    sell_cid = client_order_id(sell.signal_id)
    await until(lambda: m.last_order is not None and m.last_order.client_order_id == sell_cid
                and m.last_order.status is OrderStatus.FILLED, what="SELL filled")  # fmt: skip
    sold = await store.get_order(sell_cid)
    assert sold is not None and sold.quantity is not None
    assert sold.quantity == (order.filled_qty - order.fee).quantize(Decimal("0.00001"), rounding="ROUND_DOWN")
    assert m.position.qty < Decimal("0.00001")  # only dust below one step is left
    assert m.position.realized_pnl_quote != 0

    state = await sim_orders(sim)
    assert state["accepted_per_client_id"] == {cid: 1, sell_cid: 1}
    assert state["duplicates"] == 0
    signals = {s.signal_id: s.action for s in await store.signals(config.name)}
    assert signals == {buy.signal_id: "order", sell.signal_id: "order"}
    assert metrics.registry.get_sample_value("tradefleet_orders_total", {"side": "BUY"}) == 1
    assert metrics.registry.get_sample_value("tradefleet_position_qty") == float(m.position.qty)
    assert metrics.registry.get_sample_value("tradefleet_operation_latency_seconds_count",
                                             {"operation": "order_ack"}) == 2  # fmt: skip
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if getattr(r, "event", "") == "order"
    ]
    filled = [x for x in lines if x["status"] == "FILLED" and x["client_order_id"] == cid]
    assert filled and filled[-1]["signal_id"] == buy.signal_id and filled[-1]["exchange_order_id"]
    assert {"side", "filled_qty", "avg_price"} <= set(filled[-1])


async def test_paper_mode_fills_against_the_book_and_reports_like_an_exchange(sim, store, lease, run_manager,
                                                                               metrics):  # fmt: skip
    config = bot_config(sim, mode="paper")
    market = sim.exchange.markets["BTCUSDT"]
    rules = sim_rules(sim)
    best_ask = market.levels("BUY", 1)[0][0]
    paper = PaperExecution(market.levels, Decimal("0.001"), base_asset="BTC", quote_asset="USDT",
                           step_size=rules.step_size)  # fmt: skip
    m = await run_manager(
        config=config, store=store, execution=paper, lease=lease, rules=rules, metrics=metrics
    )
    buy = make_signal(config, Side.BUY, 1, close=str(best_ask))
    m.submit_signal(buy)
    cid = client_order_id(buy.signal_id)

    async def filled() -> bool:
        o = await store.get_order(cid)
        return o is not None and o.status is OrderStatus.FILLED and o.fee > 0

    await until(filled, what="paper BUY filled")
    o = await store.get_order(cid)
    assert o is not None and o.avg_price is not None and o.avg_price >= best_ask
    assert o.fee == (o.filled_qty * Decimal("0.001"))
    assert m.position.qty == o.filled_qty - o.fee
    assert [u.exec_type for u in await store.order_updates(cid)].count("TRADE") >= 1
    # A BUY while long is stored with its reason, not dropped.
    again = make_signal(config, Side.BUY, 2)
    m.submit_signal(again)

    async def reason() -> bool:
        return any(s.action == "already_long" for s in await store.signals(config.name))

    await until(reason, what="already_long stored")
    m.submit_signal(make_signal(config, Side.SELL, 3))
    await until(lambda: m.position.qty < rules.step_size, what="paper SELL closes the position")
    assert (await sim_orders(sim))["orders"] == []  # paper never touched the exchange
