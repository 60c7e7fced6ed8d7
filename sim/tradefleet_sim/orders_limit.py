"""Resting orders: LIMIT (timeInForce GTC, IOC, FOK) and LIMIT_MAKER, matched against the simulated
market's own flow.

How an order meets the market:
- on arrival, the part that crosses the book takes it like a MARKET order would, but never beyond
  the limit price (taker fills; the public `@trade` ids are the fills' ids). FOK expires unless all
  of it can; IOC expires the rest; LIMIT_MAKER is refused (`-2010`) if any of it would take;
- the rest waits, its funds locked (BUY: price x qty of quote; SELL: qty of base), and fills as a
  maker, at its own price, from (a) the generated trade flow: a sell-initiated trade at or below a
  resting BUY's price (a buy-initiated one at or above a resting SELL's) fills it first, up to the
  trade's size: partial fills come from the flow, not from a rule; and (b) the book moving through
  it: levels that would cross a resting order trade against it and leave the book;
- every fill sends an `executionReport` (TRADE, PARTIALLY_FILLED/FILLED) and an
  `outboundAccountPosition`; a cancel unlocks what is left.

Stop orders wait here too (`stops`) until `orders_stop.triggered`. What it refuses: iceberg
quantities and self-trade prevention (the simulated flow never belongs to a user).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from tradefleet_sim.accounts import Account
from tradefleet_sim.matching import OrderError as LimitError
from tradefleet_sim.matching import SimFill, SimOrder, commission_for
from tradefleet_sim.orders_stop import triggered

LIMIT_TYPES = ("LIMIT", "LIMIT_MAKER")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
MAKER_FEE = Decimal("0.001")


def limit_params(params: dict[str, str], rules: Any, type_: str) -> tuple[Decimal, Decimal, str]:
    """(price, quantity, timeInForce) of a LIMIT/LIMIT_MAKER request, or Binance's error."""
    tif = params.get("timeInForce")
    if type_ == "LIMIT" and not tif:
        raise LimitError(
            -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."
        )
    if type_ == "LIMIT_MAKER":
        if tif:
            raise LimitError(-1106, "Parameter 'timeInForce' sent when not required.")
        tif = "GTC"
    if tif not in TIME_IN_FORCE:
        raise LimitError(-1115, "Invalid timeInForce.")
    for name in ("price", "quantity"):
        if not params.get(name):
            raise LimitError(
                -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )
    if params.get("quoteOrderQty"):
        raise LimitError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
    try:
        price, qty = Decimal(params["price"]), Decimal(params["quantity"])
    except InvalidOperation:
        raise LimitError(-1100, "Illegal characters found in a parameter.") from None
    if price <= 0 or price < rules.min_price or price > rules.max_price or price % rules.tick_size != 0:
        raise LimitError(-1013, "Filter failure: PRICE_FILTER")
    return price, qty, tif


def crosses(side: str, price: Decimal, level_price: Decimal) -> bool:
    return level_price <= price if side == "BUY" else level_price >= price


class LimitOrders:
    """The resting orders of every market, and the matching that fills them."""

    def __init__(
        self,
        *,
        account_of: Callable[[str], Account | None],
        report: Callable[[SimOrder, Account, str, str, int, SimFill | None], None],
        now_ms: Callable[[], int],
        taker_fee: Decimal,
        market_fill: Callable[[SimOrder, Account, Any], None],
    ) -> None:
        self.account_of = account_of
        self.report = report  # (order, account, exec type, status, time, fill) -> user events
        self.now_ms = now_ms
        self.taker_fee = taker_fee
        self.resting: dict[str, list[SimOrder]] = {}
        self.stops: dict[str, list[SimOrder]] = {}  # waiting for their stopPrice (orders_stop.py)
        self.market_fill = market_fill  # a triggered STOP_LOSS / TAKE_PROFIT fills as MARKET
        self._matching = False

    def attach(self, market: Any) -> None:
        market.on_flow_trade = lambda price, qty, buyer_is_maker: self.flow_trade(
            market, price, qty, buyer_is_maker
        )
        market.on_change = lambda: self.book_moved(market)

    # -- arrival ----------------------------------------------------------------------------------
    def lock_for(self, order: SimOrder, account: Account, rules: Any) -> None:
        if order.side == "BUY":
            account.lock(rules.quote, order.price * order.orig_qty)
        else:
            account.lock(rules.base, order.orig_qty)

    def would_take(self, market: Any, side: str, price: Decimal) -> Decimal:
        return sum((q for p, q in market.levels(side) if crosses(side, price, p)), Decimal(0))

    def arrive(self, order: SimOrder, account: Account, market: Any) -> None:
        """Match what crosses now, then rest, expire or (FOK) expire whole. The order is NEW and
        its funds are locked when this is called."""
        now = order.time
        takeable = self.would_take(market, order.side, order.price)
        if order.time_in_force == "FOK" and takeable < order.orig_qty:
            self.finish(order, account, market, "EXPIRED", now)
            return
        amount = min(takeable, order.orig_qty)
        if amount > 0:
            before, self._matching = self._matching, True
            try:
                fills = market.take_liquidity(order.side, base_qty=amount)
            finally:
                self._matching = before
            first_id = market.trade_id - len(fills) + 1
            for i, (p, q) in enumerate(fills):
                self.fill(order, account, market, p, q, first_id + i, now, maker=False)
        if order.is_open and order.time_in_force == "IOC":
            self.finish(order, account, market, "EXPIRED", now)
        elif order.is_open:
            self.resting.setdefault(order.symbol, []).append(order)

    # -- fills ------------------------------------------------------------------------------------
    def fill(
        self, order: SimOrder, account: Account, market: Any, price: Decimal, qty: Decimal, trade_id: int,
        now: int, *, maker: bool,
    ) -> None:  # fmt: skip
        rules = market.rules
        fee = commission_for(order.side, price, qty, MAKER_FEE if maker else self.taker_fee)
        if order.side == "BUY":
            account.spend_locked(rules.quote, price * qty)
            account.unlock(rules.quote, (order.price - price) * qty)  # bought below the limit
            account.credit(rules.base, qty - fee)
            fee_asset = rules.base
        else:
            account.spend_locked(rules.base, qty)
            account.credit(rules.quote, price * qty - fee)
            fee_asset = rules.quote
        f = SimFill(price=price, qty=qty, commission=fee, commission_asset=fee_asset, trade_id=trade_id,
                    time=now, is_maker=maker)  # fmt: skip
        order.fills.append(f)
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        order.update_time = now
        self.report(order, account, "TRADE", order.status, now, f)
        if order.status == "FILLED":
            self._unrest(order)

    def finish(self, order: SimOrder, account: Account, market: Any, status: str, now: int) -> None:
        """CANCELED or EXPIRED: unlock what is left and report it."""
        left = order.orig_qty - order.executed_qty
        if order.side == "BUY":
            account.unlock(market.rules.quote, order.price * left)
        else:
            account.unlock(market.rules.base, left)
        order.status = status
        order.update_time = now
        self._unrest(order)
        self.report(order, account, status, status, now, None)

    def _unrest(self, order: SimOrder) -> None:
        for table in (self.resting, self.stops):
            book = table.get(order.symbol, [])
            if order in book:
                book.remove(order)

    # -- stop orders ------------------------------------------------------------------------------
    def wait_for_stop(self, order: SimOrder, account: Account, market: Any) -> None:
        """A stop order: funds locked like the order it becomes (plain BUY: checked at trigger)."""
        if order.type.endswith("_LIMIT"):
            self.lock_for(order, account, market.rules)
        elif order.side == "SELL":
            account.lock(market.rules.base, order.orig_qty)
        self.stops.setdefault(order.symbol, []).append(order)

    def check_stops(self, market: Any) -> None:
        last = market.tape.last()
        waiting = self.stops.get(market.symbol)
        if last is None or not waiting:
            return
        for order in [o for o in waiting if triggered(o, last.price)]:
            waiting.remove(order)
            account = self.account_of(order.api_key)
            if account is None or not order.is_open:
                continue
            if order.type.endswith("_LIMIT"):
                self.arrive(order, account, market)
            elif order.side == "SELL":
                account.unlock(market.rules.base, order.orig_qty)
                self.market_fill(order, account, market)
            else:
                best = market.levels("BUY", 1)
                if not best or best[0][0] * order.orig_qty > account.free(market.rules.quote):
                    self.finish(order, account, market, "EXPIRED", self.now_ms())
                else:
                    self.market_fill(order, account, market)

    def _queue(self, symbol: str, side: str) -> list[SimOrder]:
        """Resting orders of `side`, best price first, then time (price-time priority)."""
        orders = [o for o in self.resting.get(symbol, []) if o.side == side and o.is_open]
        return sorted(orders, key=lambda o: (-o.price if side == "BUY" else o.price, o.time, o.order_id))

    # -- the market's flow ------------------------------------------------------------------------
    def flow_trade(self, market: Any, price: Decimal, qty: Decimal, buyer_is_maker: bool) -> Decimal:
        """A generated trade of `qty` at `price`: resting orders on its passive side that are at
        least as good fill first, at their own price; returns the quantity left for the book."""
        side = "BUY" if buyer_is_maker else "SELL"  # the resting side this trade's aggressor hits
        left = self._flow_fill(market, side, price, qty, buyer_is_maker)
        if left > 0:  # the rest prints on the tape first: stops see the same last price as clients
            market.publish_trade(price, left, buyer_is_maker=buyer_is_maker)
        self.check_stops(market)
        return Decimal(0)

    def _flow_fill(
        self, market: Any, side: str, price: Decimal, qty: Decimal, buyer_is_maker: bool
    ) -> Decimal:
        left = qty
        for order in self._queue(market.symbol, side):
            if left <= 0 or not crosses("SELL" if side == "BUY" else "BUY", price, order.price):
                break
            take = min(left, order.orig_qty - order.executed_qty)
            account = self.account_of(order.api_key)
            if account is None or take <= 0:
                continue
            market.publish_trade(order.price, take, buyer_is_maker=buyer_is_maker)
            self.fill(order, account, market, order.price, take, market.trade_id, self.now_ms(), maker=True)
            left -= take
        return left

    def book_moved(self, market: Any) -> None:
        """The book moved through a resting order: the crossing levels trade against it."""
        if self._matching:
            return
        self._matching = True
        try:
            self.check_stops(market)
            for side in ("BUY", "SELL"):
                for order in self._queue(market.symbol, side):
                    book_side = "BUY" if side == "BUY" else "SELL"  # levels a BUY would take: asks
                    levels = [(p, q) for p, q in market.levels(book_side) if crosses(side, order.price, p)]
                    account = self.account_of(order.api_key)
                    if not levels or account is None:
                        continue
                    changes: list[tuple[Decimal, Decimal]] = []
                    for p, q in levels:
                        take = min(q, order.orig_qty - order.executed_qty)
                        if take <= 0:
                            break
                        changes.append((p, q - take))
                        market.publish_trade(order.price, take, buyer_is_maker=side == "BUY")
                        self.fill(order, account, market, order.price, take, market.trade_id, self.now_ms(),
                                  maker=True)  # fmt: skip
                    if changes:
                        market.apply(changes, []) if side == "SELL" else market.apply([], changes)
        finally:
            self._matching = False
