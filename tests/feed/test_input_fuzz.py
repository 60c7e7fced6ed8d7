"""Fuzz the whole market-data and REST-history input surface (hypothesis), every message type.

Invariant: a message with any number that is not a plain, bounded decimal in the exchange's notation
(prices positive) ends as nothing but a counted `MalformedFrame` (stream frames), a refused REST page
(history) or a discarded book (depth, see below) and changes no state; a message whose numbers are
all good is accepted and can never make the book or the strategy raise.

The oracle is independent of `domain.numbers`: a regular expression and digit counts. Depth levels
are the one place where a bad number is found while applying (the book's hot path checks each level
as it goes; a separate validating pass measured 3-4x the cost of the apply): a bad level in a diff
applied in sync discards the whole book, so nothing of that diff is ever visible, and a bad level
while the book waits for a snapshot is refused before it is buffered.
"""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradefleet.adapters.binance import BinanceSpot
from tradefleet.adapters.market_rest import BinanceMarketRest
from tradefleet.domain.candles import candle_from_kline
from tradefleet.domain.market import BookTicker, DepthDiff, DepthSnapshot, KlineEvent, Trade
from tradefleet.domain.native_book import ParsedDiff, new_book_sync
from tradefleet.domain.orderbook import BookSync, Outcome
from tradefleet.domain.sma_cross import SmaCrossover
from tradefleet.errors import ExchangeUnavailable, MalformedFrame

PLAIN = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
# ASCII-only check on purpose: str.isdigit() and \d accept Unicode digits, which is the bug class.
BAD = [
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "1e30",
    "1E-5",
    "-1",
    "-0.5",
    "+1",
    " 1",
    "1 ",
    "1_0",
    "١٢",
    "²",
    "0x10",
    "",
    ".",
    "1.2.3",
    "1" * 25,
    "0." + "0" * 19 + "1",
    "1" * 5000,
    "0" * 70 + "1",
]


def good(number: str, *, positive: bool) -> bool:
    """Independent oracle for one exchange number."""
    if not PLAIN.match(number) or not number.isascii():
        return False
    whole, _, frac = number.partition(".")
    if len(number) > 64 or len(whole.lstrip("0")) > 20 or len(frac.rstrip("0")) > 18:
        return False
    return not positive or Decimal(number) > 0


def level_qty_ok(qty: str) -> bool:
    """A depth level's quantity: a good number, or a zero written as any run of 0s and dots that
    starts with "0" (the book's hot path reads every such string as "delete this level")."""
    return good(qty, positive=False) or (qty[:1] == "0" and not qty.strip("0."))


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2).map(lambda d: f"{d:f}")
qtys = st.decimals(min_value=Decimal(0), max_value=Decimal("500"), places=8).map(lambda d: f"{d:f}")
bad = st.sampled_from(BAD) | st.text(max_size=12)


def maybe_bad(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(base, base, base, bad)


def frame(stream: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


@given(bid=maybe_bad(prices), bq=maybe_bad(qtys), ask=maybe_bad(prices), aq=maybe_bad(qtys))
def test_book_ticker_with_a_bad_number_is_a_malformed_frame(bid: str, bq: str, ask: str, aq: str) -> None:
    data = {"u": 1, "s": "BTCUSDT", "b": bid, "B": bq, "a": ask, "A": aq}
    ok = (
        good(bid, positive=True)
        and good(ask, positive=True)
        and good(bq, positive=False)
        and good(aq, positive=False)
    )
    try:
        event = BinanceSpot().parse(frame("btcusdt@bookTicker", data))
    except MalformedFrame:
        assert not ok, data
    else:
        assert ok and isinstance(event, BookTicker), data


@given(price=maybe_bad(prices), qty=maybe_bad(qtys), kind=st.sampled_from(["trade", "aggTrade"]))
def test_trade_with_a_bad_number_is_a_malformed_frame(price: str, qty: str, kind: str) -> None:
    data = {"e": kind, "E": 1, "s": "BTCUSDT", "t": 7, "a": 7, "p": price, "q": qty, "T": 1, "m": True}
    ok = good(price, positive=True) and good(qty, positive=False)
    try:
        event = BinanceSpot().parse(frame(f"btcusdt@{kind}", data))
    except MalformedFrame:
        assert not ok, data
    else:
        assert ok and isinstance(event, Trade), data


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    o=maybe_bad(prices), h=maybe_bad(prices), low=maybe_bad(prices), c=maybe_bad(prices), v=maybe_bad(qtys),
    trades=st.integers(-5, 10**6), closed=st.booleans(),
)  # fmt: skip
def test_kline_with_a_bad_number_is_malformed_and_never_reaches_the_strategy(
    o: str, h: str, low: str, c: str, v: str, trades: int, closed: bool
) -> None:
    cross = SmaCrossover(2, 3)
    for i, close in enumerate(["100", "101", "99", "100.5"]):  # warmed up, with a relation
        cross.on_close(_candle(i, close))
    before = (
        cross.short._total,
        cross.long._total,
        list(cross.long._values),
        cross.relation,
        cross.last_open_time,
    )
    data = {"e": "kline", "E": 1, "s": "BTCUSDT", "k": {"t": 10 * 60_000, "T": 11 * 60_000 - 1, "i": "1m",
            "o": o, "h": h, "l": low, "c": c, "v": v, "n": trades, "x": closed}}  # fmt: skip
    nums_ok = all(good(x, positive=True) for x in (o, h, low, c)) and good(v, positive=False) and trades >= 0
    try:
        event = BinanceSpot().parse(frame("btcusdt@kline_1m", data))
    except MalformedFrame:
        ordered = (
            nums_ok
            and Decimal(low) <= min(Decimal(o), Decimal(c))
            and max(Decimal(o), Decimal(c)) <= Decimal(h)
        )
        assert not ordered, data
        after = (
            cross.short._total,
            cross.long._total,
            list(cross.long._values),
            cross.relation,
            cross.last_open_time,
        )
        assert after == before
        return
    assert nums_ok and isinstance(event, KlineEvent), data
    update = cross.on_close(candle_from_kline(event))  # an accepted candle never makes the strategy raise
    assert update.sma_short is not None and update.sma_short.is_finite()


def _candle(i: int, close: str) -> Any:
    k = KlineEvent(
        "BTCUSDT", 1, "1m", i * 60_000, (i + 1) * 60_000 - 1, close, close, close, close, "1", 1, True
    )
    return candle_from_kline(k)


levels = st.lists(st.tuples(maybe_bad(prices), maybe_bad(qtys)), max_size=6)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(bids=levels, asks=levels, synced=st.booleans())
def test_depth_diff_with_a_bad_number_never_leaves_a_half_applied_book(
    native: bool, bids: list[tuple[str, str]], asks: list[tuple[str, str]], synced: bool
) -> None:
    """On both book paths: the pure parser and book, and the native reader and book (which check
    the frame's bytes themselves: the parser's first frame teaches it the depth stream's name)."""
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 101, "u": 102, "b": bids, "a": asks}
    parser = BinanceSpot(native=native)
    parser.parse(frame("btcusdt@depth@100ms", {**data, "b": [], "a": []}))
    event = parser.parse(frame("btcusdt@depth@100ms", data))
    assert isinstance(event, DepthDiff) or (native and type(event) is ParsedDiff)
    ok = all(good(p, positive=True) and level_qty_ok(q) for p, q in bids + asks)
    sync = new_book_sync("BTCUSDT", native=native)
    if synced:
        assert (
            sync.on_snapshot(DepthSnapshot("BTCUSDT", 100, [("0.001", "1")], [("100000", "1")])).outcome
            is Outcome.SYNCED
        )
        before = sync.book.as_dict()
    result = sync.on_diff(event)
    if ok:
        assert result.outcome in (Outcome.APPLIED, Outcome.CROSSED, Outcome.BUFFERED), result
        return
    if synced:  # discarded whole: nothing of the diff is visible, a snapshot is asked for
        assert result.outcome is Outcome.INVALID and result.needs_snapshot, result
        assert not sync.in_sync and len(sync.book) == 0 and sync.book.top() is None
        assert before  # (the book had levels before)
    else:  # refused before buffering: nothing changed
        assert result.outcome is Outcome.REJECTED and sync.buffered == 0 and not result.needs_snapshot


class _Rest(BinanceMarketRest):
    """The real client with its one HTTP call answered by the fuzzed bodies (as JSON bytes: the
    client's own decoding and checks run on them)."""

    def __init__(self, klines: Any = None, depth: Any = None) -> None:
        super().__init__(rest_url="http://127.0.0.1:9")
        self.bodies = {"time": {"serverTime": 10**13}, "klines": klines, "depth": depth}

    async def _fetch(self, endpoint: str, params: dict[str, Any], what: str) -> bytes:
        return json.dumps(self.bodies[endpoint]).encode()


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(rows=st.lists(st.tuples(maybe_bad(prices), maybe_bad(qtys)), min_size=1, max_size=5))
def test_rest_klines_with_a_bad_number_refuse_the_whole_page(rows: list[tuple[str, str]]) -> None:
    body = [
        [i * 60_000, c, c, c, c, v, (i + 1) * 60_000 - 1, "0", 3, "0", "0", "0"]
        for i, (c, v) in enumerate(rows)
    ]
    ok = all(good(c, positive=True) and good(v, positive=False) for c, v in rows)
    rest = _Rest(klines=body)
    try:
        candles = asyncio.run(rest.fetch_candles("BTC/USDT", "1m", 0, len(rows) * 60_000))
    except ExchangeUnavailable as e:
        assert not ok and isinstance(e.__cause__, MalformedFrame), body
    else:
        assert ok and len(candles) == len(rows)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(bids=levels, asks=levels)
def test_rest_depth_snapshot_with_a_bad_number_is_never_used(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]]
) -> None:
    body = {"lastUpdateId": 100, "bids": [["0.001", "1"], *bids], "asks": [["100000", "1"], *asks]}
    ok = all(good(p, positive=True) and level_qty_ok(q) for p, q in bids + asks)
    snapshot = asyncio.run(_Rest(depth=body).fetch_depth_snapshot("BTCUSDT", 100))
    sync = BookSync("BTCUSDT")
    result = sync.on_snapshot(snapshot)
    if ok:
        assert result.outcome in (Outcome.SYNCED, Outcome.CROSSED), result
    else:
        assert result.outcome is Outcome.INVALID and len(sync.book) == 0 and not sync.in_sync, result
