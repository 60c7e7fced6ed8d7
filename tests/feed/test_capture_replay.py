"""Replay real Binance sessions through the real parser and book: the rebuilt top of book must equal
every @bookTicker frame whose update id the book reaches, and a dropped frame must force a resync."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.feed.captures import CAPTURES, load, symbols
from tradefleet.adapters.binance import BinanceSpot
from tradefleet.domain.market import BookTicker, DepthDiff
from tradefleet.domain.native_book import ParsedDiff, new_book_sync
from tradefleet.domain.orderbook import Outcome

EXPECTED_TICKER_MATCHES = {"2021-10-12": 26, "2021-08-14": 98}  # 96 via diffs + 2 at a snapshot id


def replay(capture: str, drop: tuple[str, int] | None = None, native: bool = False):
    parser = BinanceSpot(native=native)
    books = {s: new_book_sync(s, native=native) for s in symbols(capture)}
    tops: dict[tuple[str, int], tuple[Decimal, ...] | None] = {}
    tickers: list[BookTicker] = []
    outcomes: list[tuple[str, Outcome]] = []
    for step in load(capture):
        if step.snapshot is not None:
            sync = books[step.snapshot.symbol]
            outcomes.append((step.snapshot.symbol, sync.on_snapshot(step.snapshot).outcome))
            if sync.in_sync:
                tops[(sync.market_id, sync.last_update_id)] = sync.book.top()
            continue
        assert step.frame is not None
        event = parser.parse(step.frame.encode())  # bytes, as the websocket hands them over
        if type(event) in (DepthDiff, ParsedDiff):
            if drop == (event.symbol, event.final_update_id):
                continue
            sync = books[event.symbol]
            result = sync.on_diff(event)
            outcomes.append((event.symbol, result.outcome))
            if result.outcome is Outcome.APPLIED:
                tops[(event.symbol, sync.last_update_id)] = sync.book.top()
                assert not sync.book.crossed()
        elif isinstance(event, BookTicker):
            tickers.append(event)
    return books, tops, tickers, outcomes


@pytest.mark.parametrize("capture", CAPTURES)
def test_rebuilt_top_of_book_equals_every_aligned_book_ticker(capture: str, native: bool) -> None:
    books, tops, tickers, outcomes = replay(capture, native=native)
    compared = 0
    for t in tickers:
        key = (t.symbol, t.update_id)
        if key in tops:
            compared += 1
            expected = (Decimal(t.bid), Decimal(t.bid_qty), Decimal(t.ask), Decimal(t.ask_qty))
            assert tops[key] == expected, f"{t.symbol} u={t.update_id}"
    assert compared == EXPECTED_TICKER_MATCHES[capture]
    assert all(b.in_sync for b in books.values())
    assert not [
        o
        for o in outcomes
        if o[1] in (Outcome.GAP, Outcome.INVALID, Outcome.CROSSED, Outcome.SNAPSHOT_TOO_OLD)
    ]


def test_first_nknusdt_diff_is_discarded_because_snapshot_already_covers_it(native: bool) -> None:
    books, _, _, _ = replay("2021-10-12", native=native)
    # The snapshot (499869752) covers the first diff (U=499869750, u=499869752); the book then
    # follows the stream from U=499869753 on.
    assert books["NKNUSDT"].last_update_id > 499869752


def test_dropped_depth_frame_is_detected_as_gap_and_book_waits_for_new_snapshot(native: bool) -> None:
    # Pick a diff that arrives after NKNUSDT is in sync and is not the last one.
    _, _, _, full = replay("2021-10-12", native=native)
    parser = BinanceSpot()
    diffs = [parser.parse(s.frame) for s in load("2021-10-12") if s.frame]
    nkn = [d for d in diffs if isinstance(d, DepthDiff) and d.symbol == "NKNUSDT"]
    victim = nkn[len(nkn) // 2]
    books, _, _, outcomes = replay("2021-10-12", drop=("NKNUSDT", victim.final_update_id), native=native)
    nkn_outcomes = [o for s, o in outcomes if s == "NKNUSDT"]
    assert Outcome.GAP in nkn_outcomes
    assert not books["NKNUSDT"].in_sync  # no new snapshot in the capture: it must not pretend
    assert books["NKNUSDT"].book.top() is None
    assert Outcome.GAP not in [o for s, o in full if s == "NKNUSDT"]
