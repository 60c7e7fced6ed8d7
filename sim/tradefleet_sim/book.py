"""The simulator's true order book for one symbol: price levels on two sides, nothing else.

It exists so every other part of the simulator (generator, capture replay, kline re-centring,
market-order matching) changes the book through one place that keeps it sorted and uncrossed-
checkable, and so tests can read the exact truth a client's local book must converge to.

It refuses to know about update ids, websockets or time: `SimMarket` owns sequencing and
publishing. Prices and quantities are `Decimal`; a quantity of zero removes the level, exactly
like a Binance depth diff.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal

Side = Literal["BUY", "SELL"]
Level = tuple[Decimal, Decimal]

ZERO = Decimal(0)


class BookSide:
    """One side: a dict for O(1) lookup plus an ascending price list for ordered reads."""

    def __init__(self, *, descending: bool) -> None:
        self.descending = descending  # bids are read best (highest) first
        self.qty: dict[Decimal, Decimal] = {}
        self._prices: list[Decimal] = []  # always ascending

    def __len__(self) -> int:
        return len(self._prices)

    def set(self, price: Decimal, qty: Decimal) -> None:
        if qty <= ZERO:
            if price in self.qty:
                del self.qty[price]
                i = bisect.bisect_left(self._prices, price)
                del self._prices[i]
            return
        if price not in self.qty:
            bisect.insort(self._prices, price)
        self.qty[price] = qty

    def clear(self) -> None:
        self.qty.clear()
        self._prices.clear()

    def best(self) -> Level | None:
        if not self._prices:
            return None
        p = self._prices[-1] if self.descending else self._prices[0]
        return p, self.qty[p]

    def levels(self, depth: int | None = None) -> list[Level]:
        """Best first, at most `depth` levels (all when None)."""
        n = len(self._prices) if depth is None else min(depth, len(self._prices))
        prices = self._prices[len(self._prices) - n :][::-1] if self.descending else self._prices[:n]
        return [(p, self.qty[p]) for p in prices]

    def prices_better_than(self, price: Decimal, *, inclusive: bool) -> list[Decimal]:
        """Prices on this side at or beyond `price` towards the top of book (to be removed when
        the other side moves through them)."""
        if self.descending:  # bids: prices >= price
            i = (
                bisect.bisect_left(self._prices, price)
                if inclusive
                else bisect.bisect_right(self._prices, price)
            )
            return self._prices[i:]
        i = bisect.bisect_right(self._prices, price) if inclusive else bisect.bisect_left(self._prices, price)
        return self._prices[:i]

    def worst_prices(self, n: int) -> list[Decimal]:
        """The `n` deepest prices (used to trim the book back to its target depth)."""
        if n <= 0:
            return []
        return self._prices[:n] if self.descending else self._prices[-n:]


class Book:
    """Bids and asks. `apply` takes Binance-style changes and returns what actually changed."""

    def __init__(self) -> None:
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)

    def side(self, name: Literal["bids", "asks"]) -> BookSide:
        return self.bids if name == "bids" else self.asks

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        for p, q in bids:
            self.bids.set(p, q)
        for p, q in asks:
            self.asks.set(p, q)

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self.bids.clear()
        self.asks.clear()
        self.apply(bids, asks)

    def crossed(self) -> bool:
        b, a = self.bids.best(), self.asks.best()
        return b is not None and a is not None and b[0] >= a[0]


def fmt(d: Decimal) -> str:
    """Binance's wire format for prices and quantities: a string with 8 decimals."""
    return f"{d:.8f}"


def wire_levels(levels: Iterable[Level]) -> list[list[str]]:
    return [[fmt(p), fmt(q)] for p, q in levels]
