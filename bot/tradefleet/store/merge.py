"""How an order document moves when an exchange report arrives: forward only.

Reports arrive twice (stream and REST query), late (a PARTIALLY_FILLED after the FILLED) and, after
an outage, in any order. Both backends therefore fold updates into the order with one pure function
that is a join: commutative, associative and idempotent. Whatever order the same set of updates is
applied in, the order document ends in the same state, and no update moves it backwards:

- status only climbs PENDING < NEW < PARTIALLY_FILLED < final. Final states never coexist on a real
  order; should two arrive anyway, a fixed precedence (FILLED > CANCELED > EXPIRED > REJECTED) picks
  one, so the outcome still does not depend on arrival order;
- cumulative quantities (filled_qty, cum_quote) take the maximum;
- `fee` is the order's fee as its distinct reports tell it (`order_fee`): the sum of the
  commissions of distinct TRADE executions, or the largest total a REST answer (QUERY: an order's
  FULL response, a query, paper's summary) reported, whichever is larger. A total is never added to
  the trades' commissions (that would count the same commission twice). The stores compute it from
  the reports folded into the order (keyed by `update_key`: SQLite's history, written in the same
  transaction; MongoDB's history filtered by the document's `applied` keys) and pass it in; folded
  without it, a TRADE's commission is added when `first_seen`.

  The total matters: the answer to a market order arrives first and the manager sizes its next SELL
  from it, while the TRADE reports follow through the execution's in-memory queue. A kill -9 in
  between loses them; a store that waited for them kept a BUY without its base-asset fee, and the
  next leader, folding it, held the fee on top of its predecessor's remainder: a whole step or more,
  worth less than the minimum notional, that no SELL could sell (0.00001143 BTC in a compose run).

This module refuses I/O: the stores call it inside their own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from tradefleet.domain.models import Order, OrderStatus, OrderUpdate

_RANK = {
    OrderStatus.PENDING: 0,
    OrderStatus.NEW: 1,
    OrderStatus.PARTIALLY_FILLED: 2,
    OrderStatus.FILLED: 3,
    OrderStatus.CANCELED: 3,
    OrderStatus.EXPIRED: 3,
    OrderStatus.REJECTED: 3,
}
_FINAL_PRECEDENCE = {
    OrderStatus.REJECTED: 0,
    OrderStatus.EXPIRED: 1,
    OrderStatus.CANCELED: 2,
    OrderStatus.FILLED: 3,
}
FEE_EXEC_TYPE = "TRADE"
TOTAL_EXEC_TYPE = "QUERY"
ZERO = Decimal(0)


def status_key(status: OrderStatus) -> tuple[int, int]:
    """Sort key of a status: a larger key is further along the order's life."""
    return _RANK[status], _FINAL_PRECEDENCE.get(status, 0)


def plain(value: Decimal) -> str:
    """A Decimal as positional text (no exponent), exactly the same value: how both stores keep it."""
    return format(value, "f")


def update_key(update: OrderUpdate) -> str:
    """The identity of one report, the same however often and from wherever it arrives.

    A trade has its exchange trade id. Any other report (NEW, CANCELED, a REST query) is the fact
    "this order was in this status with this much filled", so a REST query repeated every few seconds
    is stored once. The event time is deliberately not part of the key: it differs between the stream
    and a query reporting the same state.
    """
    if update.trade_id is not None:
        return f"{update.exec_type}:{update.trade_id}"
    return (
        f"{update.exec_type}:{update.status.value}:"
        f"{plain(update.filled_qty.normalize())}:{plain(update.cum_quote.normalize())}"
    )


def _min_present(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _max_present(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def order_fee(history: Iterable[OrderUpdate]) -> Decimal:
    """The fee of an order from its stored reports (any order, duplicates allowed): each distinct
    TRADE's commission once, or the largest total a QUERY reported, whichever is larger."""
    trades: dict[str, Decimal] = {}
    reported = ZERO
    for u in history:
        if u.exec_type == FEE_EXEC_TYPE:
            trades[update_key(u)] = u.fee
        elif u.exec_type == TOTAL_EXEC_TYPE:
            reported = max(reported, u.fee)
    return max(sum(trades.values(), ZERO), reported)


def advance(order: Order, update: OrderUpdate, *, first_seen: bool, fee: Decimal | None = None) -> Order:
    """The order after `update`; `first_seen` is False when the history already held this update.
    `fee` is `order_fee` of the history including `update` (the stores pass it when the update
    carries a fee); without it only a TRADE's commission counts, added when first seen."""
    if update.client_order_id != order.client_order_id:
        raise ValueError(f"update for {update.client_order_id} applied to order {order.client_order_id}")
    new_key, old_key = status_key(update.status), status_key(order.status)
    if new_key > old_key:
        status, reason = update.status, update.reason
    elif new_key == old_key:
        # Same status from two reports: keep a reason if either has one, the same one in any order.
        status, reason = order.status, _max_present(order.reason, update.reason)
    else:
        status, reason = order.status, order.reason
    fee_asset = order.fee_asset
    if fee is not None:
        fee = max(order.fee, fee)
    else:
        fee = order.fee + update.fee if update.exec_type == FEE_EXEC_TYPE and first_seen else order.fee
    if update.exec_type == FEE_EXEC_TYPE or (update.exec_type == TOTAL_EXEC_TYPE and update.fee > 0):
        fee_asset = _min_present(order.fee_asset, update.fee_asset)
    # Built field by field rather than with `dataclasses.replace` (a generic copy at 3x the cost):
    # every report of every order passes here, and a backtest sweep applies a few million.
    o = order
    return Order(
        o.client_order_id, o.bot, o.exchange, o.symbol, o.side, o.order_type, o.signal_id,
        status=status,
        created_at=o.created_at,
        updated_at=max(o.updated_at, update.event_time),
        quantity=o.quantity,
        quote_amount=o.quote_amount,
        exchange_order_id=_min_present(o.exchange_order_id, update.exchange_order_id),
        filled_qty=max(o.filled_qty, update.filled_qty),
        cum_quote=max(o.cum_quote, update.cum_quote),
        fee=fee,
        fee_asset=fee_asset,
        fencing_token=o.fencing_token,
        reason=reason,
    )  # fmt: skip
