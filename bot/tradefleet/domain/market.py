"""Market-data events as the exchange adapters hand them to the engine.

Venue-neutral: a Binance, OKX or Bybit adapter parses its own frames into these. Depth levels stay
as the exchange's decimal strings; the order book decides how to key them (exactly, never as floats).
"""

from __future__ import annotations

from dataclasses import dataclass

Level = tuple[str, str]  # (price, quantity) exactly as the exchange sent them


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    symbol: str
    last_update_id: int
    bids: list[Level]
    asks: list[Level]


@dataclass(frozen=True, slots=True)
class DepthDiff:
    symbol: str
    event_time: int  # ms
    first_update_id: int  # Binance U
    final_update_id: int  # Binance u
    bids: list[Level]
    asks: list[Level]


@dataclass(frozen=True, slots=True)
class BookTicker:
    symbol: str
    update_id: int
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str


@dataclass(frozen=True, slots=True)
class Trade:
    symbol: str
    event_time: int
    trade_id: int
    price: str
    qty: str
    trade_time: int
    buyer_is_maker: bool


@dataclass(frozen=True, slots=True)
class KlineEvent:
    symbol: str
    event_time: int
    interval: str
    open_time: int
    close_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int
    closed: bool  # Binance "x": the exchange closed this candle


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """Emitted by the feed loop itself, not parsed from a frame: connected, disconnected, stale,
    server_shutdown. The engine resyncs the book on every (re)connect."""

    kind: str
    detail: str = ""


MarketEvent = DepthDiff | BookTicker | Trade | KlineEvent | StreamStatus
