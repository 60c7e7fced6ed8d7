"""The native book against the pure reference: the same random frames through both parsers and both
books must give identical outcomes, details, books (level strings, order), tops and errors.

Sequences mix gaps, duplicates, stale diffs, deletions, other symbols, snapshots at random points,
odd but valid decimals ("1.50", "01.5", ".5", "1."), malformed numbers ("1e3", "-1", "", ".", "0..0",
non-ASCII digits) and frames the native reader must leave to msgspec (escapes, floats, extra
fields, three-element levels)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.feed.conftest import NATIVE_REQUIRED
from tradefleet.adapters.binance import BinanceSpot
from tradefleet.domain import native_book
from tradefleet.domain.market import DepthDiff, DepthSnapshot, StreamStatus
from tradefleet.domain.native_book import NativeBookSync, ParsedDiff
from tradefleet.domain.orderbook import BookSync, MalformedLevel, Outcome, level_key
from tradefleet.engine.book_keeper import BookKeeper, SnapshotReady
from tradefleet.errors import MalformedFrame
from tradefleet.metrics import BotMetrics

pytestmark = pytest.mark.skipif(
    not native_book.AVAILABLE and not NATIVE_REQUIRED,
    reason="NATIVE BOOK NOT TESTED: tradefleet_native is not installed (no cargo at `make install`?)",
)

STREAM = "btcusdt@depth@100ms"
PRICES = ["100", "100.0", "100.50", "0100.5", "100.5", "101", "101.000", "99.99", "99.990", "102.25",
          "98", "97.5", ".5", "1.", "0.000000000000000001", "98.000000000000000000000"]  # fmt: skip
BAD_PRICES = ["1e3", "-1", "", ".", "0", "0.0", "1..2", " 1", "١٠", "1.0000000000000000001",
              "123456789012345678901", "0000000000000000000000001", "NaN", "+5", "10²"]  # fmt: skip
QTYS = ["0", "0.000", "0..0", "00", "1", "0.5", ".5", "1.", "2.50", "0001", "12345.678901234567890"]
BAD_QTYS = ["", ".", ".0", "abc", "-1", "1e3", "1.2.3", " 1", "٣", "²", "1_0", "0x1", "..5"]


def level(bad_rate: int) -> st.SearchStrategy[tuple[str, str]]:
    price = st.one_of(st.sampled_from(PRICES).filter(lambda _: True), st.sampled_from(BAD_PRICES))
    qty = st.sampled_from(QTYS) | st.sampled_from(BAD_QTYS)
    good = st.tuples(st.sampled_from(PRICES), st.sampled_from(QTYS))
    return st.one_of(*([good] * bad_rate), st.tuples(price, qty))


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    u = draw(st.integers(1, 50))
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["diff"] * 6 + ["snapshot", "reset", "odd"]))
        if kind == "snapshot":
            last = u + draw(st.integers(-5, 3))
            bids = draw(st.lists(st.tuples(st.sampled_from(["90", "95.5", "99"]), st.sampled_from(QTYS[4:])),
                                 max_size=3))  # fmt: skip
            asks = draw(st.lists(st.tuples(st.sampled_from(["103", "104.5", "110"]), st.sampled_from(QTYS[4:])),
                                 max_size=3))  # fmt: skip
            if draw(st.integers(0, 9)) == 0:
                bids.append(draw(level(0)))  # sometimes a malformed or crossing snapshot
            out.append(("snapshot", (draw(st.sampled_from(["BTCUSDT"] * 5 + ["ETHUSDT"])), last, bids, asks)))
            continue
        if kind == "reset":
            out.append(("reset", None))
            continue
        jump = draw(st.sampled_from([1, 1, 1, 1, 2, 0, -3, 5]))  # contiguous, gap, duplicate, stale
        first = u + jump if jump > 0 else u + jump - 1
        last = max(first, first + draw(st.integers(0, 3)))
        if jump > 0:
            u = last
        frame = {
            "e": "depthUpdate",
            "E": draw(st.integers(0, 10**13)),
            "s": draw(st.sampled_from(["BTCUSDT"] * 9 + ["ETHUSDT"])),
            "U": first,
            "u": last,
            "b": draw(st.lists(level(6), max_size=6)),
            "a": draw(st.lists(level(6), max_size=6)),
        }
        if kind == "odd":
            shape = draw(st.sampled_from(["float", "extra", "triple", "number", "missing", "nested"]))
            if shape == "float":
                frame["U"] = float(frame["U"])  # type: ignore[arg-type]
            elif shape == "extra":
                frame["pu"] = first - 1
            elif shape == "triple":
                frame["b"] = [["100", "1", "x"]]
            elif shape == "number":
                frame["a"] = [[101, 1]]
            elif shape == "missing":
                del frame["E"]
            else:
                frame["x"] = {"y": [1]}
        ascii_only = draw(st.booleans())  # True: non-ASCII strings become \\u escapes (msgspec's path)
        text = json.dumps({"stream": STREAM, "data": frame}, ensure_ascii=ascii_only,
                          separators=(",", ":") if draw(st.booleans()) else (", ", ": "))  # fmt: skip
        out.append(("frame", text.encode()))
    return out


def state(sync: Any) -> tuple[Any, ...]:
    book = sync.book
    return (
        sync.in_sync,
        sync.last_update_id,
        sync.buffered,
        sync.event_time,
        [(str(p), str(q)) for p, q in book.bids(10**6)],
        [(str(p), str(q)) for p, q in book.asks(10**6)],
        None if book.top() is None else tuple(str(x) for x in book.top()),
        len(book),
        book.crossed(),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps())
def test_native_and_pure_books_are_identical_on_the_same_frames(seq: list[tuple[str, Any]]) -> None:
    pure, native = BookSync("BTCUSDT"), NativeBookSync("BTCUSDT")
    pure_parser, native_parser = BinanceSpot(native=False), BinanceSpot(native=True)
    for kind, arg in seq:
        if kind == "reset":
            pure.reset()
            native.reset()
        elif kind == "snapshot":
            snap = DepthSnapshot(*arg)
            assert pure.on_snapshot(snap) == native.on_snapshot(snap)
        else:
            try:
                p_event = pure_parser.parse(arg)
            except MalformedFrame:
                with pytest.raises(MalformedFrame):
                    native_parser.parse(arg)
                continue
            n_event = native_parser.parse(arg)
            event(f"native parser gave {type(n_event).__name__}")  # both paths must show up
            assert type(p_event) is DepthDiff and type(n_event) in (DepthDiff, ParsedDiff)
            assert (n_event.symbol, n_event.event_time, n_event.first_update_id, n_event.final_update_id,
                    list(n_event.bids), list(n_event.asks)) == (
                p_event.symbol, p_event.event_time, p_event.first_update_id, p_event.final_update_id,
                list(p_event.bids), list(p_event.asks))  # fmt: skip
            result = pure.on_diff(p_event)
            event(f"outcome {result.outcome.value}")  # rejected (waiting, malformed) must show up
            assert result == native.on_diff(n_event)
        assert state(pure) == state(native)


def keeper(native: bool) -> BookKeeper:
    return BookKeeper(market_id="BTCUSDT", rest=None, depth_limit=10, metrics=BotMetrics(),  # type: ignore[arg-type]
                      post=lambda e: None, spawn=lambda c: c.close(), native=native)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps(), st.integers(0, 15))
def test_native_and_pure_keepers_report_the_same_top_changes(seq: list[tuple[str, Any]], skew: int) -> None:
    """The keeper's native hot path (`DepthSync.feed`: the module says whether the top's value
    moved, no `Decimal` built) against the pure keeper's `Decimal` comparison: same answers from
    `handle`, same tops, states and event times, every 16th diff taking the timed path."""
    pure, native = keeper(False), keeper(True)
    pure._diffs = native._diffs = skew  # where the 1-in-16 timed path falls
    pure_parser, native_parser = BinanceSpot(native=False), BinanceSpot(native=True)
    for kind, arg in seq:
        if kind == "reset":
            events: tuple[Any, Any] = (StreamStatus("connected"), StreamStatus("connected"))
        elif kind == "snapshot":
            snap = DepthSnapshot(*arg)
            events = (SnapshotReady("BTCUSDT", pure._generation, snap),
                      SnapshotReady("BTCUSDT", native._generation, snap))  # fmt: skip
        else:
            try:
                events = (pure_parser.parse(arg), native_parser.parse(arg))
            except MalformedFrame:
                continue
        changed = pure.handle(events[0])
        event(f"top changed {changed}")
        assert native.handle(events[1]) == changed
        top = pure.top()
        assert native.top() == top and (
            top is None or [str(x) for x in native.top() or ()] == [str(x) for x in top]
        )
        assert (native.in_sync, native.last_update_id, native.last_event_time, native._generation) == (
            pure.in_sync, pure.last_update_id, pure.last_event_time, pure._generation)  # fmt: skip


def test_plain_depth_frames_take_the_native_fast_path() -> None:
    parser = BinanceSpot(native=True)
    frame = json.dumps({"stream": STREAM, "data": {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2,
                                                     "b": [["100", "1"]], "a": []}},
                       separators=(",", ":")).encode()  # fmt: skip
    assert type(parser.parse(frame)) is DepthDiff  # the first frame teaches the parser the stream name
    parsed = parser.parse(frame)
    assert type(parsed) is ParsedDiff and parsed.bids == [("100", "1")] and len(parsed) == 1


@given(st.text("0123456789.", max_size=30) | st.sampled_from(BAD_PRICES + PRICES))
def test_native_level_key_equals_pure(price: str) -> None:
    import tradefleet_native

    try:
        expected: int | None = level_key(price)
    except MalformedLevel:
        expected = None
    try:
        got: int | None = tradefleet_native.level_key(price)
    except ValueError:
        got = None
    assert got == expected


def depth_frame(first: int, last: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": last, "b": bids, "a": asks}
    return json.dumps({"stream": STREAM, "data": data}, separators=(",", ":")).encode()


def test_the_module_itself_refuses_a_malformed_diff_while_waiting() -> None:
    """The rule lives in Rust (`DepthSync.step`): the module's own object answers REJECTED (code 8,
    the wrapper's `Outcome.REJECTED`) and buffers nothing; a good diff is buffered."""
    import tradefleet_native

    parser = BinanceSpot(native=True)
    parser.parse(depth_frame(1, 1, [], []))  # teaches the parser the depth stream's name
    sync = tradefleet_native.DepthSync("BTCUSDT")
    bad = parser.parse(depth_frame(2, 3, [["100", "1"]], [["101", "1e3"]]))
    assert type(bad) is ParsedDiff
    code, detail = sync.on_parsed(bad)
    assert native_book.native_result(code, detail).outcome is Outcome.REJECTED
    assert detail == "diff u=3: quantity '1e3' is not a plain non-negative decimal number"
    assert sync.buffered == 0
    assert sync.on_parsed(parser.parse(depth_frame(2, 3, [["100", "1"]], [["101", "2"]]))) == (0, None)
    assert sync.buffered == 1


def test_keeper_hot_path_counts_a_malformed_frame_while_waiting_and_fetches_only_for_a_good_one() -> None:
    metrics = BotMetrics()
    fetches: list[object] = []

    def spawn(coro: Any) -> None:
        fetches.append(coro)
        coro.close()

    keeper = BookKeeper(market_id="BTCUSDT", rest=None, depth_limit=10, metrics=metrics,  # type: ignore[arg-type]
                        post=lambda e: None, spawn=spawn, native=True)  # fmt: skip
    parser = BinanceSpot(native=True)
    parser.parse(depth_frame(1, 1, [], []))
    malformed = metrics.registry.get_sample_value
    assert not keeper.handle(parser.parse(depth_frame(2, 3, [["1..2", "1"]], [])))
    assert keeper.sync.buffered == 0 and not fetches
    assert malformed("tradefleet_malformed_frames_total") == 1
    assert not keeper.handle(parser.parse(depth_frame(2, 3, [["100", "1"]], [])))
    assert keeper.sync.buffered == 1 and len(fetches) == 1


ANY_TEXT = st.text(max_size=20) | st.text('0123456789.éx"\\\x01', max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=4), st.booleans())
def test_native_reader_takes_any_string_as_msgspec_does_or_leaves_it_to_msgspec(
    levels: list[tuple[str, str]], ascii_only: bool
) -> None:
    """Strings of any content and length (quotes, backslashes, control characters, non-ASCII at
    every offset of the reader's eight-byte scan): read exactly as msgspec reads them, or left to it."""
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": levels, "a": levels[::-1]}
    frame = json.dumps(
        {"stream": STREAM, "data": data}, ensure_ascii=ascii_only, separators=(",", ":")
    ).encode()
    parsed = native_book.parse_depth(frame)
    event("left to msgspec" if parsed is None else "read natively")
    if parsed is None:
        return
    expected = BinanceSpot(native=False).parse(frame)
    assert isinstance(expected, DepthDiff)
    assert (parsed.bids, parsed.asks) == (list(expected.bids), list(expected.asks))
