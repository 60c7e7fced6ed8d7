"""A naive backtest of a list of signals: every BUY spends the quote amount at the signal's close,
every SELL sells everything at its close, fees as a fraction of what is received.

It is the independent yardstick for the demo and the end-to-end tests: the live path (orders filled
against a real book, exchange filters, step sizes) must land close to it. Deliberately simpler than
the order path — no filters, no rounding — so the two do not share a mistake.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from tradefleet.domain.models import Side, Signal


@dataclass(frozen=True, slots=True)
class BacktestResult:
    trades: int
    position_qty: Decimal
    realized_pnl_quote: Decimal


def naive_backtest(signals: Iterable[Signal], *, quote_amount: Decimal, fee_rate: Decimal) -> BacktestResult:
    qty = Decimal(0)
    cost = Decimal(0)
    pnl = Decimal(0)
    trades = 0
    for s in sorted(signals, key=lambda s: s.candle_open_time):
        if s.side is Side.BUY and qty == 0:
            qty = quote_amount / s.close * (1 - fee_rate)
            cost = quote_amount
            trades += 1
        elif s.side is Side.SELL and qty > 0:
            proceeds = qty * s.close * (1 - fee_rate)
            pnl += proceeds - cost
            qty, cost = Decimal(0), Decimal(0)
            trades += 1
    return BacktestResult(trades, qty, pnl)
