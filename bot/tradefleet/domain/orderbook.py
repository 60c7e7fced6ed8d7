"""The local order book and the snapshot+diff sync state machine (pure: no I/O, no clock).

Why it exists: a bot trades (and paper-fills) against this book, so it must equal the exchange's
book or admit it does not. `BookSync` follows Binance's documented local-book procedure:
buffer diffs until a REST snapshot arrives, drop buffered diffs with `u <= lastUpdateId`, require
the first applied diff to straddle the snapshot (`U <= lastUpdateId + 1 <= u`), and treat any later
`U > local_id + 1` as a gap: the book is discarded and rebuilt from a new snapshot, never patched.

Price levels are keyed exactly: a price string is canonicalised by dropping trailing fractional
zeros ("0.35130000" and "0.3513" are the same level; "30000" and "30000.00" too), so equality is
decimal equality without hashing `Decimal` (slow) and without floats (inexact). Ordering uses the
level's `Decimal` value, parsed once when the level first appears, in a lazy-deletion heap per side.
Quantities are `Decimal`; a zero quantity deletes the level.

What it refuses: prices or quantities that are not plain positive decimal numbers (`MalformedLevel`),
diffs for another symbol, and a book that would cross (treated as corruption: resync). It never
fetches a snapshot itself; it says when it needs one and the engine fetches it.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tradefleet.domain.market import DepthDiff, DepthSnapshot, Level
from tradefleet.domain.models import Side
from tradefleet.errors import TradefleetError

_DIGITS = frozenset("0123456789.")


class MalformedLevel(TradefleetError):
    """A price or quantity that is not a plain, non-negative decimal string."""


def level_key(price: str) -> str:
    """Canonical dict key of a price string: decimal-equal prices get the same key."""
    if "." in price:
        return price.rstrip("0")
    return price + "."


def _parse_price(price: str) -> Decimal:
    if not price or not _DIGITS.issuperset(price) or price.count(".") > 1:
        raise MalformedLevel(f"price {price!r} is not a plain decimal number")
    try:
        value = Decimal(price)
    except InvalidOperation as e:  # e.g. "." alone
        raise MalformedLevel(f"price {price!r} is not a decimal number") from e
    if value <= 0:
        raise MalformedLevel(f"price {price!r} must be positive")
    return value


def _bad_qty(qty: object) -> MalformedLevel:
    return MalformedLevel(f"quantity {qty!r} is not a plain non-negative decimal number")


class _Side:
    """One side of the book: key -> quantity string and key -> price, plus a heap of sort keys.

    Bids push `-price` so the heap top is the highest bid. Deleted levels stay in the heap until
    they reach the top (lazy deletion); the heap is rebuilt when stale entries dominate.

    Hot path (every level of every diff): a quantity is validated and zero-tested with string
    methods and stored as the exchange's string; `Decimal` is built only for a price the first
    time its level appears and for quantities that are read (top of book, levels). That keeps a
    40-level diff to a few dict operations per level.
    """

    __slots__ = ("heap", "levels", "prices", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[str, str] = {}
        self.prices: dict[str, Decimal] = {}
        self.heap: list[tuple[Decimal, str]] = []

    def clear(self) -> None:
        self.levels.clear()
        self.prices.clear()
        self.heap.clear()

    def apply(self, updates: Iterable[Level]) -> None:
        levels = self.levels
        prices = self.prices
        heap = self.heap
        negate = self.sign < 0
        for price, qty in updates:
            key = price.rstrip("0") if "." in price else price + "."  # level_key, inlined
            if qty.strip("0."):  # non-zero (or garbage): validate, then set
                # Digits with at most one dot: rejects "-1", "1e3", "NaN", " 1" (Decimal takes those).
                if not qty.replace(".", "", 1).isdigit():
                    raise _bad_qty(qty)
                if key in levels:
                    levels[key] = qty
                else:
                    px = _parse_price(price)
                    levels[key] = qty
                    prices[key] = px
                    heapq.heappush(heap, (-px if negate else px, key))
            elif qty[:1] != "0":  # "" or "." are not zero, they are garbage
                raise _bad_qty(qty)
            elif key in levels:
                del levels[key]
                del prices[key]
        if len(heap) > 2 * len(levels) + 256:
            self._compact()

    def _compact(self) -> None:
        negate = self.sign < 0
        self.heap = [(-px if negate else px, key) for key, px in self.prices.items()]
        heapq.heapify(self.heap)

    def _best_key(self) -> str | None:
        heap = self.heap
        levels = self.levels
        while heap:
            key = heap[0][1]
            if key in levels:
                return key
            heapq.heappop(heap)
        return None

    def best_price(self) -> Decimal | None:
        key = self._best_key()
        return None if key is None else self.prices[key]

    def best(self) -> tuple[Decimal, Decimal] | None:
        key = self._best_key()
        return None if key is None else (self.prices[key], Decimal(self.levels[key]))

    def sorted_levels(self, depth: int) -> list[tuple[Decimal, Decimal]]:
        pick = heapq.nlargest if self.sign < 0 else heapq.nsmallest
        keys = pick(depth, self.prices, key=self.prices.__getitem__)
        return [(self.prices[k], Decimal(self.levels[k])) for k in keys]

    def as_dict(self) -> dict[Decimal, Decimal]:
        return {self.prices[k]: Decimal(q) for k, q in self.levels.items()}


class OrderBook:
    """Bids and asks of one market. Mutated only through `BookSync` in normal use."""

    __slots__ = ("_asks", "_bids")

    def __init__(self) -> None:
        self._bids = _Side(-1)
        self._asks = _Side(+1)

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self.clear()
        self.apply(bids, asks)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set each level's quantity (zero deletes). Raises MalformedLevel; the book may then be
        partly updated, so the caller must discard it (BookSync does)."""
        self._bids.apply(bids)
        self._asks.apply(asks)

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        return self._bids.best()

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        return self._asks.best()

    def top(self) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        """(bid, bid_qty, ask, ask_qty), or None while either side is empty."""
        bid = self._bids.best()
        ask = self._asks.best()
        if bid is None or ask is None:
            return None
        return bid[0], bid[1], ask[0], ask[1]

    def crossed(self) -> bool:
        bid = self._bids.best_price()
        ask = self._asks.best_price()
        return bid is not None and ask is not None and bid >= ask

    def bids(self, depth: int) -> list[tuple[Decimal, Decimal]]:
        """Best (highest) bids first."""
        return self._bids.sorted_levels(depth)

    def asks(self, depth: int) -> list[tuple[Decimal, Decimal]]:
        """Best (lowest) asks first."""
        return self._asks.sorted_levels(depth)

    def levels_for(self, side: Side, depth: int) -> list[tuple[Decimal, Decimal]]:
        """The side a market order of `side` takes from: a BUY lifts asks, a SELL hits bids."""
        return self.asks(depth) if side is Side.BUY else self.bids(depth)

    def as_dict(self) -> dict[str, dict[Decimal, Decimal]]:
        """Every level by exact decimal price; for tests and the simulator comparison."""
        return {"bids": self._bids.as_dict(), "asks": self._asks.as_dict()}

    def __len__(self) -> int:
        return len(self._bids.levels) + len(self._asks.levels)


class Outcome(enum.Enum):
    """What one diff or snapshot did to the sync state."""

    BUFFERED = "buffered"  # waiting for a snapshot; kept for later
    APPLIED = "applied"  # in sync, diff applied
    IGNORED = "ignored"  # old or duplicate diff (u <= local id): nothing to do
    GAP = "gap"  # U > local id + 1: book discarded, a new snapshot is needed
    INVALID = "invalid"  # malformed price/quantity: book discarded, new snapshot needed
    CROSSED = "crossed"  # best bid >= best ask: the book is corrupt; discarded, new snapshot needed
    SYNCED = "synced"  # snapshot accepted and buffered diffs applied
    SNAPSHOT_TOO_OLD = "snapshot_too_old"  # the buffered stream starts after it: fetch another


@dataclass(frozen=True, slots=True)
class SyncResult:
    outcome: Outcome
    detail: str = ""

    @property
    def needs_snapshot(self) -> bool:
        return self.outcome in (Outcome.GAP, Outcome.INVALID, Outcome.CROSSED, Outcome.SNAPSHOT_TOO_OLD)


_APPLIED = SyncResult(Outcome.APPLIED)
_BUFFERED = SyncResult(Outcome.BUFFERED)
_IGNORED = SyncResult(Outcome.IGNORED)


class BookSync:
    """Binance's local-book algorithm as a state machine over one `OrderBook`.

    States: waiting (no snapshot applied; diffs are buffered) and in sync. `reset()` (on every
    reconnect, gap or invalid input) returns to waiting with an empty buffer and an empty book.
    The buffer is bounded; when it overflows the oldest diffs go, which at worst makes the next
    snapshot look too old and triggers one more fetch, never a wrong book.
    """

    def __init__(self, market_id: str, *, buffer_max: int = 10_000) -> None:
        self.market_id = market_id
        self.book = OrderBook()
        self._buffer: deque[DepthDiff] = deque(maxlen=buffer_max)
        self._in_sync = False
        self._last_id = 0

    @property
    def in_sync(self) -> bool:
        return self._in_sync

    @property
    def last_update_id(self) -> int:
        """The update id the book reflects (0 while waiting for a snapshot)."""
        return self._last_id if self._in_sync else 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Discard the book and anything buffered: the next snapshot starts from scratch."""
        self.book.clear()
        self._buffer.clear()
        self._in_sync = False
        self._last_id = 0

    def on_diff(self, diff: DepthDiff) -> SyncResult:
        if diff.symbol != self.market_id:
            return SyncResult(Outcome.IGNORED, f"diff for {diff.symbol}, book is {self.market_id}")
        if not self._in_sync:
            self._buffer.append(diff)
            return _BUFFERED
        if diff.final_update_id <= self._last_id:
            return _IGNORED
        if diff.first_update_id > self._last_id + 1:
            detail = f"expected U <= {self._last_id + 1}, got U={diff.first_update_id}"
            self._lose_sync(keep=diff)
            return SyncResult(Outcome.GAP, detail)
        return self._apply(diff)

    def on_snapshot(self, snapshot: DepthSnapshot) -> SyncResult:
        """Apply a REST snapshot and then every buffered diff that follows it."""
        if snapshot.symbol != self.market_id:
            return SyncResult(Outcome.INVALID, f"snapshot for {snapshot.symbol}, book is {self.market_id}")
        last = snapshot.last_update_id
        buffer = self._buffer
        while buffer and buffer[0].final_update_id <= last:
            buffer.popleft()
        if buffer and buffer[0].first_update_id > last + 1:
            # The stream we hold starts after the snapshot: a newer snapshot will line up.
            return SyncResult(
                Outcome.SNAPSHOT_TOO_OLD,
                f"snapshot lastUpdateId={last} but buffered stream starts at U={buffer[0].first_update_id}",
            )
        try:
            self.book.load(snapshot.bids, snapshot.asks)
        except MalformedLevel as e:
            self.book.clear()
            return SyncResult(Outcome.INVALID, f"snapshot: {e}")
        self._in_sync = True
        self._last_id = last
        if self.book.crossed():
            self._lose_sync()
            return SyncResult(Outcome.CROSSED, "snapshot is crossed")
        pending = list(buffer)
        buffer.clear()
        for i, diff in enumerate(pending):
            result = self.on_diff(diff)
            if result.needs_snapshot:
                # Keep the diffs after the failing one: the next snapshot may line up with them.
                buffer.extend(pending[i + 1 :])
                return result
        return SyncResult(Outcome.SYNCED, f"lastUpdateId={last}, applied up to {self._last_id}")

    def _apply(self, diff: DepthDiff) -> SyncResult:
        try:
            self.book.apply(diff.bids, diff.asks)
        except MalformedLevel as e:
            self._lose_sync()
            return SyncResult(Outcome.INVALID, f"diff u={diff.final_update_id}: {e}")
        self._last_id = diff.final_update_id
        if self.book.crossed():
            self._lose_sync()
            return SyncResult(Outcome.CROSSED, f"book crossed after u={diff.final_update_id}")
        return _APPLIED

    def _lose_sync(self, keep: DepthDiff | None = None) -> None:
        self.reset()
        if keep is not None:
            self._buffer.append(keep)
