"""Position rules for a spot, long-only bot: what a signal should do, how big, and what fills do.

Pure and synchronous: no clock, no I/O, Decimal only. The order manager asks three questions here:

- `decide(...)`: given a signal side and the position, an `OrderIntent` or a `Skip` with the reason
  that gets stored on the signal (a denial is a record, never an exception);
- `merge_update(order, update)`: the order's newest state, never moving backwards, so replayed or
  out-of-order reports change nothing;
- `apply_fill(...)` / `position_from_orders(...)`: the position after fills. The position is a fold
  over the orders' cumulative fills, so it can always be rebuilt from the stored orders after a crash.

Sizing follows Binance's filters (exchangeInfo): quantities are cut *down* to LOT_SIZE's step (never
rounded up: that would sell more than we hold), must reach `min_qty`, and price x quantity must reach
MIN_NOTIONAL/NOTIONAL. A remainder below one step, below the minimum quantity or (at a known price)
below the minimum notional ("dust") counts as flat: it can never be sold on its own, and must not block
the next BUY. Remainders below one step add up over round trips (a base-asset fee each time) until
they pass a step while staying far below the minimum notional; the next SELL then sells them along.

Fees: a fee charged in the base asset (Binance's default on a BUY) reduces the quantity received; a fee
in the quote asset is part of the cost (BUY) or reduces the proceeds (SELL). A fee in a third asset
(BNB discount) is not converted: it is reported on the order, not in the position's P&L.

This module refuses to guess prices: sizing a BUY by quote amount needs no price; minimum checks
that need one are skipped when the caller has none (the exchange then enforces them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal

from tradefleet.domain.models import Order, OrderStatus, OrderUpdate, Position, Side

ZERO = Decimal(0)

# Reasons stored on a signal that does not lead to an order (`Signal.action`).
ALREADY_LONG = "already_long"
FLAT_CANNOT_SELL = "flat_cannot_sell"
BELOW_MIN_NOTIONAL = "below_min_notional"
BELOW_MIN_QTY = "below_min_qty"
ORDER_IN_FLIGHT = "order_in_flight"


@dataclass(frozen=True, slots=True)
class Filters:
    """The subset of a symbol's exchange rules sizing needs (mirrors `ports.SymbolRules`)."""

    base_asset: str
    quote_asset: str
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    tick_size: Decimal
    min_notional: Decimal


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """A market order to place: BUY spends `quote_amount`, SELL sells `quantity` of the base."""

    side: Side
    quantity: Decimal | None = None
    quote_amount: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a signal leads to no order; stored as the signal's action."""

    reason: str


def quantize_down(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of `step` that is <= value (value >= 0). step 0 means no step."""
    if step <= 0:
        return value
    units = (value / step).to_integral_value(rounding=ROUND_DOWN)
    return (units * step).normalize() if units else ZERO


def tradable_qty(qty: Decimal, f: Filters) -> Decimal:
    """How much of `qty` one order may sell: cut to the step and capped at max_qty; 0 if below min."""
    q = quantize_down(max(qty, ZERO), f.step_size)
    if f.max_qty > 0:
        q = min(q, quantize_down(f.max_qty, f.step_size))
    return q if q > 0 and q >= f.min_qty else ZERO


def is_long(position: Position, f: Filters, price: Decimal | None = None) -> bool:
    """Long means there is something a SELL can actually sell; dust is flat. Without a price only the
    quantity rules can tell; with one, a holding worth less than the minimum notional is dust too."""
    qty = tradable_qty(position.qty, f)
    if qty <= 0:
        return False
    return price is None or price <= 0 or f.min_notional <= 0 or qty * price >= f.min_notional


def decide(
    side: Side,
    position: Position,
    f: Filters,
    *,
    quote_amount: Decimal,
    price: Decimal | None,
) -> OrderIntent | Skip:
    """BUY when flat spends `quote_amount`; SELL when long sells the whole tradable position."""
    long_ = is_long(position, f, price)
    if side is Side.BUY:
        if long_:
            return Skip(ALREADY_LONG)
        if f.min_notional > 0 and quote_amount < f.min_notional:
            return Skip(BELOW_MIN_NOTIONAL)
        if price is not None and price > 0:
            # What quoteOrderQty would buy at the signal's price, cut to the step: must reach min_qty.
            est = quantize_down(quote_amount / price, f.step_size)
            if est <= 0 or est < f.min_qty:
                return Skip(BELOW_MIN_QTY)
        return OrderIntent(Side.BUY, quote_amount=quote_amount)
    if tradable_qty(position.qty, f) <= 0:
        return Skip(FLAT_CANNOT_SELL)
    if not long_:
        return Skip(BELOW_MIN_NOTIONAL)  # a holding, but dust at this price: no order can sell it
    return OrderIntent(Side.SELL, quantity=tradable_qty(position.qty, f))


def apply_fill(
    position: Position,
    *,
    side: Side,
    base_qty: Decimal,
    quote_qty: Decimal,
    fee: Decimal,
    fee_asset: str | None,
    f: Filters,
    at: int,
) -> Position:
    """The position after one fill (or the delta of several): base and quote exchanged, fee paid."""
    if base_qty < 0 or quote_qty < 0 or fee < 0:
        raise ValueError("fill quantities and fees must not be negative")
    if base_qty == 0 and quote_qty == 0 and fee == 0:
        return position
    fee_base = fee if fee_asset == f.base_asset else ZERO
    fee_quote = fee if fee_asset == f.quote_asset else ZERO
    # Built directly rather than with `dataclasses.replace` (a generic copy at 3x the cost): a
    # position is refolded from every order on each fill, and backtests fold millions.
    if side is Side.BUY:
        return Position(
            position.bot,
            position.symbol,
            qty=position.qty + base_qty - fee_base,
            cost_quote=position.cost_quote + quote_qty + fee_quote,
            realized_pnl_quote=position.realized_pnl_quote,
            updated_at=at,
        )
    sold = base_qty + fee_base
    proceeds = quote_qty - fee_quote
    basis = position.cost_quote * min(sold, position.qty) / position.qty if position.qty > 0 else ZERO
    qty = position.qty - sold
    cost = position.cost_quote - basis
    if qty <= 0:
        # Never short: selling more than we track means our record lagged; clamp, keep the P&L.
        qty, cost = ZERO, ZERO
    return Position(
        position.bot,
        position.symbol,
        qty=qty,
        cost_quote=cost,
        realized_pnl_quote=position.realized_pnl_quote + proceeds - basis,
        updated_at=at,
    )


_RANK = {
    OrderStatus.PENDING: 0,
    OrderStatus.NEW: 1,
    OrderStatus.PARTIALLY_FILLED: 2,
    OrderStatus.FILLED: 3,
    OrderStatus.CANCELED: 3,
    OrderStatus.REJECTED: 3,
    OrderStatus.EXPIRED: 3,
}


def merge_update(order: Order, update: OrderUpdate) -> Order:
    """The order after `update`: cumulative amounts only grow, status never moves backwards.

    Fees: a stream or paper TRADE report carries that execution's fee (added once, when it brings new
    fill); a REST query ("QUERY") carries the order's total fee so far (taken if larger).
    """
    new_fill = update.filled_qty > order.filled_qty
    if order.status.is_final:
        # Status and quantities are settled; only a fee total reported later may still complete it
        # (a restart that recorded the FILLED summary but not the fills that carry the fee).
        if update.exec_type == "QUERY" and update.fee > order.fee:
            return replace(order, fee=update.fee, fee_asset=update.fee_asset or order.fee_asset)
        return order
    status = order.status
    if _RANK[update.status] > _RANK[order.status] or (
        _RANK[update.status] == _RANK[order.status] and new_fill
    ):
        status = update.status
    fee = order.fee
    fee_asset = order.fee_asset
    if update.exec_type == "QUERY":
        if update.fee > fee:
            fee, fee_asset = update.fee, update.fee_asset or fee_asset
    elif new_fill and update.fee:
        fee, fee_asset = fee + update.fee, update.fee_asset or fee_asset
    o = order  # built field by field: `dataclasses.replace` costs 3x (see `apply_fill`)
    return Order(
        o.client_order_id, o.bot, o.exchange, o.symbol, o.side, o.order_type, o.signal_id,
        status=status,
        created_at=o.created_at,
        updated_at=max(o.updated_at, update.event_time),
        quantity=o.quantity,
        quote_amount=o.quote_amount,
        exchange_order_id=o.exchange_order_id or update.exchange_order_id,
        filled_qty=max(o.filled_qty, update.filled_qty),
        cum_quote=max(o.cum_quote, update.cum_quote),
        fee=fee,
        fee_asset=fee_asset,
        fencing_token=o.fencing_token,
        reason=update.reason or o.reason,
    )  # fmt: skip


def fill_delta(before: Order, after: Order) -> tuple[Decimal, Decimal, Decimal]:
    """Base, quote and fee that `after` adds to `before` (all >= 0)."""
    return (
        max(after.filled_qty - before.filled_qty, ZERO),
        max(after.cum_quote - before.cum_quote, ZERO),
        max(after.fee - before.fee, ZERO),
    )


def position_from_orders(bot: str, symbol: str, orders: Iterable[Order], f: Filters) -> Position:
    """Rebuild the position from every order's cumulative fills, oldest first."""
    return PositionFold(bot, symbol, f).position(orders)


def fold_order(position: Position, o: Order, f: Filters) -> Position:
    """One step of the fold: the position after `o`'s cumulative fills (unchanged if none)."""
    if o.filled_qty <= 0:
        return position
    return apply_fill(
        position,
        side=o.side,
        base_qty=o.filled_qty,
        quote_qty=o.cum_quote,
        fee=o.fee,
        fee_asset=o.fee_asset,
        f=f,
        at=o.updated_at,
    )


class PositionFold:
    """`position_from_orders`, remembering its steps: orders are immutable, so a step whose order
    (and every order before it, oldest first) is the very same object as last time gives the very
    same position, and only the steps from the first changed order on are folded again. An order
    manager refolds after every fill report; this makes that O(changed) instead of O(all orders)
    per report, with the same result as folding from scratch."""

    def __init__(self, bot: str, symbol: str, f: Filters) -> None:
        self.bot, self.symbol, self.filters = bot, symbol, f
        self._steps: list[tuple[Order, Position]] = []

    def position(self, orders: Iterable[Order]) -> Position:
        """The position of all of `orders` (sorted here: O(n log n), for a reload)."""
        ordered = sorted(orders, key=_oldest_first)
        steps = self._steps
        k = 0
        while k < len(steps) and k < len(ordered) and steps[k][0] is ordered[k]:
            k += 1
        return self._fold_from(k, ordered[k:])

    def put(self, order: Order) -> Position:
        """The position once `order` is added, or replaces the order with its client order id: what
        an order manager asks after each report. Nothing is sorted: the order's place is looked for
        from the newest end (a report is almost always about one of the last orders), and only the
        steps from it on are folded again. Sorting every order on every report took ~1.6-3 ms with
        10,000 orders in the history."""
        steps = self._steps
        cid, key = order.client_order_id, _oldest_first(order)
        i = len(steps) - 1
        while i >= 0 and steps[i][0].client_order_id != cid:
            i -= 1
        if i >= 0 and steps[i][0] is order:
            return steps[-1][1]
        rest = [o for o, _ in steps[i + 1 :]] if i >= 0 else []
        if i >= 0:
            del steps[i:]  # the old version of `order` and everything after it
        # Where `order` goes among what is left (after every order older than it).
        j = len(steps)
        while j > 0 and _oldest_first(steps[j - 1][0]) > key:
            j -= 1
        later = [o for o, _ in steps[j:]]
        return self._fold_from(j, sorted([order, *later, *rest], key=_oldest_first))

    def _fold_from(self, k: int, orders: list[Order]) -> Position:
        """Keep the first `k` steps and fold `orders` (oldest first) after them."""
        steps = self._steps
        del steps[k:]
        pos = steps[-1][1] if steps else Position(bot=self.bot, symbol=self.symbol)
        for o in orders:
            pos = fold_order(pos, o, self.filters)
            steps.append((o, pos))
        return pos


def _oldest_first(o: Order) -> tuple[int, str]:
    return o.created_at, o.client_order_id
