"""The pure book and its sync state machine: table-driven cases for each rule of Binance's local-book
procedure, then hypothesis sequences with gaps, duplicates and reordering checked against a naive
rebuild of the true book. The sync cases run on both books (`make_sync`: pure and native)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradefleet.domain.market import DepthDiff, DepthSnapshot
from tradefleet.domain.models import Side
from tradefleet.domain.orderbook import MalformedLevel, OrderBook, Outcome, level_key

D = Decimal


def diff(first: int, final: int, bids=(), asks=(), symbol: str = "BTCUSDT") -> DepthDiff:
    return DepthDiff(symbol, 0, first, final, list(bids), list(asks))


def snap(last: int, bids=(("100.00", "1"),), asks=(("101.00", "1"),)) -> DepthSnapshot:
    return DepthSnapshot("BTCUSDT", last, list(bids), list(asks))


# ---- the book -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [("0.35130000", "0.3513"), ("30000", "30000.00"), ("30000.", "30000.000"), ("1.10", "1.1")],
)
def test_decimal_equal_price_strings_are_the_same_level(a: str, b: str) -> None:
    assert level_key(a) == level_key(b)
    book = OrderBook()
    book.load([(a, "1")], [("99999", "1")])
    book.apply([(b, "2")], [])
    assert book.bids(10) == [(D(a), D(2))]


# Plain decimal strings as exchanges write them, with 0-18 decimals and optional trailing zeros.
_decimal_strings = st.builds(
    lambda whole, frac, zeros, dot: f"{whole}.{frac}{'0' * zeros}" if frac or zeros or dot else str(whole),
    st.integers(0, 10**12),
    st.text("0123456789", max_size=18),
    st.integers(0, 8),
    st.booleans(),
).filter(lambda s: Decimal(s) > 0 and len(s.partition(".")[2].rstrip("0")) <= 18)


@given(_decimal_strings, _decimal_strings)
def test_level_keys_are_equal_and_ordered_exactly_as_decimals(a: str, b: str) -> None:
    ka, kb = level_key(a), level_key(b)
    assert (ka == kb) == (Decimal(a) == Decimal(b))
    assert (ka < kb) == (Decimal(a) < Decimal(b))
    assert level_key(f"{Decimal(a):f}") == ka  # any other spelling of the same decimal
    assert Decimal(f"{ka}e-18") == Decimal(a)  # the key is the price in units of 10^-18, exactly


@given(st.lists(st.tuples(_decimal_strings, st.integers(0, 3)), max_size=60))
def test_book_side_orders_and_merges_levels_like_a_decimal_dict(updates: list[tuple[str, int]]) -> None:
    book = OrderBook()
    truth: dict[Decimal, Decimal] = {}
    for price, qty in updates:
        book.apply([(price, f"{qty}.00000000" if qty == 0 else str(qty))], [])
        if qty:
            truth[Decimal(price)] = Decimal(qty)
        else:
            truth.pop(Decimal(price), None)
    assert book.bids(100) == sorted(truth.items(), reverse=True)
    assert book.as_dict()["bids"] == truth


def test_price_with_more_decimals_than_the_key_scale_is_refused_not_rounded() -> None:
    with pytest.raises(MalformedLevel, match="decimals"):
        OrderBook().apply([("1." + "0" * 18 + "1", "1")], [])
    assert level_key("1." + "1" * 18 + "000") == level_key("1." + "1" * 18)


@pytest.mark.parametrize(("a", "b"), [("0.1", "0.01"), ("1.0", "10"), ("100", "10.0")])
def test_different_prices_never_share_a_level(a: str, b: str) -> None:
    assert level_key(a) != level_key(b)


def test_zero_quantity_deletes_level_and_best_moves_to_next() -> None:
    book = OrderBook()
    book.load([("100.00", "1"), ("99.50", "2")], [("101.00", "3"), ("102.00", "4")])
    assert book.top() == (D("100"), D(1), D("101"), D(3))
    book.apply([("100.00", "0.00000000")], [("101.00", "0")])
    assert book.top() == (D("99.5"), D(2), D("102"), D(4))


def test_levels_are_best_first_for_the_side_a_market_order_takes_from() -> None:
    book = OrderBook()
    book.load([("99", "1"), ("100", "2"), ("98", "3")], [("103", "1"), ("101", "2"), ("102", "3")])
    assert book.levels_for(Side.BUY, 2) == [(D(101), D(2)), (D(102), D(3))]
    assert book.levels_for(Side.SELL, 5) == [(D(100), D(2)), (D(99), D(1)), (D(98), D(3))]


def test_readded_level_after_delete_is_found_once_with_new_quantity() -> None:
    book = OrderBook()
    book.load([("100", "1")], [("101", "1")])
    for _ in range(1000):  # churn: the lazy heap must stay bounded and correct
        book.apply([("100", "0")], [])
        book.apply([("100", "5")], [])
    assert book.bids(5) == [(D(100), D(5))]
    assert len(book._bids.heap) < 300


@pytest.mark.parametrize(
    "bad", ["abc", "-1", "1e3", "NaN", "", " 1", "1.2.3", "0", ".", "1_0", "+1", "٣", "0.0"]
)
def test_malformed_price_is_refused(bad: str) -> None:
    with pytest.raises(MalformedLevel):
        OrderBook().apply([(bad, "1")], [])


@pytest.mark.parametrize("bad", ["abc", "-1", "1e3", "NaN", "", "Infinity", "²", "0²", "1_0"])
def test_malformed_quantity_is_refused(bad: str) -> None:
    with pytest.raises(MalformedLevel):
        OrderBook().apply([("100", bad)], [])


# ---- the sync state machine -----------------------------------------------------------------


def test_diffs_before_snapshot_are_buffered_and_stale_ones_dropped_on_snapshot(make_sync) -> None:
    s = make_sync("BTCUSDT")
    assert s.on_diff(diff(5, 8, bids=[("99", "9")])).outcome is Outcome.BUFFERED  # u <= 10: dropped
    assert s.on_diff(diff(9, 12, bids=[("100.00", "7")])).outcome is Outcome.BUFFERED  # straddles 11
    assert s.on_diff(diff(13, 13, asks=[("101.00", "0"), ("102", "2")])).outcome is Outcome.BUFFERED
    assert s.on_snapshot(snap(10)).outcome is Outcome.SYNCED
    assert s.in_sync and s.last_update_id == 13
    assert s.book.top() == (D(100), D(7), D(102), D(2))
    assert s.book.bids(5) == [(D(100), D(7))]  # the u<=10 diff's 99 level never applied


def test_snapshot_older_than_buffered_stream_asks_for_another_and_keeps_buffer(make_sync) -> None:
    s = make_sync("BTCUSDT")
    s.on_diff(diff(20, 25))
    assert s.on_snapshot(snap(10)).outcome is Outcome.SNAPSHOT_TOO_OLD
    assert not s.in_sync and s.buffered == 1
    assert s.on_snapshot(snap(22)).outcome is Outcome.SYNCED
    assert s.last_update_id == 25


def test_first_event_exactly_after_snapshot_is_accepted(make_sync) -> None:
    s = make_sync("BTCUSDT")
    s.on_diff(diff(11, 15))
    assert s.on_snapshot(snap(10)).outcome is Outcome.SYNCED
    assert s.last_update_id == 15


def test_resyncs_when_sequence_gap_then_book_matches_new_snapshot(make_sync) -> None:
    s = make_sync("BTCUSDT")
    s.on_snapshot(snap(10))
    assert s.on_diff(diff(11, 12, bids=[("100", "3")])).outcome is Outcome.APPLIED
    gap = s.on_diff(diff(14, 15, bids=[("100", "4")]))
    assert gap.outcome is Outcome.GAP and gap.needs_snapshot
    assert not s.in_sync and s.book.top() is None and s.buffered == 1
    s.on_diff(diff(16, 16, asks=[("101", "9")]))
    assert s.on_snapshot(snap(14, bids=[("100", "8")])).outcome is Outcome.SYNCED
    assert s.last_update_id == 16
    assert s.book.top() == (D(100), D(4), D(101), D(9))


def test_duplicate_and_old_diffs_are_ignored_without_changing_the_book(make_sync) -> None:
    s = make_sync("BTCUSDT")
    s.on_snapshot(snap(10))
    s.on_diff(diff(11, 12, bids=[("100", "3")]))
    before = s.book.as_dict()
    assert s.on_diff(diff(11, 12, bids=[("100", "99")])).outcome is Outcome.IGNORED
    assert s.on_diff(diff(5, 9)).outcome is Outcome.IGNORED
    assert s.book.as_dict() == before


def test_crossing_diff_discards_book_and_requests_snapshot(make_sync) -> None:
    s = make_sync("BTCUSDT")
    s.on_snapshot(snap(10))
    r = s.on_diff(diff(11, 11, bids=[("105", "1")]))
    assert r.outcome is Outcome.CROSSED and r.needs_snapshot and not s.in_sync


def test_malformed_level_in_diff_discards_book_and_requests_snapshot(make_sync) -> None:
    s = make_sync("BTCUSDT")
    s.on_snapshot(snap(10))
    r = s.on_diff(diff(11, 11, bids=[("99", "1"), ("98", "x")]))
    assert r.outcome is Outcome.INVALID and "quantity" in r.detail and not s.in_sync


def test_diff_for_another_symbol_is_ignored(make_sync) -> None:
    s = make_sync("BTCUSDT")
    s.on_snapshot(snap(10))
    assert s.on_diff(diff(11, 11, symbol="ETHUSDT")).outcome is Outcome.IGNORED
    assert s.last_update_id == 10


def test_gap_inside_buffered_diffs_keeps_later_diffs_for_the_next_snapshot(make_sync) -> None:
    s = make_sync("BTCUSDT")
    for first, final in [(9, 11), (12, 13), (15, 16), (17, 18)]:  # 14 is missing
        s.on_diff(diff(first, final))
    assert s.on_snapshot(snap(10)).outcome is Outcome.GAP
    assert s.buffered == 2
    assert s.on_snapshot(snap(15)).outcome is Outcome.SYNCED
    assert s.last_update_id == 18


# ---- properties -----------------------------------------------------------------------------

BID_TICKS = st.integers(100, 140)  # prices in cents; bids below asks so the true book never crosses
ASK_TICKS = st.integers(141, 180)


def price_str(ticks: int, zeros: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}" + "0" * zeros  # trailing zeros vary, value does not


@st.composite
def level_updates(draw: st.DrawFn, ticks: st.SearchStrategy[int]) -> list[tuple[int, str, str]]:
    n = draw(st.integers(0, 4))
    out = []
    for _ in range(n):
        t = draw(ticks)
        zeros = draw(st.integers(0, 6))
        qty = draw(st.sampled_from(["0", "0.00000000", "1", "2.5", "0.001", "10.00000000"]))
        out.append((t, price_str(t, zeros), qty))
    return out


@st.composite
def histories(draw: st.DrawFn):
    """A true stream: consecutive id ranges, the true book after each, and a snapshot point."""
    start = draw(st.integers(1, 10_000))
    truth: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
    diffs: list[DepthDiff] = []
    states: dict[int, dict[str, dict[Decimal, Decimal]]] = {start: {"bids": {}, "asks": {}}}
    last = start
    for _ in range(draw(st.integers(1, 25))):
        bids = draw(level_updates(BID_TICKS))
        asks = draw(level_updates(ASK_TICKS))
        first, last = last + 1, last + draw(st.integers(1, 3))
        for side, ups in (("bids", bids), ("asks", asks)):
            for _, p, q in ups:
                if D(q):
                    truth[side][D(p)] = D(q)
                else:
                    truth[side].pop(D(p), None)
        diffs.append(diff(first, last, [(p, q) for _, p, q in bids], [(p, q) for _, p, q in asks]))
        states[last] = {k: dict(v) for k, v in truth.items()}
    return start, diffs, states


def snapshot_of(state: dict[str, dict[Decimal, Decimal]], last: int) -> DepthSnapshot:
    return DepthSnapshot(
        "BTCUSDT", last, [(str(p), str(q)) for p, q in state["bids"].items()],
        [(str(p), str(q)) for p, q in state["asks"].items()],
    )  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), history=histories())
def test_book_in_sync_always_equals_true_book_under_gaps_duplicates_and_reordering(
    make_sync, data, history
) -> None:
    _start, diffs, states = history
    delivered = list(diffs)
    faults = data.draw(st.lists(st.sampled_from(["dup", "drop", "swap"]), max_size=4))
    for fault in faults:
        if not delivered:
            break
        i = data.draw(st.integers(0, len(delivered) - 1))
        if fault == "dup":
            delivered.insert(i, delivered[i])
        elif fault == "drop":
            delivered.pop(i)
        elif i + 1 < len(delivered):
            delivered[i], delivered[i + 1] = delivered[i + 1], delivered[i]
    snap_at = data.draw(st.sampled_from(sorted(states)))
    arrives_after = data.draw(st.integers(0, len(delivered)))

    sync = make_sync("BTCUSDT")
    for n, d in enumerate(delivered):
        if n == arrives_after:
            sync.on_snapshot(snapshot_of(states[snap_at], snap_at))
        sync.on_diff(d)
        if sync.in_sync:
            assert sync.book.as_dict() == states[sync.last_update_id]
            assert not sync.book.crossed()
    if arrives_after == len(delivered):
        sync.on_snapshot(snapshot_of(states[snap_at], snap_at))
    if sync.in_sync:
        assert sync.book.as_dict() == states[sync.last_update_id]

    final = diffs[-1].final_update_id
    if all(f == "dup" for f in faults):
        # No loss and no reordering: the book must follow the stream to its end.
        assert sync.in_sync
        assert sync.last_update_id == max(snap_at, final)

    # Whatever happened, one fresh snapshot of the final truth brings the book back exactly.
    if not sync.in_sync or sync.last_update_id < final:
        assert sync.on_snapshot(snapshot_of(states[final], final)).outcome is Outcome.SYNCED
    assert sync.book.as_dict() == states[final]


@settings(max_examples=200, deadline=None)
@given(history=histories(), victim=st.data())
def test_dropping_one_frame_after_the_snapshot_forces_a_resync(make_sync, history, victim) -> None:
    start, diffs, states = history
    if len(diffs) < 2:
        return
    i = victim.draw(st.integers(0, len(diffs) - 2))  # not the last: a later frame reveals the hole
    sync = make_sync("BTCUSDT")
    sync.on_snapshot(snapshot_of(states[start], start))
    outcomes = [sync.on_diff(d).outcome for j, d in enumerate(diffs) if j != i]
    assert Outcome.GAP in outcomes
    assert not sync.in_sync or sync.book.as_dict() == states[sync.last_update_id]
