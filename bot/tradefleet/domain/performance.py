"""What a run earned and risked: equity curve, returns, drawdown, Sharpe/Sortino, round trips.

Pure: the backtest driver reads the closes it replayed and the fills the order manager stored, and
this module folds them into the statistics traders expect (the names and definitions follow the
common ones of backtesting.py and pyfolio, so figures are comparable):

- equity at each close = cash + base held x close, starting from `capital` in cash (the bot spends a
  fixed quote amount per BUY, so `capital` defaults to that amount: returns are on what was at risk);
- total and annualised return, maximum drawdown (fraction of the running peak);
- Sharpe and Sortino of per-candle returns, zero risk-free rate, annualised with sqrt(candles per
  year); crypto trades every day, so a year is 365 days of candles;
- round trips (BUY then SELL) with their P&L after fees; win rate over closed ones;
- exposure (share of candles ending with a position), fees paid in quote, buy-and-hold over the
  same candles with the same fee.

Money (fees, P&L) stays Decimal; ratios and the curve are floats (they are drawn and compared, not
booked). What it refuses: guessing a price for a fill it was not given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from tradefleet.domain.models import Side

YEAR_MS = 365 * 86_400_000
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Fill:
    """An order's cumulative fill, at the time it happened (the simulated clock)."""

    time: int
    side: Side
    base_qty: Decimal
    quote_qty: Decimal
    fee: Decimal
    fee_in_base: bool


@dataclass(frozen=True, slots=True)
class RoundTrip:
    entry_time: int
    entry_price: Decimal
    exit_time: int | None  # None: still open at the end (marked to the last close)
    exit_price: Decimal | None
    qty: Decimal
    pnl_quote: Decimal
    return_pct: float


@dataclass(frozen=True)
class Performance:
    capital: Decimal
    candles: int
    start_time: int
    end_time: int
    orders: int
    round_trips: list[RoundTrip]
    equity: list[float]  # after each candle's close
    drawdown: list[float]  # fraction below the running peak, <= 0
    final_equity: float
    total_return: float
    annual_return: float
    max_drawdown: float
    sharpe: float | None
    sortino: float | None
    win_rate: float | None
    exposure: float
    fees_quote: Decimal
    realized_pnl_quote: Decimal
    buy_and_hold_return: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The headline figures as JSON-ready values (Decimals as plain strings)."""
        closed = [t for t in self.round_trips if t.exit_time is not None]
        return {
            "capital_quote": format(self.capital, "f"),
            "candles": self.candles,
            "orders": self.orders,
            "round_trips": len(closed),
            "open_trade": len(self.round_trips) > len(closed),
            "final_equity_quote": round(self.final_equity, 8),
            "total_return_pct": _pct(self.total_return),
            "annual_return_pct": _pct(self.annual_return),
            "max_drawdown_pct": _pct(self.max_drawdown),
            "sharpe": None if self.sharpe is None else round(self.sharpe, 4),
            "sortino": None if self.sortino is None else round(self.sortino, 4),
            "win_rate_pct": None if self.win_rate is None else _pct(self.win_rate),
            "exposure_pct": _pct(self.exposure),
            "fees_quote": format(self.fees_quote, "f"),
            "realized_pnl_quote": format(self.realized_pnl_quote, "f"),
            "buy_and_hold_return_pct": _pct(self.buy_and_hold_return),
        }


def _pct(x: float) -> float:
    return round(100.0 * x, 4)


def evaluate(
    times: Sequence[int],
    closes: Sequence[Decimal],
    fills: Sequence[Fill],
    *,
    capital: Decimal,
    interval_ms: int,
    fee_rate: Decimal,
) -> Performance:
    """Fold `fills` (any order) over the candles closing at `times` with `closes`."""
    if not closes or len(times) != len(closes):
        raise ValueError("need one close per candle time, and at least one candle")
    ordered = sorted(fills, key=lambda f: f.time)
    cash, qty = capital, ZERO
    fees = ZERO
    realized = ZERO
    trips: list[RoundTrip] = []
    entry: tuple[int, Decimal, Decimal, Decimal] | None = None  # time, price, qty, cost
    # A SELL sells whole lot steps: what it leaves (dust) rides into the next trip's size and cost.
    dust_qty, dust_cost = ZERO, ZERO
    equity: list[float] = []
    exposed = 0
    k = 0
    cash_f, qty_f = float(cash), 0.0  # float mirrors for the curve (money stays Decimal)
    for t, close in zip(times, closes, strict=True):
        while k < len(ordered) and ordered[k].time <= t:
            f = ordered[k]
            k += 1
            if f.base_qty <= 0:
                continue
            price = f.quote_qty / f.base_qty
            fee_quote = f.fee * price if f.fee_in_base else f.fee
            fees += fee_quote
            if f.side is Side.BUY:
                got = f.base_qty - (f.fee if f.fee_in_base else ZERO)
                cash -= f.quote_qty + (ZERO if f.fee_in_base else f.fee)
                qty += got
                if entry is None:
                    entry = (f.time, price, got + dust_qty, f.quote_qty + dust_cost)
                    dust_qty = dust_cost = ZERO
                else:  # a second BUY while long (not SMA-crossover behaviour, but fold it right)
                    entry = (entry[0], entry[1], entry[2] + got, entry[3] + f.quote_qty)
            else:
                proceeds = f.quote_qty - (ZERO if f.fee_in_base else f.fee)
                sold = min(f.base_qty, qty)
                cash += proceeds
                qty -= sold
                if entry is not None:
                    share = sold / entry[2] if entry[2] > 0 else Decimal(1)
                    cost = entry[3] * share
                    pnl = proceeds - cost
                    realized += pnl
                    trips.append(RoundTrip(entry[0], entry[1], f.time, price, sold, pnl, _ratio(pnl, cost)))
                    dust_qty, dust_cost = entry[2] - sold, entry[3] - cost
                    entry = None
            cash_f, qty_f = float(cash), float(qty)
        if entry is not None:
            exposed += 1
        equity.append(cash_f + qty_f * float(close) if qty_f else cash_f)  # flat: no conversion
    if entry is not None and entry[2] > 0:
        pnl = entry[2] * closes[-1] - entry[3]
        trips.append(RoundTrip(entry[0], entry[1], None, None, entry[2], pnl, _ratio(pnl, entry[3])))
    cap = float(capital)
    drawdown, peak = [], cap
    for e in equity:
        peak = max(peak, e)
        drawdown.append(e / peak - 1.0 if peak > 0 else 0.0)
    returns = [b / a - 1.0 for a, b in zip([cap, *equity[:-1]], equity, strict=True) if a > 0]
    per_year = YEAR_MS / interval_ms
    total = equity[-1] / cap - 1.0 if cap > 0 else 0.0
    years = len(equity) / per_year
    annual = (1.0 + total) ** (1.0 / years) - 1.0 if years > 0 and total > -1.0 else -1.0
    closed = [t for t in trips if t.exit_time is not None]
    hold = float((1 - fee_rate) * closes[-1] / closes[0]) - 1.0
    return Performance(
        capital=capital,
        candles=len(closes),
        start_time=times[0],
        end_time=times[-1],
        orders=len(ordered),
        round_trips=trips,
        equity=equity,
        drawdown=drawdown,
        final_equity=equity[-1],
        total_return=total,
        annual_return=annual,
        max_drawdown=min(drawdown, default=0.0),
        sharpe=_sharpe(returns, per_year),
        sortino=_sortino(returns, per_year),
        win_rate=(sum(1 for t in closed if t.pnl_quote > 0) / len(closed)) if closed else None,
        exposure=exposed / len(closes),
        fees_quote=fees,
        realized_pnl_quote=realized,
        buy_and_hold_return=hold,
    )


def _ratio(pnl: Decimal, cost: Decimal) -> float:
    return float(pnl / cost) if cost > 0 else 0.0


def _sharpe(returns: Sequence[float], per_year: float) -> float | None:
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    var = sum([(r - mean) * (r - mean) for r in returns]) / (len(returns) - 1)
    return mean / math.sqrt(var) * math.sqrt(per_year) if var > 0 else None


def _sortino(returns: Sequence[float], per_year: float) -> float | None:
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    downside = math.sqrt(sum([r * r for r in returns if r < 0.0]) / len(returns))  # the others add 0
    return mean / downside * math.sqrt(per_year) if downside > 0 else None
