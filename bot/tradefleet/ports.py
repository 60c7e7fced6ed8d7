"""The small Protocols at the edges of a bot. Each real edge (websocket feed, signed REST, SQLite,
MongoDB, Redis) implements one; tests swap in the exchange simulator or the embedded store, never
a mock of our own code.

Only signatures live here. Adding a method is fine; renaming one means updating every implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from tradefleet.domain.market import DepthSnapshot, MarketEvent
from tradefleet.domain.models import BotEvent, Candle, Order, OrderUpdate, Position, PriceSample, Signal
from tradefleet.domain.risk import Exposure, FleetEquity, Halt, RiskLimits


class VenueAdapter(Protocol):
    """One exchange's market-data dialect: builds the stream URL and parses frames. It owns no socket;
    the shared feed loop does (one connect/reconnect loop for every venue)."""

    name: str

    def stream_url(self, base_ws_url: str, market_id: str, kline_interval: str) -> str: ...

    def parse(self, frame: str | bytes) -> MarketEvent | None:
        """Return the event, None for frames to ignore (subscription acks), raise MalformedFrame."""
        ...


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """What exchangeInfo says about sizes: LOT_SIZE, MARKET_LOT_SIZE, MIN_NOTIONAL/NOTIONAL, PRICE_FILTER."""

    market_id: str
    base_asset: str
    quote_asset: str
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    tick_size: Decimal
    min_notional: Decimal


class MarketRest(Protocol):
    """Public REST: the depth snapshot for book sync, candle history for warm-up, symbol rules."""

    async def fetch_depth_snapshot(self, market_id: str, limit: int) -> DepthSnapshot: ...

    async def fetch_candles(self, symbol: str, interval: str, since_ms: int, until_ms: int) -> list[Candle]:
        """Closed candles with open_time in [since_ms, until_ms), paging as needed."""
        ...

    async def fetch_symbol_rules(self, symbol: str) -> SymbolRules: ...

    async def server_time_ms(self) -> int:
        """The exchange's clock (`GET /api/v3/time`): where "now" is for candles and warm-up."""
        ...

    async def close(self) -> None: ...


class Execution(Protocol):
    """Places and follows orders: paper (fills against the local book) or a real exchange (signed REST)."""

    async def submit(self, order: Order) -> OrderUpdate:
        """Send the order. Raises ExecutionUnknown when the outcome is unknown (query, never re-send),
        OrderRejected when refused, RateLimited/ExchangeUnavailable when it certainly did not leave."""
        ...

    async def query(self, order: Order) -> OrderUpdate | None:
        """The exchange's view of an order by client order id; None when the exchange never saw it."""
        ...

    async def open_orders(self, symbol: str) -> list[OrderUpdate]: ...

    def updates(self) -> AsyncIterator[OrderUpdate]:
        """Order reports as they arrive (user data stream, or the paper engine's own)."""
        ...

    async def close(self) -> None: ...


class Store(Protocol):
    """Where a bot's history lives. Every write is idempotent (unique keys), so a retry after an
    outage, a restart or a second replica never duplicates a record."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot be written."""
        ...

    async def write_prices(self, samples: Sequence[PriceSample]) -> None: ...

    async def write_candles(self, candles: Sequence[Candle]) -> None: ...

    async def insert_signal(self, signal: Signal) -> bool:
        """Store a signal; False if a signal with that id already exists (nothing changes then)."""
        ...

    async def update_signal_action(self, signal_id: str, action: str) -> None: ...

    async def insert_order(self, order: Order) -> bool:
        """Store a new order; False if that client order id already exists."""
        ...

    async def commit_order(self, signal: Signal, order: Order) -> bool:
        """The one durable write between a signal and its order: `signal` (with its action, replacing
        a stored one's) and the new PENDING `order`, atomically: after a crash or an error, both are
        stored or neither is. False, with nothing written, if that client order id already exists."""
        ...

    async def after_commit_order(self, signal: Signal, order: Order) -> None:
        """Whatever `commit_order` left for later (MongoDB: the signal's own document), called after
        it and before any other write about that signal or order. Idempotent; reads are right
        without it, so a crash before it loses nothing."""
        ...

    async def apply_order_update(self, update: OrderUpdate) -> Order | None:
        """Append the update to the order's history (idempotent) and move the order document to the
        newest state (never backwards). Returns the order as now stored, None for an unknown id."""
        ...

    async def get_order(self, client_order_id: str) -> Order | None: ...

    async def open_orders(self, bot: str) -> list[Order]:
        """Orders of this bot that are not final (PENDING, NEW, PARTIALLY_FILLED)."""
        ...

    async def order_updates(self, client_order_id: str) -> list[OrderUpdate]: ...

    async def orders(self, bot: str) -> list[Order]: ...

    async def signals(self, bot: str) -> list[Signal]: ...

    async def candles(self, symbol: str, interval: str) -> list[Candle]: ...

    async def prices(self, bot: str, limit: int = 1000) -> list[PriceSample]: ...

    async def save_position(self, position: Position) -> None: ...

    async def load_position(self, bot: str, symbol: str) -> Position | None: ...

    async def bots(self) -> list[str]:
        """Names of the bots with signals or orders in this store, sorted (for `tradefleet report`)."""
        ...

    async def insert_event(self, event: BotEvent) -> bool:
        """Store a notable event; False if an event with that id already exists (nothing changes)."""
        ...

    async def events(self, bot: str, limit: int = 100) -> list[BotEvent]:
        """The newest `limit` events of `bot`, oldest first."""
        ...


class Lease(Protocol):
    """Leadership of one bot among its replicas. Only the holder may submit orders, and only while
    `may_trade()` says so (checked right before each submit, with the fencing token attached)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def may_trade(self) -> bool:
        """True only while this replica holds the lease with a safety margin left (monotonic clock)."""
        ...

    async def confirm(self) -> bool:
        """Ask the coordinator (server side) whether this replica still holds the lease with its
        fencing token. Called right before an order leaves; False means do not submit."""
        ...

    def start_confirm(self) -> Awaitable[bool]:
        """`confirm()`, with its request already sent to the coordinator when this returns (not a
        coroutine: nothing waits for the next loop iteration), so its round trip overlaps whatever the
        caller does next, even work that blocks the loop (the order's commit). The awaitable's result
        is exactly `confirm()`'s, decided when the answer is read. Both implementations return an
        `asyncio.Future`, already done when no round trip is needed (not leading, or no coordinator)."""
        ...

    @property
    def fencing_token(self) -> int | None: ...

    @property
    def state(self) -> str:
        """leader | standby | unknown (cannot reach the coordinator)"""
        ...


class EventPublisher(Protocol):
    """Signals, order updates and status for other consumers (Redis Streams, or nothing)."""

    async def publish(self, kind: str, payload: dict[str, object]) -> None: ...

    async def set_status(self, status: dict[str, object]) -> None: ...

    async def close(self) -> None: ...


class RiskState(Protocol):
    """The fleet's kill switch and exposure table (`coord.risk_state`: Redis, or in-process).

    Every method is one attempt: an error propagates, and the caller treats it as "state unknown"
    (opens nothing) rather than retrying inside."""

    async def open(self) -> None:
        """Connect what the order path uses (the fleet reserve), so the first order does not pay for
        it. Never raises: a failure is the first call's to report."""
        ...

    async def halts(self) -> list[Halt]:
        """Every halt in force in the scope (the fleet's and each bot's)."""
        ...

    async def switch(self) -> tuple[list[Halt], RiskLimits]:
        """The halts in force and the fleet limits a TradingFleet set for the scope (one read)."""
        ...

    async def set_fleet_limits(self, limits: RiskLimits) -> None:
        """Replace the scope's fleet limits (the operator mirrors a TradingFleet's spec.limits)."""
        ...

    async def report_equity(self, bot: str, value: Decimal, ttl_ms: int) -> FleetEquity:
        """Publish `bot`'s equity (expires unless renewed); the fleet's summed equity and peak."""
        ...

    async def fleet_equity(self) -> FleetEquity: ...

    async def halt(self, h: Halt) -> Halt:
        """Set `h` unless a halt of the same scope is in force; returns the one in force."""
        ...

    async def resume(self, bot: str | None, by: str) -> Halt | None:
        """Lift the fleet's (bot None) or one bot's halt; returns the lifted one."""
        ...

    async def reserve(
        self, bot: str, quote_asset: str, amount: Decimal, limits: RiskLimits, ttl_ms: int
    ) -> str | None:
        """Atomically add `amount` to `bot`'s exposure if the fleet and quote-asset caps hold;
        None when reserved, else the denial reason."""
        ...

    def start_reserve(
        self, bot: str, quote_asset: str, amount: Decimal, limits: RiskLimits, ttl_ms: int
    ) -> Awaitable[str | None]:
        """`reserve`, started: its request is sent (or its answer known) when this returns, and the
        awaitable is its answer (an error included). Must be awaited: the reservation may be taken."""
        ...

    async def set_exposure(self, bot: str, quote_asset: str, amount: Decimal, ttl_ms: int) -> None:
        """Replace `bot`'s exposure (renew, release, re-register); 0 removes it."""
        ...

    async def exposure(self) -> dict[str, Exposure]: ...

    async def report_pnl(self, bot: str, pnl: Decimal, ttl_ms: int) -> None:
        """Publish `bot`'s P&L since 00:00 UTC (expires unless renewed: a dead bot stops counting)."""
        ...

    async def fleet_pnl(self) -> dict[str, Decimal]:
        """Every live bot's reported P&L today."""
        ...

    async def close(self) -> None: ...
