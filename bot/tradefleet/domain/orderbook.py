"""The local order book and the snapshot+diff sync state machine (pure: no I/O, no clock).

Why it exists: a bot trades (and paper-fills) against this book, so it must equal the exchange's
book or admit it does not. `BookSync` follows Binance's documented local-book procedure:
buffer diffs until a REST snapshot arrives, drop buffered diffs with `u <= lastUpdateId`, require
the first applied diff to straddle the snapshot (`U <= lastUpdateId + 1 <= u`), and treat any later
`U > local_id + 1` as a gap: the book is discarded and rebuilt from a new snapshot, never patched.

Price levels are keyed exactly by an integer: the price in units of 10^-18 (`level_key`), so
"0.35130000" and "0.3513" are the same level, equality is decimal equality and order is decimal
order, without hashing or comparing `Decimal`s (slow) and without floats (inexact); a
hypothesis test checks both against `Decimal`. Each level keeps the exchange's own (price, qty)
strings; `Decimal`s are built when a level is read. A zero quantity deletes the level.
Measured: a `Decimal`-ordered heap with string keys applied a ~40-level diff in ~28 µs, this
layout in ~11 µs (in-process); `python -m bench.ingest` feed+book went 44.6 -> 29.6 CPU µs/msg.
About 270 ns per level remain, mostly the string checks every quantity needs and three dict
operations; whole-list C-level passes (zip/map/join/compress) were measured slower (10.9 vs 4.8 µs
per 20-level side) and not kept.

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
from decimal import Decimal

from tradefleet.domain.market import DepthDiff, DepthSnapshot, Level
from tradefleet.domain.models import Side
from tradefleet.errors import TradefleetError

_DIGITS = frozenset("0123456789.")
SCALE = 18  # price keys are integers in units of 10^-18: exact for any price with <= 18 decimals
# Integer digits a price may have (leading zeros aside): the native book keys prices as 128-bit
# integers, and 10^20 * 10^18 still fits; both books refuse the same prices. No market quotes 10^20.
MAX_WHOLE = 20
_KEY_CACHE_MAX = 16_384  # distinct price strings remembered per book (~3 MiB at most)


class MalformedLevel(TradefleetError):
    """A price or quantity that is not a plain, non-negative decimal string."""


MAX_NUMBER_CHARS = 64
"""Longest price or quantity string read at all (safety, #11): `int()` of thousands of digits raised a
plain ValueError after part of a diff was applied. Longer strings are refused before any parsing."""


def _bad_number(text: str) -> bool:
    """The full rule for a quantity string that passed the hot path's cheap checks (non-zero, ASCII
    digits and at most one dot) but is long: at most MAX_WHOLE integer digits (leading zeros aside),
    SCALE decimals (trailing zeros aside), MAX_NUMBER_CHARS characters."""
    whole, _, frac = text.partition(".")
    return len(text) > MAX_NUMBER_CHARS or len(whole.lstrip("0")) > MAX_WHOLE or len(frac.rstrip("0")) > SCALE


def level_key(price: str) -> int:
    """Exact integer key of a price string: the price in units of 10^-SCALE.

    Decimal-equal prices get the same key and keys order as the prices do ("0.3513" and
    "0.35130000" are one level). Refuses anything but a plain positive decimal number, and prices
    with more than SCALE significant decimals (no exchange quotes those; rounding would merge
    levels) or more than MAX_WHOLE integer digits."""
    if not price or not price.isascii() or not _DIGITS.issuperset(price) or price.count(".") > 1:
        raise MalformedLevel(f"price {price!r} is not a plain decimal number")
    whole, _, frac = price.partition(".")
    frac = frac.rstrip("0")
    if not whole and not frac and "0" not in price:  # "." alone
        raise MalformedLevel(f"price {price!r} is not a decimal number")
    if len(frac) > SCALE:
        raise MalformedLevel(f"price {price!r} has more than {SCALE} decimals")
    if len(whole) > MAX_WHOLE and len(whole.lstrip("0")) > MAX_WHOLE:
        raise MalformedLevel(f"price {price!r} has more than {MAX_WHOLE} integer digits")
    key = int((whole or "0") + frac.ljust(SCALE, "0"))
    if key <= 0:
        raise MalformedLevel(f"price {price!r} must be positive")
    return key


def _bad_qty(qty: object) -> MalformedLevel:
    return MalformedLevel(f"quantity {qty!r} is not a plain non-negative decimal number")


class _Side:
    """One side of the book: integer price key -> the exchange's (price, qty) strings, plus a heap.

    Bids push `-key` so the heap top is the highest bid. Deleted levels stay in the heap until
    they reach the top (lazy deletion); the heap is rebuilt when stale entries dominate.

    Hot path (every level of every diff), measured in `bench.ingest`: the key comes from a
    per-book cache of price string -> integer key (a string hash and one dict probe; the exact
    conversion and the price validation run once per distinct string). Heap entries are plain
    ints, which compare several times faster than `Decimal`s. A quantity is validated and
    zero-tested with string methods and kept as the exchange's string inside the level tuple the
    parser built (no new object per level); `Decimal` is built only when a level is read.
    """

    __slots__ = ("heap", "heaped", "keys", "levels", "sign")

    def __init__(self, sign: int, keys: dict[str, int]) -> None:
        self.sign = sign
        self.keys = keys  # shared by both sides of one book
        self.levels: dict[int, Level] = {}
        self.heap: list[int] = []
        # Keys with an entry in the heap (live or stale). A level deleted and set again, the usual
        # churn near the touch, reuses its stale entry instead of pushing a duplicate: fewer pushes
        # and a heap that stays near the number of distinct prices instead of growing per update.
        self.heaped: set[int] = set()

    def clear(self) -> None:
        self.levels.clear()
        self.heap.clear()
        self.heaped.clear()

    def apply(self, updates: Iterable[Level]) -> None:
        levels = self.levels
        keys = self.keys
        max_whole = MAX_WHOLE
        for level in updates:
            price, qty = level
            try:
                key = keys[price]
            except KeyError:  # first time this exact string is seen
                key = self._new_key(price)
            if qty.strip("0."):  # non-zero (or garbage): validate, then set
                # Decimal digits with at most one dot: rejects "-1", "1e3", "NaN", " 1", "1_0", "²".
                # isdecimal, not isdigit: it refuses "²" (which Decimal() cannot read) in one call;
                # isascii refuses Unicode digits ("١"), which Decimal() would read (#11).
                if not qty.replace(".", "", 1).isdecimal() or not qty.isascii():
                    raise _bad_qty(qty)
                if len(qty) > max_whole and _bad_number(qty):  # 21+ characters: the full rule
                    raise _bad_qty(qty)
                if key not in levels and key not in self.heaped:
                    self.heaped.add(key)
                    heapq.heappush(self.heap, key * self.sign)
                levels[key] = level
            elif qty[:1] != "0":  # "" or "." are not zero, they are garbage
                # (Any run of 0s and dots that starts with "0" deletes the level: its only effect is
                # a deletion, and checking its form cost ~10% of the hot path; see check_levels.)
                raise _bad_qty(qty)
            elif key in levels:
                del levels[key]
        if len(self.heap) > 2 * len(levels) + 1024:
            self._compact()

    def _new_key(self, price: str) -> int:
        if len(price) > MAX_NUMBER_CHARS:  # before any parsing: int() of 5000 digits raises ValueError
            raise MalformedLevel(f"price {price[:40]!r}... is longer than {MAX_NUMBER_CHARS} characters")
        key = level_key(price)  # validates: MalformedLevel for anything but a plain price
        keys = self.keys
        if len(keys) >= _KEY_CACHE_MAX:
            keys.clear()
        keys[price] = key
        return key

    def _compact(self) -> None:
        sign = self.sign
        self.heap = [key * sign for key in self.levels]
        heapq.heapify(self.heap)
        self.heaped = set(self.levels)

    def best_key(self) -> int | None:
        heap = self.heap
        levels = self.levels
        sign = self.sign
        while heap:
            key = heap[0] * sign
            if key in levels:
                return key
            heapq.heappop(heap)
            self.heaped.discard(key)
        return None

    def best_level(self) -> Level | None:
        key = self.best_key()
        return None if key is None else self.levels[key]

    def best(self) -> tuple[Decimal, Decimal] | None:
        level = self.best_level()
        return None if level is None else (Decimal(level[0]), Decimal(level[1]))

    def sorted_levels(self, depth: int) -> list[tuple[Decimal, Decimal]]:
        pick = heapq.nlargest if self.sign < 0 else heapq.nsmallest
        levels = self.levels
        return [(Decimal(levels[k][0]), Decimal(levels[k][1])) for k in pick(depth, levels)]

    def as_dict(self) -> dict[Decimal, Decimal]:
        return {Decimal(p): Decimal(q) for p, q in self.levels.values()}


class OrderBook:
    """Bids and asks of one market. Mutated only through `BookSync` in normal use."""

    __slots__ = ("_asks", "_best_keys", "_bids", "_top", "_top_levels")

    def __init__(self) -> None:
        keys: dict[str, int] = {}
        self._bids = _Side(-1, keys)
        self._asks = _Side(+1, keys)
        self._top: tuple[Decimal, Decimal, Decimal, Decimal] | None = None
        self._top_levels: tuple[Level, Level] | None = None
        # (best bid key, best ask key) as found by crossed(), valid until the next change: the sync
        # checks for a crossed book and the engine then reads the top, after every diff.
        self._best_keys: tuple[int | None, int | None] | None = None

    def clear(self) -> None:
        self._best_keys = None
        self._bids.clear()
        self._asks.clear()

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self.clear()
        self.apply(bids, asks)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set each level's quantity (zero deletes). Raises MalformedLevel; the book may then be
        partly updated, so the caller must discard it (BookSync does)."""
        self._best_keys = None
        self._bids.apply(bids)
        self._asks.apply(asks)

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        return self._bids.best()

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        return self._asks.best()

    def _best(self) -> tuple[int | None, int | None]:
        best = self._best_keys
        if best is None:
            best = self._best_keys = (self._bids.best_key(), self._asks.best_key())
        return best

    def top(self) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        """(bid, bid_qty, ask, ask_qty), or None while either side is empty."""
        bid_key, ask_key = self._best()
        if bid_key is None or ask_key is None:
            return None
        bid = self._bids.levels[bid_key]
        ask = self._asks.levels[ask_key]
        # Read after every diff, changed by few: the Decimals are rebuilt only when either best
        # level is another tuple than last time (a new quantity arrives as a new tuple).
        cached = self._top_levels
        if cached is None or cached[0] is not bid or cached[1] is not ask:
            self._top_levels = (bid, ask)
            self._top = (Decimal(bid[0]), Decimal(bid[1]), Decimal(ask[0]), Decimal(ask[1]))
        return self._top

    def crossed(self) -> bool:
        bid, ask = self._best()
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


def check_levels(*sides: Iterable[Level]) -> str | None:
    """What is wrong with the first bad level of a diff, or None; changes nothing. The same rules as
    `level_key` and `_Side.apply` (which inline them for speed)."""
    for levels in sides:
        for price, qty in levels:
            try:
                if type(price) is not str or type(qty) is not str or len(price) > MAX_NUMBER_CHARS:
                    raise MalformedLevel(f"level ({str(price)[:40]!r}, {str(qty)[:40]!r}) is not two strings")
                level_key(price)
                if qty.strip("0."):
                    if not qty.replace(".", "", 1).isdecimal() or not qty.isascii() or _bad_number(qty):
                        raise _bad_qty(qty)
                elif qty[:1] != "0":
                    raise _bad_qty(qty)
            except MalformedLevel as e:
                return str(e)
    return None


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
    REJECTED = "rejected"  # malformed diff while waiting for a snapshot: skipped, nothing changed


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
        self.event_time = 0  # ms, the exchange's event time of the last diff applied (replays too)

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
            # Checked now, not when replayed: a bad diff is counted even if the snapshot makes it
            # old, and never buffered (#11). Skipping it is safe: if the book needed it, the
            # snapshot will not line up and another is fetched.
            problem = check_levels(diff.bids, diff.asks)
            if problem is not None:
                return SyncResult(Outcome.REJECTED, f"diff u={diff.final_update_id}: {problem}")
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
        self.event_time = diff.event_time
        return _APPLIED

    def _lose_sync(self, keep: DepthDiff | None = None) -> None:
        self.reset()
        if keep is not None:
            self._buffer.append(keep)
