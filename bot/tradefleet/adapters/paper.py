"""Paper execution: market orders filled against the bot's own live order book, no exchange involved.

It speaks the same `Execution` protocol and emits the same reports a real exchange would (NEW, then
one TRADE per price level walked, ending FILLED, or EXPIRED when the book ran out), so the order
manager, the store and the position code run exactly as in live trading.

Fills walk the book side a market order of that side takes from (`levels(side, depth)`, best first,
what the lead's book keeper exposes): a BUY spends `quote_amount` level by level (quantities cut down
to the step size, like Binance's quoteOrderQty), a SELL sells `quantity`. The taker fee
(`fee_rate`) is charged like Binance's default: in the base asset on a BUY, in the quote on a SELL,
rounded down to 8 decimals per fill. The walk, the fee and the FILLED/EXPIRED rule are the
simulator's own functions (`tradefleet_sim.matching`), not a copy: a paper fill on the same book is
the simulator's fill to the last digit, so `tradefleet demo --mode paper` equals the backtest.

What it refuses to do: invent liquidity. An empty book means the order EXPIRES with what it got
(possibly nothing), as a real market order would. It keeps orders in memory only: after a restart it
has never seen an order, which is the truth for paper trading (it never left the process).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from decimal import Decimal

from tradefleet.domain.models import Order, OrderStatus, OrderUpdate, Side
from tradefleet.errors import ExchangeUnavailable, OrderRejected
from tradefleet.logs import now_ms
from tradefleet_sim.matching import commission_for, market_complete, walk_market

Levels = Callable[[Side, int], list[tuple[Decimal, Decimal]]]
ZERO = Decimal(0)


class PaperExecution:
    unknown_settle_s = 0.0
    """Nothing is ever in flight: an order this process has not seen was never sent."""

    def __init__(
        self,
        levels: Levels,
        fee_rate: Decimal,
        *,
        base_asset: str,
        quote_asset: str,
        step_size: Decimal = ZERO,
        depth: int = 1000,
        clock: Callable[[], int] = now_ms,
        book_wait_s: float = 10.0,
    ) -> None:
        self._levels = levels
        self._fee_rate = fee_rate
        self._base = base_asset
        self._quote = quote_asset
        self._step = step_size
        self._depth = depth
        self._clock = clock
        # An exchange always has a book; ours may be resyncing after a gap or a reconnect. An order
        # waits this long for it, then is reported as not sent (the manager retries the same id).
        self._book_wait_s = book_wait_s
        self._orders: dict[str, OrderUpdate] = {}
        self._queue: asyncio.Queue[OrderUpdate] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)

    async def submit(self, order: Order) -> OrderUpdate:
        if order.client_order_id in self._orders:
            # Same rule as Binance while an order is known: never a second fill for one id.
            raise OrderRejected("Duplicate order sent.", code=-2010)
        if (order.quantity is None) == (order.quote_amount is None):
            raise OrderRejected("exactly one of quantity and quote_amount must be set", code=-1102)
        await self._wait_for_book(order.side)
        exchange_id = f"paper-{next(self._ids)}"
        now = self._clock()
        report = functools.partial(
            OrderUpdate, client_order_id=order.client_order_id, exchange_order_id=exchange_id, source="paper"
        )
        updates = [report(status=OrderStatus.NEW, event_time=now, exec_type="NEW")]
        filled = cum_quote = ZERO
        levels = self._levels(order.side, self._depth)
        fills = walk_market(levels, base_qty=order.quantity, quote_qty=order.quote_amount, step=self._step)
        for price, qty in fills:
            filled += qty
            cum_quote += price * qty
            updates.append(
                report(
                    status=OrderStatus.PARTIALLY_FILLED,
                    event_time=now,
                    filled_qty=filled,
                    cum_quote=cum_quote,
                    last_qty=qty,
                    last_price=price,
                    fee=commission_for(order.side.value, price, qty, self._fee_rate),
                    fee_asset=self._base if order.side is Side.BUY else self._quote,
                    trade_id=next(self._trade_ids),
                    exec_type="TRADE",
                )
            )
        complete = bool(fills) and market_complete(
            base_qty=order.quantity,
            quote_qty=order.quote_amount,
            executed_qty=filled,
            cum_quote=cum_quote,
            next_price=_best_left(levels, fills),
            step=self._step,
        )
        if complete:
            updates[-1] = replace(updates[-1], status=OrderStatus.FILLED)
        else:
            # The book could not fill it all: the rest expires, as Binance does with market orders.
            updates.append(
                report(
                    status=OrderStatus.EXPIRED,
                    event_time=now,
                    filled_qty=filled,
                    cum_quote=cum_quote,
                    exec_type="EXPIRED",
                    reason="insufficient liquidity in the local book",
                )
            )
        summary = _summary(updates)
        self._orders[order.client_order_id] = summary
        for u in updates:
            self._queue.put_nowait(u)
        return summary

    async def _wait_for_book(self, side: Side) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._book_wait_s
        while not self._levels(side, 1):
            if loop.time() >= deadline:
                raise ExchangeUnavailable(
                    f"paper: the local book has had no {side.value} liquidity for {self._book_wait_s:g} s "
                    "(resyncing?); the order was not filled"
                )
            await asyncio.sleep(0.02)

    async def query(self, order: Order) -> OrderUpdate | None:
        known = self._orders.get(order.client_order_id)
        return None if known is None else replace(known, source="rest")

    async def open_orders(self, symbol: str) -> list[OrderUpdate]:
        return [u for u in self._orders.values() if not u.status.is_final]

    async def updates(self) -> AsyncIterator[OrderUpdate]:  # type: ignore[override]
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        return None


def _best_left(levels: list[tuple[Decimal, Decimal]], fills: list[tuple[Decimal, Decimal]]) -> Decimal | None:
    """The best price left on the walked side once `fills` are taken (they took the first levels
    in order, the last one possibly in part): what the exchange's book would show next."""
    if not fills:
        return levels[0][0] if levels else None
    k = len(fills) - 1
    price, available = levels[k]
    if fills[-1][1] < available:
        return price
    return levels[k + 1][0] if k + 1 < len(levels) else None


def _summary(updates: list[OrderUpdate]) -> OrderUpdate:
    """What a FULL response or a query says: the final state with the order's total fee."""
    last = updates[-1]
    fee = sum((u.fee for u in updates), ZERO)
    fee_asset = next((u.fee_asset for u in updates if u.fee_asset), None)
    return replace(last, fee=fee, fee_asset=fee_asset, exec_type="QUERY", last_qty=ZERO, trade_id=None)
