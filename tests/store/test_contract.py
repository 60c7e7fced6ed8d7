"""The Store contract: what every backend must do, run against each backend present."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import HealthCheck, given, settings

from tests.store import records as r
from tests.store.test_order_merge import fold, order_histories
from tradefleet.domain.models import Order, OrderStatus, OrderUpdate, Side, Signal
from tradefleet.ports import Store
from tradefleet.store.merge import update_key


async def test_prices_round_trip_exactly_and_read_back_newest_first_limited(store: Store) -> None:
    samples = [r.price(i) for i in range(30)]
    await store.write_prices(samples)

    assert await store.prices(r.BOT, limit=1000) == samples
    newest = await store.prices(r.BOT, limit=5)
    assert newest == samples[-5:]
    # Decimal kept exactly, trailing zeros and all.
    assert str(newest[0].bid_qty) == "0.00120000"
    assert await store.prices("other-bot") == []


async def test_rewriting_a_price_batch_after_an_unseen_outcome_stores_each_sample_once(store: Store) -> None:
    batch = [r.price(i) for i in range(10)]
    await store.write_prices(batch)
    await store.write_prices(batch)  # the retry of a batch whose reply was lost
    await store.write_prices([*batch[5:], r.price(10), r.price(10)])  # overlap and a duplicate inside

    assert await store.prices(r.BOT) == [*batch, r.price(10)]


async def test_same_update_id_at_another_local_time_is_another_sample(store: Store) -> None:
    first = r.price(1)
    again = dataclasses.replace(first, local_ts=first.local_ts + 1)
    await store.write_prices([first, again])
    assert await store.prices(r.BOT) == [first, again]


async def test_candles_upsert_by_open_time_and_a_closed_candle_is_never_replaced_by_a_late_open_one(
    store: Store,
) -> None:
    await store.write_candles([r.candle(0, close="1.0", closed=False), r.candle(1, close="2.0")])
    await store.write_candles([r.candle(0, close="1.5", closed=True)])
    await store.write_candles([r.candle(0, close="9.9", closed=False)])  # late, stale in-progress version

    stored = await store.candles(r.SYMBOL, "1m")
    assert [(c.open_time, c.close, c.closed) for c in stored] == [
        (r.T0, Decimal("1.5"), True),
        (r.T0 + 60_000, Decimal("2.0"), True),
    ]
    assert stored[1] == r.candle(1, close="2.0")
    assert await store.candles(r.SYMBOL, "1d") == []


async def test_signal_is_stored_once_and_its_action_can_be_recorded(store: Store) -> None:
    sig = r.signal(0)
    assert await store.insert_signal(sig) is True
    assert await store.insert_signal(dataclasses.replace(sig, close=Decimal("1"))) is False

    await store.update_signal_action(sig.signal_id, "order")
    assert await store.signals(r.BOT) == [dataclasses.replace(sig, action="order")]


async def test_signals_are_listed_per_bot_in_creation_order(store: Store) -> None:
    later, earlier = r.signal(2, side=Side.SELL), r.signal(1)
    other = r.signal(1, bot="eth-usdt")
    for s in (later, other, earlier):
        await store.insert_signal(s)
    assert await store.signals(r.BOT) == [earlier, later]
    assert await store.signals("eth-usdt") == [other]


async def test_order_is_stored_once_and_a_second_insert_changes_nothing(store: Store) -> None:
    o = r.order()
    assert await store.insert_order(o) is True
    assert await store.insert_order(dataclasses.replace(o, quote_amount=Decimal("999"))) is False
    assert await store.get_order(o.client_order_id) == o
    assert await store.get_order("no-such-order") is None


async def test_order_updates_are_kept_once_each_and_the_order_only_moves_forward(store: Store) -> None:
    o = r.order()
    coid = o.client_order_id
    await store.insert_order(o)
    new = r.update(coid, OrderStatus.NEW, event_time=r.T0 + 1)
    fill1 = r.update(coid, OrderStatus.PARTIALLY_FILLED, filled="0.001", quote="37.1", trade_id=1,
                     fee="0.0000001", event_time=r.T0 + 2)  # fmt: skip
    fill2 = r.update(coid, OrderStatus.FILLED, filled="0.0027", quote="100.0", trade_id=2,
                     fee="0.0000002", event_time=r.T0 + 3)  # fmt: skip
    late_new = r.update(coid, OrderStatus.NEW, event_time=r.T0 + 1)

    after_new = await store.apply_order_update(new)
    assert after_new is not None and after_new.status is OrderStatus.NEW
    await store.apply_order_update(fill1)
    final = await store.apply_order_update(fill2)
    # Reordered and repeated reports: nothing moves back, no fee is counted twice.
    assert await store.apply_order_update(fill1) == final
    assert await store.apply_order_update(late_new) == final
    assert await store.apply_order_update(fill2) == final

    assert final is not None
    assert final.status is OrderStatus.FILLED
    assert final.filled_qty == Decimal("0.0027") and final.cum_quote == Decimal("100.0")
    assert final.fee == Decimal("0.0000003") and final.fee_asset == "BNB"
    assert final.exchange_order_id == "12345" and final.updated_at == r.T0 + 3
    assert await store.get_order(coid) == final
    assert await store.order_updates(coid) == [new, fill1, fill2]


async def test_the_fee_total_of_an_answer_is_stored_at_once_and_its_fills_do_not_add_it_again(
    store: Store,
) -> None:
    """A market order's answer (QUERY) carries its total fee; the fills carrying it again may never
    arrive (kill -9: they were queued in the dead process). Either way the fee is stored once."""
    o = r.order()
    coid = o.client_order_id
    await store.insert_order(o)
    answer = dataclasses.replace(
        r.update(coid, OrderStatus.FILLED, filled="0.0027", quote="100.0", fee="0.0000003"), fee_asset="BNB"
    )
    fill1 = r.update(coid, OrderStatus.PARTIALLY_FILLED, filled="0.001", quote="37.1", trade_id=1,
                     fee="0.0000001", event_time=r.T0 + 2)  # fmt: skip
    fill2 = r.update(coid, OrderStatus.PARTIALLY_FILLED, filled="0.0027", quote="100.0", trade_id=2,
                     fee="0.0000002", event_time=r.T0 + 3)  # fmt: skip
    after_answer = await store.apply_order_update(answer)
    assert after_answer is not None and after_answer.fee == Decimal("0.0000003")
    assert (await store.get_order(coid)) == after_answer
    for u in (fill1, fill2, answer, fill1):
        await store.apply_order_update(u)
    final = await store.get_order(coid)
    assert final is not None and (final.status, final.fee, final.fee_asset) == (
        OrderStatus.FILLED, Decimal("0.0000003"), "BNB"
    )  # fmt: skip
    # The fills first, then the answer: the same document.
    other = r.order(r.uid("fee"))
    await store.insert_order(other)
    for u in (fill1, fill2, answer):
        await store.apply_order_update(dataclasses.replace(u, client_order_id=other.client_order_id))
    again = await store.get_order(other.client_order_id)
    assert again is not None and (again.fee, again.filled_qty) == (final.fee, final.filled_qty)


async def test_update_for_an_order_not_yet_stored_is_kept_and_folded_in_when_the_order_arrives(
    store: Store,
) -> None:
    o = r.order()
    fill = r.update(o.client_order_id, OrderStatus.FILLED, filled="1", quote="100", trade_id=9, fee="0.1")
    assert await store.apply_order_update(fill) is None

    assert await store.insert_order(o) is True
    stored = await store.get_order(o.client_order_id)
    assert stored is not None
    assert (stored.status, stored.filled_qty, stored.fee) == (OrderStatus.FILLED, Decimal(1), Decimal("0.1"))
    assert await store.order_updates(o.client_order_id) == [fill]


async def test_open_orders_lists_only_this_bots_orders_that_are_not_final(store: Store) -> None:
    pending, acked, done, foreign = (
        r.order(created_at=1),
        r.order(created_at=2),
        r.order(created_at=3),
        r.order(bot="eth-usdt"),
    )
    for o in (done, acked, pending, foreign):
        await store.insert_order(o)
    await store.apply_order_update(r.update(acked.client_order_id, OrderStatus.NEW))
    await store.apply_order_update(r.update(done.client_order_id, OrderStatus.CANCELED, reason="user"))

    open_now = await store.open_orders(r.BOT)
    assert [o.client_order_id for o in open_now] == [pending.client_order_id, acked.client_order_id]
    assert [o.client_order_id for o in await store.orders(r.BOT)] == [
        pending.client_order_id,
        acked.client_order_id,
        done.client_order_id,
    ]
    cancelled = await store.get_order(done.client_order_id)
    assert cancelled is not None and cancelled.reason == "user"


async def test_position_is_saved_loaded_and_overwritten_per_bot_and_symbol(store: Store) -> None:
    assert await store.load_position(r.BOT, r.SYMBOL) is None
    await store.save_position(r.position("0.5"))
    await store.save_position(r.position("0.00269541"))
    assert await store.load_position(r.BOT, r.SYMBOL) == r.position("0.00269541")
    assert await store.load_position("eth-usdt", r.SYMBOL) is None


async def test_ping_succeeds_on_a_writable_store(store: Store) -> None:
    await store.ping()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(updates=order_histories())
async def test_stored_order_is_the_same_whatever_order_its_reports_arrive_in(
    store: Store, updates: list[OrderUpdate]
) -> None:
    o = r.order()  # a fresh id per example: examples share the store
    updates = [dataclasses.replace(u, client_order_id=o.client_order_id) for u in updates]
    await store.insert_order(o)
    for u in updates:
        await store.apply_order_update(u)

    expected, _ = fold(o, sorted(updates, key=lambda u: (u.event_time, update_key(u))))
    assert await store.get_order(o.client_order_id) == expected
    history = await store.order_updates(o.client_order_id)
    assert len(history) == len({update_key(u) for u in updates})


async def test_events_are_stored_once_by_id_and_listed_per_bot_newest_limited_oldest_first(
    store: Store,
) -> None:
    from tradefleet.domain.ids import event_id
    from tradefleet.domain.models import BotEvent, EventKind

    def ev(i: int, *, bot: str = r.BOT, kind: EventKind = EventKind.HALT) -> BotEvent:
        return BotEvent(
            event_id(bot, kind.value, f"halt-{i}"), bot, kind, r.T0 + i, f"halted (fleet) by ops: test {i}",
            {"halt_id": f"halt-{i}", "scope": "fleet", "difference": "0.01440000", "by": "ops"},
        )  # fmt: skip

    events = [ev(i) for i in range(5)]
    for e in events:
        assert await store.insert_event(e) is True
    # The same fact seen again (another replica, a restart) is not a second record.
    assert await store.insert_event(events[2]) is False
    assert await store.insert_event(ev(9, bot="other-bot", kind=EventKind.RESUME)) is True

    assert await store.events(r.BOT) == events  # exact strings back (trailing zeros kept), oldest first
    assert await store.events(r.BOT, limit=2) == events[-2:]
    assert [e.kind for e in await store.events("other-bot")] == [EventKind.RESUME]
    assert await store.events("nobody") == []


def _committed(i: int = 0) -> tuple[Signal, Order]:
    """A signal decided "order" and its PENDING order, as the order manager commits them."""
    sig = dataclasses.replace(r.signal(i), action="order")
    return sig, dataclasses.replace(r.order(), signal_id=sig.signal_id, created_at=sig.created_at)


async def test_a_signal_and_its_order_are_committed_together_and_a_second_commit_changes_nothing(
    store: Store,
) -> None:
    sig, o = _committed()
    assert await store.commit_order(sig, o) is True
    # Read before the rest is written, as after a crash right after the commit.
    assert await store.signals(r.BOT) == [sig]
    assert await store.get_order(o.client_order_id) == o

    again = dataclasses.replace(sig, action="again", close=Decimal("1"))
    assert await store.commit_order(again, dataclasses.replace(o, quote_amount=Decimal("999"))) is False
    await store.after_commit_order(sig, o)
    assert await store.signals(r.BOT) == [sig]
    assert await store.orders(r.BOT) == [o]
    await store.after_commit_order(sig, o)  # idempotent
    assert await store.signals(r.BOT) == [sig]


async def test_a_commit_gives_a_signal_stored_as_pending_its_action(store: Store) -> None:
    sig, o = _committed()
    pending = dataclasses.replace(sig, action="pending")
    assert await store.insert_signal(pending) is True
    assert await store.commit_order(sig, o) is True
    assert await store.signals(r.BOT) == [sig]
    await store.after_commit_order(sig, o)
    assert await store.signals(r.BOT) == [sig]
    assert await store.insert_signal(pending) is False  # a late copy of the pending record changes nothing
    assert await store.signals(r.BOT) == [sig]


async def test_an_action_recorded_after_a_commit_whose_rest_never_ran_is_kept(store: Store) -> None:
    """The process died between the commit and `after_commit_order`; after the restart the order is
    found never sent and its signal gets another action: that action is what every read shows."""
    sig, o = _committed()
    other_sig, other = _committed(1)
    assert await store.commit_order(sig, o) is True
    assert await store.commit_order(other_sig, other) is True
    await store.update_signal_action(sig.signal_id, "not_sent: flat_cannot_sell")
    assert await store.signals(r.BOT) == [
        dataclasses.replace(sig, action="not_sent: flat_cannot_sell"),
        other_sig,
    ]


async def test_reports_that_came_before_a_committed_order_are_folded_in_by_the_rest_of_the_commit(
    store: Store,
) -> None:
    sig, o = _committed()
    fill = r.update(o.client_order_id, OrderStatus.FILLED, filled="1", quote="100", trade_id=9, fee="0.1")
    assert await store.apply_order_update(fill) is None
    assert await store.commit_order(sig, o) is True
    await store.after_commit_order(sig, o)
    stored = await store.get_order(o.client_order_id)
    assert stored is not None
    assert (stored.status, stored.filled_qty, stored.fee) == (OrderStatus.FILLED, Decimal(1), Decimal("0.1"))
