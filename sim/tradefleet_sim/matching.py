"""Order records of the simulated exchange and their wire shapes (REST responses, executionReports).

Pure: no sockets, no clock (times are passed in). `trading.py` validates a request, asks the market
to `take_liquidity(...)`, and then builds records and frames with the helpers here, so the three
places that describe an order (the REST answer, the user data event, a later query) cannot disagree.

Fees: the taker rate is charged like Binance's default (no BNB): in the base asset on a BUY (the
buyer receives less), in the quote asset on a SELL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

ZERO = Decimal(0)


class OrderError(Exception):
    """A new-order request Binance would refuse; `code` is Binance's error code."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


FINAL = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})


def fmt(value: Decimal) -> str:
    """Binance's 8-decimal strings."""
    return f"{value:.8f}"


@dataclass
class SimFill:
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int
    time: int
    is_maker: bool = False


@dataclass
class SimOrder:
    symbol: str
    order_id: int
    client_order_id: str
    side: str
    type: str
    orig_qty: Decimal
    orig_quote_qty: Decimal
    api_key: str
    time: int
    status: str = "NEW"
    update_time: int = 0
    fills: list[SimFill] = field(default_factory=list)
    reject_reason: str = "NONE"
    price: Decimal = ZERO  # LIMIT / LIMIT_MAKER / *_LIMIT stops
    time_in_force: str = "GTC"
    stop_price: Decimal = ZERO  # STOP_LOSS* / TAKE_PROFIT*

    @property
    def executed_qty(self) -> Decimal:
        return sum((f.qty for f in self.fills), ZERO)

    @property
    def cum_quote(self) -> Decimal:
        return sum((f.qty * f.price for f in self.fills), ZERO)

    @property
    def is_open(self) -> bool:
        return self.status not in FINAL

    def query_json(self) -> dict[str, Any]:
        """`GET /api/v3/order` (and the RESULT response without transactTime)."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(self.stop_price),
            "icebergQty": fmt(ZERO),
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def response(self, resp_type: str) -> dict[str, Any]:
        """`POST /api/v3/order` body for newOrderRespType ACK, RESULT or FULL."""
        ack = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": self.time,
        }
        if resp_type == "ACK":
            return ack
        out = self.query_json()
        for k in ("time", "updateTime", "isWorking", "stopPrice", "icebergQty"):
            out.pop(k, None)
        out["transactTime"] = self.time
        if resp_type == "FULL":
            out["fills"] = [
                {
                    "price": fmt(f.price),
                    "qty": fmt(f.qty),
                    "commission": fmt(f.commission),
                    "commissionAsset": f.commission_asset,
                    "tradeId": f.trade_id,
                }
                for f in self.fills
            ]
        return out

    def trade_json(self, f: SimFill) -> dict[str, Any]:
        """One `GET /api/v3/myTrades` row."""
        return {
            "symbol": self.symbol,
            "id": f.trade_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(f.price),
            "qty": fmt(f.qty),
            "quoteQty": fmt(f.price * f.qty),
            "commission": fmt(f.commission),
            "commissionAsset": f.commission_asset,
            "time": f.time,
            "isBuyer": self.side == "BUY",
            "isMaker": f.is_maker,
            "isBestMatch": True,
        }

    def execution_report(
        self,
        exec_type: str,
        status: str,
        event_time: int,
        fill: SimFill | None = None,
        executed: Decimal | None = None,
        cum_quote: Decimal | None = None,
    ) -> dict[str, Any]:
        """An `executionReport` user data event (the body inside `{"subscriptionId", "event"}`)."""
        return {
            "e": "executionReport",
            "E": event_time,
            "s": self.symbol,
            "c": self.client_order_id,
            "S": self.side,
            "o": self.type,
            "f": self.time_in_force,
            "q": fmt(self.orig_qty),
            "p": fmt(self.price),
            "P": fmt(self.stop_price),
            "F": fmt(ZERO),
            "g": -1,
            "C": "",
            "x": exec_type,
            "X": status,
            "r": self.reject_reason,
            "i": self.order_id,
            "l": fmt(fill.qty if fill else ZERO),
            "z": fmt(self.executed_qty if executed is None else executed),
            "L": fmt(fill.price if fill else ZERO),
            "n": fmt(fill.commission) if fill else "0",
            "N": fill.commission_asset if fill else None,
            "T": fill.time if fill else event_time,
            "t": fill.trade_id if fill else -1,
            "v": 0,
            "I": self.order_id * 2,
            "w": exec_type == "NEW",
            "m": bool(fill and fill.is_maker),
            "M": False,
            "O": self.time,
            "Z": fmt(self.cum_quote if cum_quote is None else cum_quote),
            "Y": fmt(fill.price * fill.qty if fill else ZERO),
            "Q": fmt(self.orig_quote_qty),
            "W": self.time,
            "V": "EXPIRE_MAKER",
        }


def commission_for(side: str, price: Decimal, qty: Decimal, rate: Decimal) -> Decimal:
    """Taker commission of one fill, rounded down to 8 decimals (in base for BUY, quote for SELL)."""
    raw = qty * rate if side == "BUY" else price * qty * rate
    return raw.quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)


def walk_market(
    levels: Iterable[tuple[Decimal, Decimal]],
    *,
    base_qty: Decimal | None = None,
    quote_qty: Decimal | None = None,
    step: Decimal,
) -> list[tuple[Decimal, Decimal]]:
    """The fills `[(price, qty)]` of a MARKET order walking `levels` (best first, the side it takes
    from) for exactly one of `base_qty` (takes until that much is filled or the levels run out) or
    `quote_qty` (buys whole `step`s: what is left at a level buys `left / price` rounded down to
    the step, like Binance's quoteOrderQty; `step <= 0` means no step). It stops at the first
    level where it can take nothing. The simulator's matching (`SimMarket.take_liquidity`) and the
    bot's paper fills (`tradefleet.adapters.paper`) both fill with this, so they cannot differ."""
    fills: list[tuple[Decimal, Decimal]] = []
    remaining_base = base_qty
    remaining_quote = quote_qty
    for price, avail in levels:
        if remaining_base is not None:
            take = min(avail, remaining_base)
        else:
            assert remaining_quote is not None
            affordable = remaining_quote / price
            if step > 0:  # whole steps, whatever the step's notation ("0.00001000" from exchangeInfo)
                affordable = (affordable / step).to_integral_value(rounding=ROUND_DOWN) * step
            take = min(avail, affordable)
        if take <= 0:
            break
        fills.append((price, take))
        if remaining_base is not None:
            remaining_base -= take
            if remaining_base <= 0:
                break
        else:
            assert remaining_quote is not None
            remaining_quote -= take * price
    return fills


def market_complete(
    *,
    base_qty: Decimal | None,
    quote_qty: Decimal | None,
    executed_qty: Decimal,
    cum_quote: Decimal,
    next_price: Decimal | None,
    step: Decimal,
) -> bool:
    """Whether a MARKET order that filled `executed_qty` for `cum_quote` is FILLED (else the rest
    EXPIRES): all of `base_qty`, or a `quote_qty` whose rest buys less than one step at the best
    price left in the book (`next_price`, None when that side is empty), as Binance reports it."""
    if base_qty is not None:
        return executed_qty == base_qty
    assert quote_qty is not None
    left = quote_qty - cum_quote
    return left <= 0 or (next_price is not None and left / next_price < step)


def is_step_multiple(qty: Decimal, step: Decimal) -> bool:
    return step <= 0 or (qty % step) == 0
