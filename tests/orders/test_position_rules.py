"""Pure position and sizing rules: table-driven cases plus properties (hypothesis)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradefleet.domain.ids import BINANCE_CLIENT_ID_RE, client_order_id, is_ours
from tradefleet.domain.models import Order, OrderStatus, OrderUpdate, Position, Side
from tradefleet.domain.position import (
    ALREADY_LONG,
    BELOW_MIN_NOTIONAL,
    BELOW_MIN_QTY,
    FLAT_CANNOT_SELL,
    Filters,
    OrderIntent,
    Skip,
    apply_fill,
    decide,
    fill_delta,
    merge_update,
    position_from_orders,
    quantize_down,
    tradable_qty,
)

F = Filters(
    base_asset="BTC",
    quote_asset="USDT",
    step_size=D("0.00001"),
    min_qty=D("0.00001"),
    max_qty=D("9000"),
    tick_size=D("0.01"),
    min_notional=D("5"),
)


def pos(qty: str = "0", cost: str = "0") -> Position:
    return Position(bot="b", symbol="BTC/USDT", qty=D(qty), cost_quote=D(cost))


@pytest.mark.parametrize(
    ("side", "qty", "quote", "price", "expected"),
    [
        (Side.BUY, "0", "100", "50000", OrderIntent(Side.BUY, quote_amount=D("100"))),
        (Side.BUY, "0.002", "100", "50000", Skip(ALREADY_LONG)),
        (Side.BUY, "0.000009", "100", "50000", OrderIntent(Side.BUY, quote_amount=D("100"))),  # dust is flat
        (Side.BUY, "0", "4.99", "50000", Skip(BELOW_MIN_NOTIONAL)),
        (Side.BUY, "0", "6", "900000", Skip(BELOW_MIN_QTY)),  # 6/900000 < one step
        (Side.BUY, "0", "100", None, OrderIntent(Side.BUY, quote_amount=D("100"))),
        (Side.SELL, "0", "100", "50000", Skip(FLAT_CANNOT_SELL)),
        (Side.SELL, "0.000009", "100", "50000", Skip(FLAT_CANNOT_SELL)),
        (Side.SELL, "0.0019981", "100", "50000", OrderIntent(Side.SELL, quantity=D("0.00199"))),
        (Side.SELL, "0.00005", "100", "50000", Skip(BELOW_MIN_NOTIONAL)),  # 2.5 USDT < 5
        (Side.SELL, "0.00005", "100", None, OrderIntent(Side.SELL, quantity=D("0.00005"))),
        # A step's worth of remainders from earlier round trips, worth 2.5 USDT: dust at this price,
        # so it does not block the BUY (it is sold along with the next SELL).
        (Side.BUY, "0.00005", "100", "50000", OrderIntent(Side.BUY, quote_amount=D("100"))),
        (Side.BUY, "0.00005", "100", None, Skip(ALREADY_LONG)),  # no price: only the quantity tells
    ],
)
def test_decides_order_or_reason_for_signal_given_position(side, qty, quote, price, expected):
    got = decide(side, pos(qty), F, quote_amount=D(quote), price=None if price is None else D(price))
    assert got == expected


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [("1.23456789", "0.001", "1.234"), ("0.0009", "0.001", "0"), ("5", "1", "5"), ("7.5", "0", "7.5")],
)
def test_quantizes_down_never_up(value, step, expected):
    assert quantize_down(D(value), D(step)) == D(expected)


@given(
    qty=st.decimals(min_value=0, max_value=10_000, places=8, allow_nan=False),
    step=st.sampled_from([D("0.00001"), D("0.001"), D("0.1"), D("1")]),
)
def test_tradable_qty_is_a_step_multiple_never_above_holding(qty, step):
    f = Filters("BTC", "USDT", step, step, D("9000"), D("0.01"), D("5"))
    q = tradable_qty(qty, f)
    assert q <= qty
    assert q <= D("9000")
    assert q == 0 or (q % step == 0 and q >= f.min_qty)
    assert qty - q < step or q == quantize_down(D("9000"), step)


@given(
    prices=st.lists(
        st.decimals(min_value=D("20000"), max_value=D("120000"), places=2), min_size=2, max_size=80
    ),
    quote=st.sampled_from([D("10"), D("25"), D("100")]),
    leftover_steps=st.integers(0, 4),
)
def test_round_trips_never_leave_a_position_that_blocks_the_next_buy(prices, quote, leftover_steps):
    """A compose run once failed over to a bot holding 0.00001143 BTC (0.26 USDT, left over from
    earlier round trips): every BUY was `already_long`, every SELL `below_min_notional`, and the bot
    never traded again. Whatever has been left over (here up to 4 steps, worth less than the minimum
    notional at any of these prices), a BUY signal must buy and the SELL after it sell it all along;
    each round trip with Binance's default BUY fee (0.1%, in the base asset) leaves < a step."""
    p = pos(str(F.step_size * leftover_steps + D("0.00000143")))
    for i, price in enumerate(prices):
        buy = decide(Side.BUY, p, F, quote_amount=quote, price=price)
        assert isinstance(buy, OrderIntent), (i, p.qty, buy)
        got = quantize_down(quote / price, F.step_size)
        p = apply_fill(p, side=Side.BUY, base_qty=got, quote_qty=got * price, fee=got / 1000,
                       fee_asset="BTC", f=F, at=2 * i)  # fmt: skip
        sell = decide(Side.SELL, p, F, quote_amount=quote, price=price)
        assert isinstance(sell, OrderIntent) and sell.quantity is not None, (i, p.qty, sell)
        p = apply_fill(p, side=Side.SELL, base_qty=sell.quantity, quote_qty=sell.quantity * price, fee=D(0),
                       fee_asset=None, f=F, at=2 * i + 1)  # fmt: skip
        assert p.qty < F.step_size  # all but the last remainder is sold along


def test_buy_fee_in_base_reduces_quantity_and_sell_realizes_pnl_in_quote():
    p = apply_fill(pos(), side=Side.BUY, base_qty=D("0.002"), quote_qty=D("100"), fee=D("0.000002"),
                   fee_asset="BTC", f=F, at=1)  # fmt: skip
    assert p.qty == D("0.001998") and p.cost_quote == D("100")
    p = apply_fill(p, side=Side.SELL, base_qty=D("0.00199"), quote_qty=D("110"), fee=D("0.11"),
                   fee_asset="USDT", f=F, at=2)  # fmt: skip
    basis = D("100") * D("0.00199") / D("0.001998")
    assert p.qty == D("0.000008")
    assert p.realized_pnl_quote == D("110") - D("0.11") - basis
    assert p.cost_quote == D("100") - basis


def test_fee_in_third_asset_is_not_taken_from_position():
    p = apply_fill(pos(), side=Side.BUY, base_qty=D("1"), quote_qty=D("10"), fee=D("0.01"), fee_asset="BNB",
                   f=F, at=1)  # fmt: skip
    assert p.qty == D("1") and p.cost_quote == D("10")


def _order(status: OrderStatus = OrderStatus.PENDING, **kw: object) -> Order:
    base: dict[str, object] = dict(client_order_id="tfx", bot="b", exchange="binance", symbol="BTC/USDT",
                                   side=Side.BUY, order_type="MARKET", signal_id="s", status=status,
                                   created_at=0, updated_at=0)  # fmt: skip
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


STATUSES = list(OrderStatus)


@st.composite
def updates(draw: st.DrawFn) -> list[OrderUpdate]:
    n = draw(st.integers(1, 6))
    out, filled = [], D(0)
    for i in range(n):
        inc = draw(st.sampled_from([D(0), D("0.001"), D("0.002")]))
        filled += inc
        status = OrderStatus.PARTIALLY_FILLED if inc else OrderStatus.NEW
        out.append(OrderUpdate(client_order_id="tfx", status=status, event_time=i, filled_qty=filled,
                               cum_quote=filled * 100, fee=inc / 1000, fee_asset="BTC",
                               exec_type="TRADE" if inc else "NEW"))  # fmt: skip
    last = out[-1]
    final = draw(st.sampled_from([OrderStatus.FILLED, OrderStatus.EXPIRED, OrderStatus.CANCELED]))
    out.append(OrderUpdate(client_order_id="tfx", status=final, event_time=n, filled_qty=last.filled_qty,
                           cum_quote=last.cum_quote, exec_type="CANCELED"))  # fmt: skip
    return out


@given(seq=updates(), data=st.data())
def test_merge_never_moves_backwards_and_replays_change_nothing(seq, data):
    in_order = _order()
    for u in seq:
        in_order = merge_update(in_order, u)
    shuffled = data.draw(st.permutations(seq + seq))
    merged = _order()
    for u in shuffled:
        before = merged
        merged = merge_update(merged, u)
        assert merged.filled_qty >= before.filled_qty
        assert not before.status.is_final or merged == before
    # In-order delivery reaches the final state and all the fills; out of order at least never regresses.
    assert in_order.status.is_final
    assert in_order.filled_qty == seq[-1].filled_qty
    assert in_order.fee == sum((u.fee for u in seq), D(0))


def test_query_update_carries_total_fee_and_is_not_added_twice():
    o = merge_update(_order(), OrderUpdate("tfx", OrderStatus.PARTIALLY_FILLED, 1, filled_qty=D("1"),
                                           cum_quote=D("10"), fee=D("0.001"), fee_asset="BTC",
                                           exec_type="TRADE"))  # fmt: skip
    o2 = merge_update(o, OrderUpdate("tfx", OrderStatus.FILLED, 2, filled_qty=D("2"), cum_quote=D("20"),
                                     fee=D("0.002"), fee_asset="BTC", exec_type="QUERY"))  # fmt: skip
    assert (o2.status, o2.fee, fill_delta(o, o2)) == (
        OrderStatus.FILLED,
        D("0.002"),
        (D(1), D(10), D("0.001")),
    )


@given(st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 1000)), max_size=8))
def test_position_rebuilt_from_orders_equals_fills_applied_one_by_one(trades):
    orders, p, qty = [], pos(), D(0)
    for i, (side, units) in enumerate(trades):
        base = D(units) / 1000 if side is Side.BUY else qty
        if base == 0:
            continue
        o = _order(OrderStatus.FILLED, client_order_id=f"tf{i:03d}", side=side, created_at=i, updated_at=i,
                   filled_qty=base, cum_quote=base * 100, fee=base / 1000 if side is Side.BUY else D(0),
                   fee_asset="BTC")  # fmt: skip
        orders.append(o)
        p = apply_fill(
            p, side=side, base_qty=base, quote_qty=base * 100, fee=o.fee, fee_asset="BTC", f=F, at=i
        )
        qty = p.qty
        assert p.qty >= 0
    assert position_from_orders("b", "BTC/USDT", orders, F) == p


@given(st.text(min_size=1, max_size=300), st.integers(0, 1000))
def test_client_order_id_is_deterministic_short_and_in_binance_charset(signal_id, attempt):
    cid = client_order_id(signal_id, attempt)
    assert cid == client_order_id(signal_id, attempt)
    assert BINANCE_CLIENT_ID_RE.match(cid) and len(cid) <= 36 and is_ours(cid)
    assert cid != client_order_id(signal_id, attempt + 1)


def test_client_order_ids_differ_per_signal():
    ids = {client_order_id(f"btc-usdt:1d:{t}:BUY") for t in range(1000)}
    assert len(ids) == 1000


def test_merges_rebuild_every_field_of_an_order_and_a_position():
    """`merge_update`, the stores' `advance` and `apply_fill` build their results field by field
    (a backtest sweep calls them millions of times; `dataclasses.replace` cost 3x). A field added to
    `Order` or `Position` must be carried there too: this list fails first, and the merge below
    checks every field it does not change survives."""
    import dataclasses

    from tradefleet.store.merge import advance

    assert [f.name for f in dataclasses.fields(Order)] == [
        "client_order_id", "bot", "exchange", "symbol", "side", "order_type", "signal_id", "status",
        "created_at", "updated_at", "quantity", "quote_amount", "exchange_order_id", "filled_qty",
        "cum_quote", "fee", "fee_asset", "fencing_token", "reason",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(Position)] == [
        "bot", "symbol", "qty", "cost_quote", "realized_pnl_quote", "updated_at",
    ]  # fmt: skip
    o = Order("tf1", "b", "binance", "BTC/USDT", Side.SELL, "MARKET", "s1", OrderStatus.NEW, 5, 6,
              quantity=D("0.5"), quote_amount=None, exchange_order_id="9", filled_qty=D("0.1"),
              cum_quote=D("10"), fee=D("0.01"), fee_asset="USDT", fencing_token=42, reason="r")  # fmt: skip
    u = OrderUpdate("tf1", OrderStatus.NEW, 3, exec_type="NEW")
    for merged in (merge_update(o, u), advance(o, u, first_seen=True)):
        assert merged == o


@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "refill", "drop"]), st.integers(0, 7), st.integers(1, 1000)),
        min_size=1,
        max_size=25,
    )
)
def test_a_kept_fold_equals_folding_from_scratch_after_every_change(changes):
    """The order manager keeps its fold (`PositionFold`) and refolds after each report from the
    first order that changed: at every step it must equal `position_from_orders` from scratch."""
    from tradefleet.domain.position import PositionFold

    kept = PositionFold("b", "BTC/USDT", F)
    orders: dict[str, Order] = {}
    for step, (what, slot, units) in enumerate(changes):
        cid = f"tf{slot:03d}"
        side = Side.BUY if slot % 2 == 0 else Side.SELL
        if what == "drop":
            orders.pop(cid, None)
        else:  # a new order, or a new version of one (more filled, a later fee)
            qty = D(units) / 1000
            orders[cid] = _order(OrderStatus.PARTIALLY_FILLED if what == "add" else OrderStatus.FILLED,
                                 client_order_id=cid, side=side, created_at=slot, updated_at=step,
                                 filled_qty=qty, cum_quote=qty * 100, fee=qty / 1000, fee_asset="BTC")  # fmt: skip
        assert kept.position(orders.values()) == position_from_orders("b", "BTC/USDT", orders.values(), F)


@given(
    st.lists(
        st.tuples(st.integers(0, 11), st.integers(1, 1000), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_putting_orders_one_at_a_time_equals_folding_from_scratch(changes):
    """`PositionFold.put` (the manager's path after each report: no sort, refold from the changed
    order on), in any order of creation times and with any order changing again: at every step the
    same position as `position_from_orders` from scratch, and as the sorting `position`."""
    from tradefleet.domain.position import PositionFold

    kept, sorting = PositionFold("b", "BTC/USDT", F), PositionFold("b", "BTC/USDT", F)
    orders: dict[str, Order] = {}
    for step, (slot, units, final) in enumerate(changes):
        cid = f"tf{slot:03d}"
        side = Side.BUY if slot % 2 == 0 else Side.SELL
        qty = D(units) / 1000
        o = _order(OrderStatus.FILLED if final else OrderStatus.PARTIALLY_FILLED, client_order_id=cid,
                   side=side, created_at=(slot * 7) % 12, updated_at=step, filled_qty=qty,
                   cum_quote=qty * 100, fee=qty / 1000, fee_asset="BTC")  # fmt: skip
        orders[cid] = o
        want = position_from_orders("b", "BTC/USDT", orders.values(), F)
        assert kept.put(o) == want
        assert kept.put(o) == want  # the same object again: nothing to fold
        assert sorting.position(orders.values()) == want
