"""Binance Spot market-data dialect: the combined-stream URL and typed frame parsing.

Why it exists: the feed loop is venue-neutral; this module is the only place that knows Binance's
stream names and field letters. It turns one combined-stream frame (`{"stream":…, "data":…}`) into
one event of `tradefleet.domain.market`, with msgspec typed decoders (a wrong type or a missing
field is a `MalformedFrame`, not a KeyError three layers later).

What it refuses to do: own a socket, retry, or pass on a number that could poison state. Prices and
quantities stay the exchange's decimal strings, but every ticker, trade and kline number is checked
by `domain.numbers` first (plain ASCII decimal, bounded, prices positive, a kline's low <= open,
close <= high): one bad field makes the whole frame a `MalformedFrame`, counted and skipped. Depth
levels are checked by the order book itself, which discards itself on a bad one (the hot path).
It does not require the `b`/`a` order ids of `@trade` (Binance removed them in 2024-06).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from tradefleet.domain import native_book, numbers
from tradefleet.domain.market import (
    BookTicker,
    DepthDiff,
    KlineEvent,
    MarketEvent,
    StreamStatus,
    Trade,
)
from tradefleet.errors import MalformedFrame

_Levels = list[tuple[str, str]]


_NO_RAW = msgspec.Raw(b"")


class _Envelope(msgspec.Struct):
    """Every frame we accept: a combined-stream event, a subscription ack, or a shutdown notice."""

    stream: str | None = None
    data: msgspec.Raw = _NO_RAW
    e: str | None = None  # a raw (unwrapped) event, e.g. serverShutdown
    event: msgspec.Raw = _NO_RAW  # WebSocket-API style wrapper {"event": {"e": …}}
    id: int | str | None = None
    result: Any = None
    error: Any = None


class _EventType(msgspec.Struct):
    e: str | None = None


class _Depth(msgspec.Struct, rename={"event_time": "E", "symbol": "s", "first": "U", "final": "u",
                                      "bids": "b", "asks": "a"}):  # fmt: skip
    event_time: int
    symbol: str
    first: int
    final: int
    bids: _Levels
    asks: _Levels


class _BookTicker(msgspec.Struct, rename={"update_id": "u", "symbol": "s", "bid": "b", "bid_qty": "B",
                                           "ask": "a", "ask_qty": "A"}):  # fmt: skip
    update_id: int
    symbol: str
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str


class _Trade(msgspec.Struct, rename={"event_time": "E", "symbol": "s", "trade_id": "t", "price": "p",
                                      "qty": "q", "trade_time": "T", "maker": "m"}):  # fmt: skip
    event_time: int
    symbol: str
    trade_id: int
    price: str
    qty: str
    trade_time: int
    maker: bool


class _AggTrade(msgspec.Struct, rename={"event_time": "E", "symbol": "s", "agg_id": "a", "price": "p",
                                         "qty": "q", "trade_time": "T", "maker": "m"}):  # fmt: skip
    event_time: int
    symbol: str
    agg_id: int
    price: str
    qty: str
    trade_time: int
    maker: bool


class _Kline(msgspec.Struct, rename={"open_time": "t", "close_time": "T", "interval": "i", "open": "o",
                                      "high": "h", "low": "l", "close": "c", "volume": "v", "trades": "n",
                                      "closed": "x"}):  # fmt: skip
    open_time: int
    close_time: int
    interval: str
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int
    closed: bool


class _KlineFrame(msgspec.Struct, rename={"event_time": "E", "symbol": "s", "k": "k"}):
    event_time: int
    symbol: str
    k: _Kline


_envelope = msgspec.json.Decoder(_Envelope)
_event_type = msgspec.json.Decoder(_EventType)
_depth = msgspec.json.Decoder(_Depth)
_ticker = msgspec.json.Decoder(_BookTicker)
_trade = msgspec.json.Decoder(_Trade)
_agg = msgspec.json.Decoder(_AggTrade)
_kline = msgspec.json.Decoder(_KlineFrame)


class _DepthFrame(msgspec.Struct):
    """A whole combined-stream depth frame in one typed pass (the hot path)."""

    stream: str
    data: _Depth


_depth_frame = msgspec.json.Decoder(_DepthFrame)
_STREAM_PREFIX = b'{"stream":"'

_DEPTH, _TICKER, _TRADE, _AGG, _KLINE, _OTHER = range(6)
SERVER_SHUTDOWN = StreamStatus("server_shutdown", "exchange announced a server shutdown")


def _route(stream: str) -> int:
    name = stream.partition("@")[2]
    if name.startswith("depth") and not name[5:6].isdigit():  # depth, depth@100ms; not depth5/10/20
        return _DEPTH
    if name == "bookTicker":
        return _TICKER
    if name == "trade":
        return _TRADE
    if name == "aggTrade":
        return _AGG
    if name.startswith("kline_"):
        return _KLINE
    return _OTHER


class BinanceSpot:
    """`VenueAdapter` for Binance Spot (and the simulator, which speaks the same protocol)."""

    name = "binance"

    def __init__(self, *, native: bool | None = None) -> None:
        self._routes: dict[str, int] = {}
        self._depth_streams: set[bytes] = set()  # stream names seen to carry depth diffs
        # Native: depth frames become one `ParsedDiff` each (levels stay in the frame's bytes until
        # the native book applies them); default: when the module is installed.
        use_native = native_book.AVAILABLE if native is None else native
        if use_native and not native_book.AVAILABLE:
            raise RuntimeError("native parsing asked for, but tradefleet_native is not installed")
        self.native = use_native
        # The module's own function, called straight from the hot path below.
        self._native_parse: Callable[[bytes], Any] | None = (
            native_book.parse_depth_function() if use_native else None
        )

    def stream_url(self, base_ws_url: str, market_id: str, kline_interval: str) -> str:
        base = base_ws_url.rstrip("/")
        for suffix in ("/ws", "/stream"):
            base = base.removesuffix(suffix)
        sym = market_id.lower()
        streams = [f"{sym}@depth@100ms", f"{sym}@bookTicker", f"{sym}@trade", f"{sym}@kline_{kline_interval}"]
        return f"{base}/stream?streams={'/'.join(streams)}"

    def parse(self, frame: str | bytes) -> MarketEvent | None:
        # Fast path for depth diffs, most of the bytes we receive: read the stream name from the
        # frame's prefix and decode the whole frame in one typed pass. Anything unexpected falls
        # through to the general path, which decides between event, ack, shutdown and malformed.
        if type(frame) is bytes and frame.startswith(_STREAM_PREFIX):
            end = frame.find(b'"', 11)
            if frame[11:end] in self._depth_streams:
                if self._native_parse is not None:
                    parsed = self._native_parse(frame)
                    if parsed is not None:
                        return parsed  # type: ignore[no-any-return]
                try:
                    d = _depth_frame.decode(frame).data
                except msgspec.DecodeError:
                    pass
                else:
                    return DepthDiff(d.symbol, d.event_time, d.first, d.final, d.bids, d.asks)
        try:
            env = _envelope.decode(frame)
        except msgspec.DecodeError as e:
            raise MalformedFrame(f"not a JSON object of the expected shape: {e}") from e
        if env.stream is not None and env.data:
            route = self._routes.get(env.stream)
            if route is None:
                route = self._routes[env.stream] = _route(env.stream)
                if route == _DEPTH:
                    self._depth_streams.add(env.stream.encode())
            try:
                return self._decode(route, env.stream, env.data)
            except msgspec.DecodeError as e:
                if self._is_shutdown(env.data):  # a notice inside a stream envelope
                    return SERVER_SHUTDOWN
                raise MalformedFrame(f"{env.stream}: {e}") from e
        if env.e == "serverShutdown":
            return SERVER_SHUTDOWN
        if env.event and self._is_shutdown(env.event):
            return SERVER_SHUTDOWN
        if env.id is not None and env.error is None:
            return None  # subscription ack: {"result": null, "id": 1}
        if env.error is not None:
            raise MalformedFrame(f"exchange error frame: {env.error!r}")
        raise MalformedFrame("frame is neither a stream event, an ack nor a shutdown notice")

    @staticmethod
    def _is_shutdown(raw: msgspec.Raw) -> bool:
        try:
            return _event_type.decode(raw).e == "serverShutdown"
        except msgspec.DecodeError:
            return False

    def _decode(self, route: int, stream: str, data: msgspec.Raw) -> MarketEvent | None:
        if route == _DEPTH:
            d = _depth.decode(data)
            return DepthDiff(d.symbol, d.event_time, d.first, d.final, d.bids, d.asks)
        if route == _TICKER:
            t = _ticker.decode(data)
            numbers.price(t.bid, "bookTicker bid")
            numbers.price(t.ask, "bookTicker ask")
            numbers.quantity(t.bid_qty, "bookTicker bid quantity")
            numbers.quantity(t.ask_qty, "bookTicker ask quantity")
            return BookTicker(t.symbol, t.update_id, t.bid, t.bid_qty, t.ask, t.ask_qty)
        if route == _TRADE:
            tr = _trade.decode(data)
            numbers.price(tr.price, "trade price")
            numbers.quantity(tr.qty, "trade quantity")
            return Trade(tr.symbol, tr.event_time, tr.trade_id, tr.price, tr.qty, tr.trade_time, tr.maker)
        if route == _AGG:
            ag = _agg.decode(data)
            numbers.price(ag.price, "aggTrade price")
            numbers.quantity(ag.qty, "aggTrade quantity")
            return Trade(ag.symbol, ag.event_time, ag.agg_id, ag.price, ag.qty, ag.trade_time, ag.maker)
        if route == _KLINE:
            kf = _kline.decode(data)
            k = kf.k
            numbers.check_candle(
                numbers.price(k.open, "kline open"), numbers.price(k.high, "kline high"),
                numbers.price(k.low, "kline low"), numbers.price(k.close, "kline close"),
                k.open_time, k.close_time,
            )  # fmt: skip
            numbers.quantity(k.volume, "kline volume")
            if k.trades < 0:
                raise MalformedFrame(f"kline trades {k.trades} is negative")
            return KlineEvent(
                kf.symbol, kf.event_time, k.interval, k.open_time, k.close_time,
                k.open, k.high, k.low, k.close, k.volume, k.trades, k.closed,
            )  # fmt: skip
        if self._is_shutdown(data):
            return SERVER_SHUTDOWN
        raise MalformedFrame(f"unknown stream {stream!r}")
