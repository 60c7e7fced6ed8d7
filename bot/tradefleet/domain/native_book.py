"""The native book path: `BookSync`'s interface over `tradefleet_native` (Rust, built from native/).

Why it exists: the pure book spends ~280 ns a level in Python (the per-level quantity checks, key
lookups and membership tests) and every level of every diff also costs a Python tuple and two
strings from the parser. The native module reads a depth frame's bytes, validates and applies each
level in Rust and hands back one small object per frame; `python -m bench.ingest` compares both.

The pure book (`tradefleet.domain.orderbook`) stays the reference and the fallback: the native one
follows the same rules, outcomes and details (a hypothesis test drives both with the same random
sequences and requires identical books, tops and errors). Without the compiled module this module
still imports; `AVAILABLE` is False and `new_book_sync` returns the pure `BookSync`.

What it refuses to do: parse anything but the plain depth-frame shape. `parse_depth` returns None for
anything unusual (escapes, floats, unknown nested fields) and the caller's general parser decides.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

from tradefleet.domain.market import DepthDiff, DepthSnapshot
from tradefleet.domain.models import Side
from tradefleet.domain.orderbook import BookSync, Outcome, SyncResult

_native: Any
try:
    import tradefleet_native as _native
except ImportError:  # no compiler at install time: the pure path
    _native = None

API = 2
"""The module interface this code calls (`tradefleet_native.API`); a module built from another
version of native/ (pip upgraded tradefleet, not tradefleet-native) is not used: the pure path."""
UNUSABLE = ""  # why an installed module is not used ("" when it is, or when none is installed)
if _native is not None and getattr(_native, "API", None) != API:
    UNUSABLE = (
        f"tradefleet_native is installed but built for API {getattr(_native, 'API', 1)}, this tradefleet "
        f"needs {API}: pip install ./native again"
    )
    _native = None

AVAILABLE = _native is not None
ParsedDiff: type | None = _native.ParsedDiff if _native is not None else None
Top = tuple[Decimal, Decimal, Decimal, Decimal]

_OUTCOMES = (
    Outcome.BUFFERED,
    Outcome.APPLIED,
    Outcome.IGNORED,
    Outcome.GAP,
    Outcome.INVALID,
    Outcome.CROSSED,
    Outcome.SYNCED,
    Outcome.SNAPSHOT_TOO_OLD,
    Outcome.REJECTED,
)
_PLAIN = tuple(SyncResult(o) for o in _OUTCOMES)


def parse_depth(frame: bytes) -> Any:
    """A `ParsedDiff` (symbol, event_time, first/final_update_id, bids, asks) or None."""
    assert _native is not None
    return _native.parse_depth(frame)


def parse_depth_function() -> Any:
    """The module's `parse_depth` itself, for a hot path (one call less per frame)."""
    assert _native is not None
    return _native.parse_depth


APPLIED_CODE = _OUTCOMES.index(Outcome.APPLIED)
TOP_MOVED_CODE = len(_OUTCOMES)  # `DepthSync.feed` only: applied, and the top's value moved


def native_result(code: int, detail: str | None) -> SyncResult:
    """The `SyncResult` for the native module's (outcome code, detail)."""
    return _PLAIN[code] if detail is None else SyncResult(_OUTCOMES[code], detail)


def _result(raw: tuple[int, str | None]) -> SyncResult:
    return native_result(*raw)


def _decimals(levels: list[tuple[str, str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


class NativeOrderBook:
    """The read side of `OrderBook` over the native book (all changes go through the sync)."""

    __slots__ = ("_cached", "_s", "_top")

    def __init__(self, sync: Any) -> None:
        self._s = sync
        self._cached: object = None
        self._top: Top | None = None

    def top(self) -> Top | None:
        """(bid, bid_qty, ask, ask_qty), or None while either side is empty."""
        strings = self._s.top_strings()
        if strings is None:
            return None
        if strings is not self._cached:  # the native side returns the same tuple until a change
            self._cached = strings
            b, bq, a, aq = strings
            self._top = (Decimal(b), Decimal(bq), Decimal(a), Decimal(aq))
        return self._top

    def crossed(self) -> bool:
        return bool(self._s.crossed())

    def bids(self, depth: int) -> list[tuple[Decimal, Decimal]]:
        return _decimals(self._s.levels(True, depth))

    def asks(self, depth: int) -> list[tuple[Decimal, Decimal]]:
        return _decimals(self._s.levels(False, depth))

    def levels_for(self, side: Side, depth: int) -> list[tuple[Decimal, Decimal]]:
        return self.asks(depth) if side is Side.BUY else self.bids(depth)

    def as_dict(self) -> dict[str, dict[Decimal, Decimal]]:
        everything = 1 << 62
        return {
            "bids": dict(_decimals(self._s.levels(True, everything))),
            "asks": dict(_decimals(self._s.levels(False, everything))),
        }

    def __len__(self) -> int:
        return len(self._s)


class NativeBookSync:
    """`BookSync` with the native book: same states, outcomes and details."""

    def __init__(self, market_id: str, *, buffer_max: int = 10_000) -> None:
        if _native is None:
            raise RuntimeError("tradefleet_native is not installed (see README: the native book)")
        self.market_id = market_id
        self._s = _native.DepthSync(market_id, buffer_max)
        self.native = self._s  # the module's own object, for callers with a hot path of their own
        self._on_parsed = self._s.on_parsed
        self.book = NativeOrderBook(self._s)

    @property
    def in_sync(self) -> bool:
        return bool(self._s.in_sync)

    @property
    def last_update_id(self) -> int:
        return int(self._s.last_update_id)

    @property
    def buffered(self) -> int:
        return int(self._s.buffered)

    @property
    def event_time(self) -> int:
        return int(self._s.event_time)

    def reset(self) -> None:
        self._s.reset()

    def on_diff(self, diff: Any) -> SyncResult:
        """A `DepthDiff` or a native `ParsedDiff` (the fast path: no Python object per level).

        Every rule is the native module's, including the pure book's `check_levels` while waiting
        for a snapshot (a malformed diff is refused, never buffered): the levels are read once."""
        if type(diff) is ParsedDiff:
            code, detail = self._on_parsed(diff)
            return _PLAIN[code] if detail is None else SyncResult(_OUTCOMES[code], detail)
        d: DepthDiff = diff
        return _result(self._s.on_diff(d.symbol, d.event_time, d.first_update_id, d.final_update_id,
                                       d.bids, d.asks))  # fmt: skip

    def on_snapshot(self, snapshot: DepthSnapshot) -> SyncResult:
        s = snapshot
        return _result(self._s.on_snapshot(s.symbol, s.last_update_id, s.bids, s.asks))


class SyncLike(Protocol):
    """What `BookKeeper` needs from a book sync: `BookSync` or `NativeBookSync`."""

    market_id: str

    @property
    def in_sync(self) -> bool: ...

    @property
    def last_update_id(self) -> int: ...

    @property
    def buffered(self) -> int: ...

    @property
    def event_time(self) -> int: ...

    @property
    def book(self) -> Any: ...

    def reset(self) -> None: ...

    def on_diff(self, diff: Any) -> SyncResult: ...

    def on_snapshot(self, snapshot: DepthSnapshot) -> SyncResult: ...


def new_book_sync(market_id: str, *, native: bool | None = None) -> SyncLike:
    """The native sync when `native` (default: when the module is installed), else the pure one."""
    use_native = AVAILABLE if native is None else native
    return NativeBookSync(market_id) if use_native else BookSync(market_id)
