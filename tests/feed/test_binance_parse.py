"""BinanceSpot: the combined-stream URL and typed parsing of real frames into domain events."""

from __future__ import annotations

import json

import pytest

from tests.feed.captures import DATA
from tests.feed.conftest import BOOK_PATHS
from tradefleet.adapters.binance import BinanceSpot
from tradefleet.domain.market import BookTicker, DepthDiff, KlineEvent, StreamStatus, Trade
from tradefleet.domain.native_book import ParsedDiff
from tradefleet.errors import MalformedFrame
from tradefleet.ports import VenueAdapter

DEPTH = (
    '{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT",'
    '"U":499869750,"u":499869752,"b":[["0.35130000","6195.00000000"],["0.34750000","5548.00000000"]],'
    '"a":[]}}'
)
KLINE = (
    '{"stream":"nknusdt@kline_1m","data":{"e":"kline","E":1633998523963,"s":"NKNUSDT","k":{"t":1633998480000,'
    '"T":1633998539999,"s":"NKNUSDT","i":"1m","f":19862761,"L":19862790,"o":"0.35270000","c":"0.35280000",'
    '"h":"0.35280000","l":"0.35220000","v":"25877.00000000","n":30,"x":false,"q":"9116.04600000",'
    '"V":"58.00000000","Q":"20.46240000","B":"0"}}}'
)


@pytest.fixture
def adapter() -> BinanceSpot:
    return BinanceSpot()


def test_is_a_venue_adapter(adapter: BinanceSpot) -> None:
    _: VenueAdapter = adapter


@pytest.mark.parametrize("base", ["wss://stream.binance.com:9443", "wss://stream.binance.com:9443/ws",
                                  "ws://127.0.0.1:8765/", "ws://127.0.0.1:8765/stream"])  # fmt: skip
def test_stream_url_is_combined_stream_of_depth_ticker_trade_and_kline(
    adapter: BinanceSpot, base: str
) -> None:
    url = adapter.stream_url(base, "BTCUSDT", "1d")
    assert url == (
        base.rstrip("/").removesuffix("/ws").removesuffix("/stream")
        + "/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker/btcusdt@trade/btcusdt@kline_1d"
    )


def test_depth_diff_keeps_exchange_strings_and_update_ids(adapter: BinanceSpot) -> None:
    ev = adapter.parse(DEPTH.encode())
    assert ev == DepthDiff("NKNUSDT", 1633998512068, 499869750, 499869752,
                           [("0.35130000", "6195.00000000"), ("0.34750000", "5548.00000000")], [])  # fmt: skip


def test_book_ticker_and_kline_parse(adapter: BinanceSpot) -> None:
    t = adapter.parse(
        '{"stream":"nknusdt@bookTicker","data":{"u":499869768,"s":"NKNUSDT","b":"0.35210000",'
        '"B":"672.00000000","a":"0.35260000","A":"3199.00000000"}}'
    )
    assert t == BookTicker("NKNUSDT", 499869768, "0.35210000", "672.00000000", "0.35260000", "3199.00000000")
    k = adapter.parse(KLINE)
    assert isinstance(k, KlineEvent)
    assert (k.interval, k.open_time, k.close, k.trades, k.closed) == (
        "1m",
        1633998480000,
        "0.35280000",
        30,
        False,
    )


def test_real_trade_frame_with_and_without_removed_order_id_fields(adapter: BinanceSpot) -> None:
    frame = json.loads((DATA / "ws_trade_ETHUSDT_2021-12-12_nautilus.json").read_text())
    expected = Trade("ETHUSDT", 1639351062244, 705291099, "4149.74000000", "0.43870000", 1639351062243, True)
    assert adapter.parse(json.dumps(frame)) == expected
    del frame["data"]["b"], frame["data"]["a"]  # Binance dropped them in 2024-06
    assert adapter.parse(json.dumps(frame)) == expected


def test_every_frame_of_the_real_captures_parses(adapter: BinanceSpot) -> None:
    kinds: set[type] = set()
    for capture in ("2021-10-12", "2021-08-14"):
        for line in (DATA / f"capture_{capture}_ws.jsonl").read_text().splitlines()[1:]:
            ev = adapter.parse(json.dumps(json.loads(line)["msg"]))
            assert ev is not None
            kinds.add(type(ev))
    assert kinds == {DepthDiff, BookTicker, Trade, KlineEvent}  # aggTrade maps to Trade


def test_subscription_ack_is_ignored(adapter: BinanceSpot) -> None:
    assert adapter.parse('{"result":null,"id":1}') is None


@pytest.mark.parametrize(
    "frame",
    ['{"e":"serverShutdown","E":1770123456789}', '{"event":{"e":"serverShutdown","E":1770123456789}}',
     '{"stream":"btcusdt@depth@100ms","data":{"e":"serverShutdown","E":1}}'],
)  # fmt: skip
def test_server_shutdown_becomes_a_stream_status(adapter: BinanceSpot, frame: str) -> None:
    assert adapter.parse(frame) == StreamStatus("server_shutdown", "exchange announced a server shutdown")


@pytest.mark.parametrize(
    "frame",
    [
        DEPTH[: len(DEPTH) // 2],  # truncated
        "not json",
        "[1,2,3]",
        "{}",
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":"x","u":2,"b":[],"a":[]}}',
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1"]],"a":[]}}',
        '{"stream":"btcusdt@depth@100ms","data":null}',
        '{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT"}}',
        '{"stream":"btcusdt@ticker","data":{"e":"24hrTicker"}}',
        '{"error":{"code":2,"msg":"Invalid request"},"id":1}',
        b"\xff\xfe",
    ],
)
def test_malformed_frames_raise_malformed_frame(adapter: BinanceSpot, frame: str | bytes) -> None:
    with pytest.raises(MalformedFrame):
        adapter.parse(frame)


@pytest.mark.parametrize("native", BOOK_PATHS)
def test_depth_fast_path_gives_same_event_and_still_refuses_bad_frames(native: bool) -> None:
    adapter = BinanceSpot(native=native)
    first = adapter.parse(DEPTH.encode())  # general path; registers the stream as a depth stream
    fast = adapter.parse(DEPTH.encode())  # one-pass path (msgspec, or the native reader)
    assert type(fast) is (ParsedDiff if native else DepthDiff)
    fields = ("symbol", "event_time", "first_update_id", "final_update_id", "bids", "asks")
    assert [getattr(fast, f) for f in fields] == [getattr(first, f) for f in fields]
    for bad in (DEPTH[: len(DEPTH) // 2], DEPTH.replace('"U":499869750', '"U":"x"')):
        with pytest.raises(MalformedFrame):
            adapter.parse(bad.encode())
    shutdown = '{"stream":"nknusdt@depth@100ms","data":{"e":"serverShutdown","E":1}}'
    assert adapter.parse(shutdown.encode()) == StreamStatus(
        "server_shutdown", "exchange announced a server shutdown"
    )
