"""`SimMarket`: one symbol's true book, its update-id sequence and the frames that describe it.

Public surface (the orders module and tests rely on it):

- `market.symbol`, `market.rules` (`SymbolRules`), `market.book` (`Book`: Decimal price -> qty),
  `market.update_id` (the book's `lastUpdateId`).
- `best_bid()` / `best_ask()` -> `(price, qty)` or None.
- `levels(side, depth)` -> best-first `[(price, qty)]` of the side an order of `side` takes
  from (BUY takes asks, SELL takes bids).
- `take_liquidity(side, base_qty=None, quote_qty=None)` -> fills `[(price, qty)]`: walks the
  book like a MARKET order (exactly one of the two amounts; quote amounts buy whole steps),
  removes the liquidity, and publishes the resulting depth diff, bookTicker and one
  trade/aggTrade per price level. An empty list means nothing could be filled. On a replayed
  capture market it still works but its ids then overlap the recorded ones still to come, so
  trade on generated markets.
- `apply(bids, asks)` applies a diff and publishes it (used by producers).

Every change goes through `apply`, which gives each diff `U = previous u + 1`, so the stream
a client sees is gap-free unless a gap fault deliberately withholds diffs (the book still
changes; the client must notice and resync). It refuses to publish a crossed book: a producer
bug raises instead of teaching a bot wrong lessons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Literal

from tradefleet_sim.book import Book, Level, Side, fmt, wire_levels
from tradefleet_sim.hub import Hub
from tradefleet_sim.matching import walk_market
from tradefleet_sim.rules import SymbolRules
from tradefleet_sim.tickers import Trade, TradeTape

Source = Literal["generated", "capture"]
DIFF_STREAMS = ("depth@100ms", "depth", "depth@1000ms")


class SimMarket:
    def __init__(
        self, symbol: str, rules: SymbolRules, hub: Hub, clock: Callable[[], int], *, source: Source
    ) -> None:
        self.symbol = symbol
        self.stream_prefix = symbol.lower()
        self.rules = rules
        self.book = Book()
        self.update_id = 0
        self.source = source
        self.hub = hub
        self.clock = clock
        self.trade_id = 0
        self.agg_id = 0
        self.tape = TradeTape()  # public trades, for trades/aggTrades/tickers
        # Hooks of the resting-order matcher (`orders_limit.py`): a generated trade first fills
        # resting orders it reaches (returns the quantity left), and every book change is checked
        # for levels that cross a resting order.
        self.on_flow_trade: Callable[[Decimal, Decimal, bool], Decimal] | None = None
        self.on_change: Callable[[], None] | None = None
        self.gap_pending = 0  # diffs to apply without sending (fault)
        self.diffs_sent = 0
        self.diffs_withheld = 0
        self._last_top: tuple[Level | None, Level | None] = (None, None)

    # -- reads -------------------------------------------------------------------------------
    def best_bid(self) -> Level | None:
        return self.book.bids.best()

    def best_ask(self) -> Level | None:
        return self.book.asks.best()

    def levels(self, side: Side, depth: int | None = None) -> list[Level]:
        return (self.book.asks if side == "BUY" else self.book.bids).levels(depth)

    def snapshot(self, limit: int) -> dict[str, Any]:
        """The `GET /api/v3/depth` body."""
        return {
            "lastUpdateId": self.update_id,
            "bids": wire_levels(self.book.bids.levels(limit)),
            "asks": wire_levels(self.book.asks.levels(limit)),
        }

    # -- writes ------------------------------------------------------------------------------
    def seed(self, bids: Iterable[Level], asks: Iterable[Level], update_id: int) -> None:
        """Start from a full book (generated, or a recorded REST snapshot); nothing published."""
        self.book.replace(bids, asks)
        self.update_id = update_id
        self._last_top = (self.best_bid(), self.best_ask())

    def apply(
        self,
        bids: list[Level],
        asks: list[Level],
        *,
        first: int | None = None,
        last: int | None = None,
        event_time: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Apply one diff and publish it on `@depth` and `@depth@100ms`, then `@bookTicker` if
        the top changed. `first`/`last` (U/u) default to the next ids; a recorded `payload` is
        sent unchanged."""
        self.book.apply(bids, asks)
        if self.book.crossed():
            raise AssertionError(
                f"{self.symbol}: producer crossed the book: {self.best_bid()} >= {self.best_ask()}"
            )
        U = self.update_id + 1 if first is None else first
        u = self.update_id + max(1, len(bids) + len(asks)) if last is None else last
        self.update_id = u
        if self.gap_pending > 0:
            self.gap_pending -= 1
            self.diffs_withheld += 1
            if self.on_change is not None:
                self.on_change()
            return
        if payload is None and (self._has_depth_subscribers()):
            payload = {
                "e": "depthUpdate",
                "E": self.clock() if event_time is None else event_time,
                "s": self.symbol,
                "U": U,
                "u": u,
                "b": wire_levels(bids),
                "a": wire_levels(asks),
            }
        if payload is not None:
            # `@depth` and `@depth@1000ms` are the same stream on Binance (1 s updates); here every
            # diff goes to all three names, which keeps U = previous u + 1 on each of them.
            for name in DIFF_STREAMS:
                self.hub.publish(f"{self.stream_prefix}@{name}", payload)
        self.diffs_sent += 1
        self._publish_partial_depth()
        if self.source == "generated":  # a capture carries its own recorded bookTicker frames
            self.publish_book_ticker()
        if self.on_change is not None:
            self.on_change()

    def _publish_partial_depth(self) -> None:
        """`<symbol>@depth<5|10|20>[@100ms]`: the top levels after each diff, REST-shaped."""
        for n in (5, 10, 20):
            for suffix in ("", "@100ms", "@1000ms"):
                stream = f"{self.stream_prefix}@depth{n}{suffix}"
                if self.hub.has_subscribers(stream):
                    self.hub.publish(stream, self.snapshot(n))

    def _has_depth_subscribers(self) -> bool:
        p = self.stream_prefix
        return any(self.hub.has_subscribers(f"{p}@{name}") for name in DIFF_STREAMS)

    def publish_book_ticker(self, *, force: bool = False) -> None:
        top = (self.best_bid(), self.best_ask())
        if top == self._last_top and not force:
            return
        self._last_top = top
        stream = f"{self.stream_prefix}@bookTicker"
        bid, ask = top
        if not self.hub.has_subscribers(stream) or bid is None or ask is None:
            return
        (bp, bq), (ap, aq) = bid, ask
        self.hub.publish(
            stream,
            {"u": self.update_id, "s": self.symbol, "b": fmt(bp), "B": fmt(bq), "a": fmt(ap), "A": fmt(aq)},
        )

    def flow_trade(self, price: Decimal, qty: Decimal, *, buyer_is_maker: bool) -> None:
        """A trade of the simulated market's own flow: resting user orders it reaches fill first."""
        left = self.on_flow_trade(price, qty, buyer_is_maker) if self.on_flow_trade is not None else qty
        if left > 0:
            self.publish_trade(price, left, buyer_is_maker=buyer_is_maker)

    def publish_trade(self, price: Decimal, qty: Decimal, *, buyer_is_maker: bool) -> None:
        now = self.clock()
        self.trade_id += 1
        self.agg_id = self.trade_id  # one trade per aggregate: `a` equals `t`
        self.tape.add(Trade(self.trade_id, price, qty, now, buyer_is_maker))
        p = self.stream_prefix
        if self.hub.has_subscribers(f"{p}@trade"):
            self.hub.publish(
                f"{p}@trade",
                {
                    "e": "trade",
                    "E": now,
                    "s": self.symbol,
                    "t": self.trade_id,
                    "p": fmt(price),
                    "q": fmt(qty),
                    "T": now,
                    "m": buyer_is_maker,
                    "M": True,
                },
            )
        if self.hub.has_subscribers(f"{p}@aggTrade"):
            self.hub.publish(
                f"{p}@aggTrade",
                {
                    "e": "aggTrade",
                    "E": now,
                    "s": self.symbol,
                    "a": self.agg_id,
                    "p": fmt(price),
                    "q": fmt(qty),
                    "f": self.trade_id,
                    "l": self.trade_id,
                    "T": now,
                    "m": buyer_is_maker,
                    "M": True,
                },
            )

    def take_liquidity(
        self, side: Side, base_qty: Decimal | None = None, quote_qty: Decimal | None = None
    ) -> list[Level]:
        """Fill a market order of `side` against the book; see the module docstring."""
        if (base_qty is None) == (quote_qty is None):
            raise ValueError("give exactly one of base_qty or quote_qty")
        if (base_qty is not None and base_qty <= 0) or (quote_qty is not None and quote_qty <= 0):
            raise ValueError("order amount must be positive")
        fills = walk_market(
            self.levels(side), base_qty=base_qty, quote_qty=quote_qty, step=self.rules.step_size
        )
        if not fills:
            return []
        book_side = self.book.asks if side == "BUY" else self.book.bids
        changes = [(p, book_side.qty[p] - q) for p, q in fills]
        if side == "BUY":
            self.apply([], changes)
        else:
            self.apply(changes, [])
        for p, q in fills:
            self.publish_trade(p, q, buyer_is_maker=side == "SELL")
        return fills
