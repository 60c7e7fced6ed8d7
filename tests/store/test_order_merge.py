"""Properties of the forward-only order merge that both backends rely on (pure, no store)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.store import records as r
from tradefleet.domain.models import Order, OrderStatus, OrderUpdate
from tradefleet.store.merge import advance, order_fee, status_key, update_key

COID = "tf-prop"


@st.composite
def order_histories(draw: st.DrawFn) -> list[OrderUpdate]:
    """A plausible life of one order: NEW, fills with growing cumulative quantities, maybe a final
    state, plus REST queries of intermediate states; then shuffled and partly repeated."""
    n_fills = draw(st.integers(0, 5))
    qtys = sorted(draw(st.lists(st.integers(1, 10_000), min_size=n_fills, max_size=n_fills, unique=True)))
    life = [r.update(COID, OrderStatus.NEW, event_time=r.T0 + 1)]
    for i, q in enumerate(qtys):
        filled = Decimal(q) / 10_000
        life.append(
            r.update(COID, OrderStatus.PARTIALLY_FILLED, filled=str(filled), quote=str(filled * 37_000),
                     trade_id=100 + i, fee=str(Decimal(i + 1) / 10**8), event_time=r.T0 + 2 + i)
        )  # fmt: skip
        if draw(st.booleans()):
            life.append(
                r.update(COID, OrderStatus.PARTIALLY_FILLED, filled=str(filled), quote=str(filled * 37_000),
                         event_time=r.T0 + 2 + i)
            )  # fmt: skip
    ending = draw(st.sampled_from([None, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED]))
    if ending is not None:
        last = life[-1]
        life.append(
            r.update(COID, ending, filled=str(last.filled_qty), quote=str(last.cum_quote),
                     event_time=r.T0 + 100, reason="done")
        )  # fmt: skip
    repeats = draw(st.lists(st.sampled_from(life), max_size=4))
    return draw(st.permutations(life + repeats))


def fold(start: Order, updates: list[OrderUpdate]) -> tuple[Order, list[Order]]:
    seen: set[str] = set()
    states = [start]
    current = start
    for u in updates:
        key = update_key(u)
        current = advance(current, u, first_seen=key not in seen)
        seen.add(key)
        states.append(current)
    return current, states


@settings(max_examples=300, deadline=None)
@given(order_histories(), st.randoms(use_true_random=False))
def test_any_arrival_order_of_the_same_reports_gives_the_same_order(
    updates: list[OrderUpdate], rnd: object
) -> None:
    start = r.order(COID)
    final, _ = fold(start, updates)
    reordered = list(updates)
    rnd.shuffle(reordered)  # type: ignore[attr-defined]
    assert fold(start, reordered)[0] == final
    # The fee is each distinct trade's commission once, whatever the duplicates.
    trades = {u.trade_id: u.fee for u in updates if u.trade_id is not None}
    assert final.fee == sum(trades.values(), Decimal(0))
    assert final.filled_qty == max((u.filled_qty for u in updates), default=Decimal(0))


@settings(max_examples=300, deadline=None)
@given(order_histories(), st.data())
def test_the_fee_is_the_answers_total_whichever_of_its_fills_arrived_and_in_any_order(
    updates: list[OrderUpdate], data: st.DataObject
) -> None:
    """As the stores fold: the answer to the order (QUERY) carries its total fee, the fills carry it
    again one by one; any of the fills may be lost with a killed process. The fee is the total,
    never the total plus the fills, never moving back."""
    trades = {u.trade_id: u for u in updates if u.trade_id is not None}
    total = sum((u.fee for u in trades.values()), Decimal(0))
    filled = max((u.filled_qty for u in updates), default=Decimal(0))
    answer = r.update(
        COID, OrderStatus.FILLED, filled=str(filled), quote=str(filled * 37_000), fee=str(total)
    )
    arrived = [u for u in updates if u.trade_id is None or data.draw(st.booleans())]
    history: list[OrderUpdate] = data.draw(st.permutations([*arrived, answer]))
    seen: list[OrderUpdate] = []
    current = r.order(COID)
    for u in history:
        first_seen = update_key(u) not in {update_key(x) for x in seen}
        seen.append(u)
        after = advance(current, u, first_seen=first_seen, fee=order_fee(seen) if u.fee > 0 else None)
        assert after.fee >= current.fee
        current = after
    assert current.fee == total == order_fee(history)


@settings(max_examples=300, deadline=None)
@given(order_histories())
def test_no_report_moves_the_order_backwards(updates: list[OrderUpdate]) -> None:
    _, states = fold(r.order(COID), updates)
    for before, after in itertools.pairwise(states):
        assert status_key(after.status) >= status_key(before.status)
        assert after.filled_qty >= before.filled_qty
        assert after.cum_quote >= before.cum_quote
        assert after.fee >= before.fee
        assert after.updated_at >= before.updated_at


def test_update_key_ignores_event_time_and_decimal_spelling_but_not_the_state() -> None:
    a = r.update(COID, OrderStatus.FILLED, filled="1.0", quote="100", event_time=1)
    b = r.update(COID, OrderStatus.FILLED, filled="1.000", quote="100.00", event_time=2)
    c = r.update(COID, OrderStatus.FILLED, filled="0.5", quote="50", event_time=2)
    assert update_key(a) == update_key(b) != update_key(c)


def test_update_for_another_order_is_refused() -> None:
    with pytest.raises(ValueError, match="applied to order"):
        advance(r.order("a"), r.update("b", OrderStatus.NEW), first_seen=True)
