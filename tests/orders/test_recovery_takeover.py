"""Restart and takeover: what the store says is reconciled with the exchange before any trading."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from tests.orders.conftest import (
    bot_config,
    exchange_execution,
    make_signal,
    sim_orders,
    sim_rules,
    until,
)
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import Order, OrderStatus, Side


async def test_new_leader_acts_on_latest_signal_without_order_with_the_same_client_id(sim, store, lease,
                                                                                    run_manager, metrics):  # fmt: skip
    config = bot_config(sim)
    older = dataclasses.replace(make_signal(config, Side.SELL, 1), action="standby")
    latest = dataclasses.replace(make_signal(config, Side.BUY, 2), action="standby")
    for s in (older, latest):
        await store.insert_signal(s)
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    assert m.trading_ready
    cid = client_order_id(latest.signal_id)
    state = await sim_orders(sim)
    assert state["accepted_per_client_id"] == {cid: 1}  # acted during recover(), before trading_ready
    await until(lambda: m.position.qty > 0, what="position after takeover")
    actions = {s.signal_id: s.action for s in await store.signals(config.name)}
    assert actions == {older.signal_id: "standby", latest.signal_id: "order"}


async def test_pending_order_never_sent_is_closed_when_its_signal_no_longer_applies(sim, store, lease,
                                                                                  run_manager, metrics):  # fmt: skip
    config = bot_config(sim)
    first, second = make_signal(config, Side.BUY, 1), make_signal(config, Side.BUY, 2)
    for s in (first, second):
        await store.insert_signal(s)
    base = dict(bot=config.name, exchange="binance", symbol=config.symbol, side=Side.BUY, order_type="MARKET",
                created_at=1, updated_at=1, quote_amount=Decimal("100"))  # fmt: skip
    # An earlier BUY filled (we are long) and a later BUY was stored but the process died before sending.
    filled = Order(client_order_id=client_order_id(first.signal_id), signal_id=first.signal_id,
                   status=OrderStatus.PENDING, **base)  # fmt: skip
    await store.insert_order(filled)
    from tradefleet.domain.models import OrderUpdate

    await store.apply_order_update(OrderUpdate(filled.client_order_id, OrderStatus.FILLED, 2,
                                               exchange_order_id="1", filled_qty=Decimal("0.002"),
                                               cum_quote=Decimal("100"), exec_type="QUERY"))  # fmt: skip
    pending = Order(client_order_id=client_order_id(second.signal_id), signal_id=second.signal_id,
                    status=OrderStatus.PENDING, **base | {"created_at": 3, "updated_at": 3})  # fmt: skip
    await store.insert_order(pending)

    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    closed = await store.get_order(pending.client_order_id)
    assert closed is not None and closed.status is OrderStatus.CANCELED
    assert closed.reason is not None and "already_long" in closed.reason
    assert m.position.qty == Decimal("0.002")
    assert (await sim_orders(sim))["client_ids_seen"] == {}  # nothing was sent


async def test_market_buy_beyond_book_depth_expires_partially_filled_and_position_counts_the_fill(
    sim, store, lease, run_manager, metrics
):
    market = sim.exchange.markets["BTCUSDT"]
    asks = [(Decimal("50000") + i, Decimal("0.001")) for i in range(3)]
    bids = [(Decimal("49990") - i, Decimal("0.01")) for i in range(50)]
    market.seed(bids, asks, market.update_id + 1)
    config = bot_config(sim, quote_amount=Decimal("500"))
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    buy = make_signal(config, Side.BUY, 1)
    m.submit_signal(buy)
    cid = client_order_id(buy.signal_id)

    async def final() -> bool:
        o = await store.get_order(cid)
        return o is not None and o.status.is_final and o.fee > 0

    await until(final, what="partial fill final")
    o = await store.get_order(cid)
    assert o is not None and o.status is OrderStatus.EXPIRED and o.filled_qty == Decimal("0.003")
    assert o.cum_quote == Decimal("150003") / 1000
    await until(lambda: m.position.qty == Decimal("0.003") - o.fee, what="position from the partial fill")
    m.submit_signal(make_signal(config, Side.SELL, 2))
    await until(lambda: m.position.qty < Decimal("0.00001"), what="SELL closes the partial position")
    assert (await sim_orders(sim))["duplicates"] == 0


async def test_restart_after_summary_stored_without_fills_recovers_the_fee_into_the_position(
    sim, store, lease, run_manager, metrics
):
    from bench.ccxt_client import make_binance

    from tradefleet.domain.models import OrderUpdate
    from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

    config = bot_config(sim)
    signal = make_signal(config, Side.BUY, 1)
    cid = client_order_id(signal.signal_id)
    ex = make_binance(rest_url=sim.rest_url, api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET)
    ex.options["fetchMargins"] = False
    try:
        placed = (await ex.create_order("BTC/USDT", "market", "buy", None, None,
                                        {"newClientOrderId": cid, "quoteOrderQty": "100"}))["info"]  # fmt: skip
    finally:
        await ex.close()
    fee = sum(Decimal(f["commission"]) for f in placed["fills"])
    # The crashed run stored the order and the FILLED summary, but not the fills (which carry the fee).
    await store.insert_signal(signal)
    await store.insert_order(Order(client_order_id=cid, bot=config.name, exchange="binance", symbol=config.symbol,
                                   side=Side.BUY, order_type="MARKET", signal_id=signal.signal_id,
                                   status=OrderStatus.PENDING, created_at=1, updated_at=1,
                                   quote_amount=Decimal("100")))  # fmt: skip
    await store.apply_order_update(OrderUpdate(cid, OrderStatus.FILLED, 2, exchange_order_id=str(placed["orderId"]),
                                               filled_qty=Decimal(placed["executedQty"]),
                                               cum_quote=Decimal(placed["cummulativeQuoteQty"]),
                                               exec_type="QUERY", source="rest"))  # fmt: skip
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    assert fee > 0 and m.position.qty == Decimal(placed["executedQty"]) - fee

    async def fee_stored() -> bool:
        o = await store.get_order(cid)
        return o is not None and o.fee == fee

    await until(fee_stored, what="fills (with fees) stored after recovery")
    assert (await sim_orders(sim))["accepted_per_client_id"] == {cid: 1}


async def test_every_pending_signal_gets_an_outcome_on_recover_and_only_the_newest_is_acted_on(
    sim, store, lease, run_manager, metrics
):
    # Three signals stored by processes that were killed before acting (#11: before, only the newest
    # was looked at and the others stayed pending for good).
    config = bot_config(sim)
    signals = [make_signal(config, side, n) for n, side in enumerate((Side.BUY, Side.SELL, Side.BUY), 1)]
    for s in signals:
        await store.insert_signal(s)
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    assert m.trading_ready
    newest = signals[-1]
    assert (await sim_orders(sim))["accepted_per_client_id"] == {client_order_id(newest.signal_id): 1}
    actions = {s.signal_id: s.action for s in await store.signals(config.name)}
    assert actions[newest.signal_id] == "order"
    for s in signals[:-1]:
        assert actions[s.signal_id] == f"superseded by {newest.signal_id}"
    assert [o.signal_id for o in await store.orders(config.name)] == [newest.signal_id]


async def test_a_standby_never_writes_the_leaders_positions_row(sim, store, run_manager, metrics):
    # #11: standbys rebuilt a position from the reports they happened to see and wrote it over the
    # leader's row. A replica that may not trade reads and recovers, but writes no position.
    from tradefleet.coord.lease import LocalLease
    from tradefleet.domain.models import Position

    config = bot_config(sim)
    leaders = Position(bot=config.name, symbol=config.symbol, qty=Decimal("0.5"))
    await store.save_position(leaders)
    standby = LocalLease("standby-holder")  # never started: standby, may not trade
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=standby,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    assert m.trading_ready and m.position.qty == 0
    saved = await store.load_position(config.name, config.symbol)
    assert saved is not None and saved.qty == Decimal("0.5")
