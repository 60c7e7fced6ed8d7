"""Incremental simple moving averages and the crossover decision, on closed candles only.

Exact arithmetic: closes are Decimal and the running sums are Decimal, so each SMA equals the naive
mean of its window to the last digit (no float drift over thousands of candles), at O(1) per candle.
The sums are kept in `numbers.SUM_CONTEXT`, which is exact for every value the parsers accept and
raises on anything inexact: a close of 1e30 in the default 28-digit context once rounded the running
sum and left the short SMA off by 8x for good. A close that is not finite and positive is refused
before it touches the sums (the parsers refuse it first; this is the last line).

Crossover rules (what a naive `sign(short - long)` change detector gives):
- the relation is "above" when short > long, "below" when short < long; equality keeps the previous
  relation, so touching without crossing is not a signal;
- the first candle with both averages only establishes the relation: a bot that starts while short is
  already above long does not buy;
- BUY when the relation turns below -> above, SELL when above -> below; once per cross.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from tradefleet.domain.models import Candle, Side
from tradefleet.domain.numbers import SUM_CONTEXT


class RollingMean:
    """Mean of the last `window` values, updated in O(1)."""

    __slots__ = ("_divisor", "_total", "_values", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._divisor = Decimal(window)  # the same quotient as dividing by the int, one conversion less
        self._values: deque[Decimal] = deque()
        self._total = Decimal(0)

    def push(self, value: Decimal) -> Decimal | None:
        if not value.is_finite() or value <= 0:
            raise ValueError(f"a close must be a finite positive number, not {value}")
        return self.push_checked(value)

    def push_checked(self, value: Decimal) -> Decimal | None:
        """`push` for a value already known to be finite and positive (`SmaCrossover.on_close`
        checks each close once for both averages)."""
        values = self._values
        total = SUM_CONTEXT.add(self._total, value)  # raises (Inexact) rather than drift
        full = len(values) >= self.window
        if full:
            total = SUM_CONTEXT.subtract(total, values[0])
            values.popleft()
        values.append(value)
        self._total = total
        if full or len(values) >= self.window:
            return total / self._divisor
        return None

    def peek(self, value: Decimal) -> Decimal | None:
        """What `push_checked(value)` would return, changing nothing."""
        values = self._values
        total = SUM_CONTEXT.add(self._total, value)
        full = len(values) >= self.window
        if full:
            total = SUM_CONTEXT.subtract(total, values[0])
        if full or len(values) + 1 >= self.window:
            return total / self._divisor
        return None

    @property
    def value(self) -> Decimal | None:
        if len(self._values) < self.window:
            return None
        return self._total / self.window

    @property
    def count(self) -> int:
        return len(self._values)


@dataclass(frozen=True, slots=True)
class Cross:
    side: Side
    candle: Candle
    sma_short: Decimal
    sma_long: Decimal


class SmaUpdate(NamedTuple):
    """What one closed candle did to the averages. Immutable like the frozen dataclasses around it,
    but a named tuple: one is made per candle per bot, and a frozen dataclass costs 3.5x to build
    (a backtest sweep makes millions)."""

    candle: Candle
    sma_short: Decimal | None
    sma_long: Decimal | None
    cross: Cross | None


class SmaCrossover:
    """Feed closed candles in time order; get a `Cross` when the short SMA crosses the long one."""

    def __init__(self, short_window: int, long_window: int) -> None:
        if not 1 <= short_window < long_window:
            raise ValueError(f"need 1 <= short ({short_window}) < long ({long_window})")
        self.short = RollingMean(short_window)
        self.long = RollingMean(long_window)
        self.relation: Side | None = None  # BUY = short above long, SELL = short below long
        self.last_open_time: int | None = None

    @property
    def warmed_up(self) -> bool:
        return self.long.value is not None

    @property
    def needed(self) -> int:
        """Closed candles still needed before decisions can be made."""
        return max(0, self.long.window - self.long.count)

    def next_cross(self) -> Side | None:
        """The side the next crossing will have (the opposite of the relation now), if one can come."""
        if self.relation is None:
            return None
        return _SELL if self.relation is _BUY else _BUY

    def on_close(self, candle: Candle) -> SmaUpdate:
        open_time, close = candle.open_time, candle.close
        if self.last_open_time is not None and open_time <= self.last_open_time:
            raise ValueError(
                f"candle {open_time} is not after the last one ({self.last_open_time}); "
                "feed each closed candle once, in order"
            )
        if not close.is_finite() or close <= 0:  # before any state changes
            raise ValueError(f"candle {open_time} close {close} is not a finite positive price")
        self.last_open_time = open_time
        s = self.short.push_checked(close)
        lng = self.long.push_checked(close)
        cross = None
        if s is not None and lng is not None:
            before = self.relation
            relation = _BUY if s > lng else _SELL if s < lng else before
            if before is not None and relation is not None and relation is not before:
                cross = Cross(relation, candle, s, lng)
            self.relation = relation
        return SmaUpdate(candle, s, lng, cross)


_BUY, _SELL = Side.BUY, Side.SELL


def signal_id(bot: str, exchange: str, symbol: str, interval: str, candle_open_time: int, side: Side) -> str:
    """Deterministic id: the same crossing on the same candle always has the same id, across restarts,
    replays and replicas. Readable prefix, hash suffix; at most 64 characters."""
    raw = f"{bot}|{exchange}|{symbol}|{interval}|{candle_open_time}|{side.value}"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:20]
    return f"sig-{candle_open_time}-{side.value.lower()}-{digest}"
