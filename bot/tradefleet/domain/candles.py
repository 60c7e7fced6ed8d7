"""Closed-candle bookkeeping: turning kline events into candles, merging REST history with the live
stream, and finding gaps so they are refetched rather than averaged over.

Pure: the engine decides when to fetch; this module only says what is missing and what is next.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from tradefleet.domain.market import KlineEvent
from tradefleet.domain.models import Candle


def candle_from_kline(k: KlineEvent, symbol: str | None = None) -> Candle:
    """`symbol`: the bot's unified symbol (BTC/USDT), so streamed and REST candles are stored alike.

    The last answer is kept for the same event object: a fleet replayed in one process (a backtest
    sweep) hands one closing kline to every bot, and they share one parse instead of each parsing
    five decimals. Both are immutable, and the cache holds the event, so identity cannot be reused."""
    global _last
    last = _last
    if last is not None and last[0] is k and last[1] == symbol:
        return last[2]
    candle = Candle(
        symbol=symbol or k.symbol,
        interval=k.interval,
        open_time=k.open_time,
        close_time=k.close_time,
        open=Decimal(k.open),
        high=Decimal(k.high),
        low=Decimal(k.low),
        close=Decimal(k.close),
        volume=Decimal(k.volume),
        closed=k.closed,
        trades=k.trades,
    )
    _last = (k, symbol, candle)
    return candle


_last: tuple[KlineEvent, str | None, Candle] | None = None


def find_gaps(open_times: Iterable[int], interval_ms: int) -> list[tuple[int, int]]:
    """Missing open times in a sorted series, as half-open [start, end) ranges of open times."""
    gaps: list[tuple[int, int]] = []
    prev: int | None = None
    for t in open_times:
        if prev is not None and t - prev > interval_ms:
            gaps.append((prev + interval_ms, t))
        prev = t
    return gaps


def merge(history: Iterable[Candle], *more: Iterable[Candle]) -> list[Candle]:
    """Closed candles from several sources, one per open time (later sources win), sorted."""
    by_time: dict[int, Candle] = {}
    for source in (history, *more):
        for c in source:
            if c.closed:
                by_time[c.open_time] = c
    return [by_time[t] for t in sorted(by_time)]


class CandleClock:
    """Tracks the last closed candle and classifies the next one: next in line, duplicate, or after a gap."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.last_open_time: int | None = None

    def classify(self, open_time: int) -> str:
        if self.last_open_time is None:
            return "next"
        if open_time <= self.last_open_time:
            return "duplicate"
        if open_time == self.last_open_time + self.interval_ms:
            return "next"
        return "gap"

    def advance(self, open_time: int) -> None:
        self.last_open_time = open_time

    def missing_range(self, open_time: int) -> tuple[int, int]:
        """[start, end) of open times missing before `open_time`."""
        assert self.last_open_time is not None
        return self.last_open_time + self.interval_ms, open_time
