"""Stop orders: STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT.

A stop order waits off the book (status NEW) until the market's last trade price reaches its
`stopPrice` — STOP_LOSS: SELL when last <= stop, BUY when last >= stop; TAKE_PROFIT the other way
round — then it works like the order it becomes: the *_LIMIT kinds enter the book as LIMIT orders
(`orders_limit.py`, their funds locked from the start), the plain kinds fill as MARKET orders
(a SELL's quantity is locked from the start; a BUY is checked when it triggers and EXPIRES if the
account can no longer pay). Triggers are checked after every public trade and book change, on the
prices the public streams show.

What it refuses: trailing stops (`trailingDelta`), and quote amounts (`quoteOrderQty`) on stops.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from tradefleet_sim.matching import OrderError as LimitError
from tradefleet_sim.matching import SimOrder

STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")


def stop_price(params: dict[str, str], rules: Any) -> Decimal:
    raw = params.get("stopPrice")
    if not raw:
        raise LimitError(-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
    if params.get("trailingDelta"):
        raise LimitError(-1116, "Invalid orderType.")
    try:
        price = Decimal(raw)
    except InvalidOperation:
        raise LimitError(-1100, "Illegal characters found in parameter 'stopPrice'.") from None
    if price <= 0 or price % rules.tick_size != 0:
        raise LimitError(-1013, "Filter failure: PRICE_FILTER")
    return price


def triggered(order: SimOrder, last: Decimal) -> bool:
    loss = order.type.startswith("STOP_LOSS")
    falling = (order.side == "SELL") == loss  # a stop-loss sell and a take-profit buy wait for a fall
    return last <= order.stop_price if falling else last >= order.stop_price


def would_trigger_now(type_: str, side: str, stop: Decimal, last: Decimal | None) -> bool:
    """Binance refuses a stop that would trigger at once (-2010)."""
    if last is None:
        return False
    probe = SimOrder(symbol="", order_id=0, client_order_id="", side=side, type=type_, orig_qty=Decimal(0),
                     orig_quote_qty=Decimal(0), api_key="", time=0, stop_price=stop)  # fmt: skip
    return triggered(probe, last)
