"""Domain records shared by every layer.

Money and prices are `Decimal` (exchanges send decimal strings; binary floats would change
their value). Times are integer milliseconds since the epoch, UTC, as Binance sends them.
Records are frozen: a change is a new record, which keeps the store's history honest.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(enum.StrEnum):
    """Binance's order states plus our own PENDING (stored, not yet acknowledged)."""

    PENDING = "PENDING"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


@dataclass(frozen=True, slots=True)
class BotId:
    """Identifies one bot: a name (the TradingBot), an exchange and a unified symbol (BTC/USDT)."""

    name: str
    exchange: str
    symbol: str

    @property
    def market_id(self) -> str:
        """Exchange-native symbol, e.g. BTCUSDT for Binance."""
        return self.symbol.replace("/", "").upper()


@dataclass(frozen=True, slots=True)
class PriceSample:
    """Top of book at one moment; what the price recorder stores."""

    bot: str
    exchange: str
    symbol: str
    exchange_ts: int  # ms, event time from the exchange
    local_ts: int  # ms, when we processed it
    update_id: int  # book update id this sample reflects (part of the idempotency key)
    bid: Decimal
    bid_qty: Decimal
    ask: Decimal
    ask_qty: Decimal

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class Candle:
    symbol: str
    interval: str
    open_time: int  # ms
    close_time: int  # ms (Binance: open_time + interval - 1)
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool = True
    trades: int = 0


SIGNAL_PENDING = "pending"
"""A stored signal's action before anything was decided about it."""


@dataclass(frozen=True, slots=True)
class Signal:
    """A crossover decision. Stored and logged whether or not an order follows."""

    signal_id: str
    bot: str
    exchange: str
    symbol: str
    interval: str
    side: Side
    candle_open_time: int
    candle_close_time: int
    close: Decimal
    sma_short: Decimal
    sma_long: Decimal
    created_at: int  # ms, local
    # What the bot did about it: "order" when an order was placed, otherwise why not
    # (e.g. "already_long", "flat_cannot_sell", "below_min_notional", "standby", "paused").
    action: str = SIGNAL_PENDING


@dataclass(frozen=True, slots=True)
class Order:
    """Latest known state of one order. Created PENDING and stored before the request leaves."""

    client_order_id: str
    bot: str
    exchange: str
    symbol: str
    side: Side
    order_type: str  # "MARKET"
    signal_id: str
    status: OrderStatus
    created_at: int
    updated_at: int
    quantity: Decimal | None = None  # base quantity (SELL) ...
    quote_amount: Decimal | None = None  # ... or quote amount (BUY, quoteOrderQty)
    exchange_order_id: str | None = None
    filled_qty: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    fee_asset: str | None = None
    fencing_token: int | None = None
    reason: str | None = None

    @property
    def avg_price(self) -> Decimal | None:
        return self.cum_quote / self.filled_qty if self.filled_qty else None


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One report from the exchange (or the paper engine) about an order. Quantities are cumulative,
    so applying the same update twice, or an older one after a newer one, changes nothing."""

    client_order_id: str
    status: OrderStatus
    event_time: int
    exchange_order_id: str | None = None
    filled_qty: Decimal = Decimal(0)  # cumulative
    cum_quote: Decimal = Decimal(0)  # cumulative
    last_qty: Decimal = Decimal(0)
    last_price: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)  # this execution's commission
    fee_asset: str | None = None
    trade_id: int | None = None
    exec_type: str = "NEW"  # NEW, TRADE, CANCELED, REJECTED, EXPIRED, QUERY (from a REST query)
    reason: str | None = None
    source: str = "stream"  # stream | rest | paper


@dataclass(frozen=True, slots=True)
class Position:
    """Spot, long-only: a quantity of the base asset and what it cost."""

    bot: str
    symbol: str
    qty: Decimal = Decimal(0)
    cost_quote: Decimal = Decimal(0)  # quote spent on the open quantity, fees included
    realized_pnl_quote: Decimal = Decimal(0)
    updated_at: int = 0

    @property
    def is_flat(self) -> bool:
        return self.qty == 0


class EventKind(enum.StrEnum):
    """What a stored event records (#11, #16). Notable facts only, never market data."""

    POSITION_MISMATCH = "position_mismatch"
    """The stored position and the exchange account disagree by a lot step or more (or by new numbers)."""
    POSITION_MATCH = "position_match"
    """They agree again: the end of a mismatch episode."""
    HALT = "halt"
    """The bot's risk gate learnt of a kill switch or limit halt in force for it."""
    RESUME = "resume"
    """The halt it knew of was lifted."""


@dataclass(frozen=True, slots=True)
class BotEvent:
    """A notable fact a bot observed, kept in the store's `events` table/collection.

    `event_id` is the natural key (a repeated write is a no-op): for a halt or a resume it is a function
    of the bot and the halt id, so every replica and every restart of the bot records it once; for a
    position episode it includes when the episode began. `fields` are exact strings (quantities as the
    Decimal's text), so both backends store them as they are."""

    event_id: str
    bot: str
    kind: EventKind
    at_ms: int
    summary: str
    fields: dict[str, str]
