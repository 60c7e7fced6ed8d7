"""Trade history and the statistics Binance derives from it: 24 h and rolling-window tickers,
the 5-minute average price, and the once-a-second ticker streams.

Why a module: clients call `ticker/24hr`, `ticker/price`, `avgPrice`, `trades`, `aggTrades` on start
and subscribe to `@ticker`, `@miniTicker`, `!miniTicker@arr`, `@ticker_<1h|4h|1d>` and `@avgPrice`;
all of them are views of the same trades (`TradeTape`, fed by `SimMarket.publish_trade`) read on
the exchange's one clock. Each public trade is its own aggregate trade here (`a` = `t`), so
`aggTrades` and `trades` agree with the `@trade`/`@aggTrade` streams.

What it refuses: inventing volume. With no trade inside a window the ticker shows zero volume and
the last traded price (or the book's mid price before any trade), like a quiet Binance market.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradefleet_sim.book import fmt

if TYPE_CHECKING:
    from tradefleet_sim.market import SimMarket

WINDOWS_MS = {"1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}
AVG_PRICE_MS = 300_000
DAY_MS = 86_400_000
TAPE_SIZE = 200_000


@dataclass(frozen=True)
class Trade:
    id: int
    price: Decimal
    qty: Decimal
    time: int
    buyer_is_maker: bool

    def rest(self) -> dict[str, Any]:
        """One `GET /api/v3/trades` row."""
        return {
            "id": self.id,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.price * self.qty),
            "time": self.time,
            "isBuyerMaker": self.buyer_is_maker,
            "isBestMatch": True,
        }

    def agg(self) -> dict[str, Any]:
        """One `GET /api/v3/aggTrades` row (one trade per aggregate here)."""
        return {
            "a": self.id,
            "p": fmt(self.price),
            "q": fmt(self.qty),
            "f": self.id,
            "l": self.id,
            "T": self.time,
            "m": self.buyer_is_maker,
            "M": True,
        }


class TradeTape:
    """The last `TAPE_SIZE` public trades of one market, oldest first."""

    def __init__(self) -> None:
        self.trades: deque[Trade] = deque(maxlen=TAPE_SIZE)

    def add(self, trade: Trade) -> None:
        self.trades.append(trade)

    def last(self) -> Trade | None:
        return self.trades[-1] if self.trades else None

    def window(self, start: int, end: int) -> list[Trade]:
        out: list[Trade] = []
        for t in reversed(self.trades):
            if t.time < start:
                break
            if t.time <= end:
                out.append(t)
        out.reverse()
        return out

    def select(
        self, *, limit: int, from_id: int | None = None, start: int | None = None, end: int | None = None
    ) -> list[Trade]:
        """Binance's rules: `fromId` -> the first `limit` from that id; a time range -> the first
        `limit` inside it; nothing -> the latest `limit`."""
        if from_id is not None:
            return [t for t in self.trades if t.id >= from_id][:limit]
        if start is not None or end is not None:
            lo = start if start is not None else (end or 0) - 3_600_000
            hi = end if end is not None else lo + 3_600_000
            return self.window(lo, hi)[:limit]
        return list(self.trades)[-limit:]


def _reference_price(market: SimMarket) -> Decimal:
    last = market.tape.last()
    if last is not None:
        return last.price
    bid, ask = market.best_bid(), market.best_ask()
    if bid and ask:
        return (bid[0] + ask[0]) / 2
    return bid[0] if bid else ask[0] if ask else Decimal(0)


def window_stats(market: SimMarket, now: int, window_ms: int) -> dict[str, Any]:
    """The rolling-window ticker (`GET /api/v3/ticker`) fields."""
    trades = market.tape.window(now - window_ms, now)
    last = _reference_price(market)
    volume = sum((t.qty for t in trades), Decimal(0))
    quote = sum((t.qty * t.price for t in trades), Decimal(0))
    open_ = trades[0].price if trades else last
    change = last - open_
    return {
        "symbol": market.symbol,
        "priceChange": fmt(change),
        "priceChangePercent": f"{(change / open_ * 100) if open_ else Decimal(0):.3f}",
        "weightedAvgPrice": fmt(quote / volume if volume else last),
        "openPrice": fmt(open_),
        "highPrice": fmt(max((t.price for t in trades), default=last)),
        "lowPrice": fmt(min((t.price for t in trades), default=last)),
        "lastPrice": fmt(last),
        "volume": fmt(volume),
        "quoteVolume": fmt(quote),
        "openTime": now - window_ms,
        "closeTime": now,
        "firstId": trades[0].id if trades else -1,
        "lastId": trades[-1].id if trades else -1,
        "count": len(trades),
    }


def day_stats(market: SimMarket, now: int) -> dict[str, Any]:
    """`GET /api/v3/ticker/24hr` (FULL): the rolling fields plus the top of book."""
    s = window_stats(market, now, DAY_MS)
    before = market.tape.window(0, now - DAY_MS - 1)
    bid, ask = market.best_bid(), market.best_ask()
    last = market.tape.last()
    return {
        "symbol": s["symbol"],
        "priceChange": s["priceChange"],
        "priceChangePercent": s["priceChangePercent"],
        "weightedAvgPrice": s["weightedAvgPrice"],
        "prevClosePrice": fmt(before[-1].price) if before else s["openPrice"],
        "lastPrice": s["lastPrice"],
        "lastQty": fmt(last.qty) if last else fmt(Decimal(0)),
        "bidPrice": fmt(bid[0]) if bid else fmt(Decimal(0)),
        "bidQty": fmt(bid[1]) if bid else fmt(Decimal(0)),
        "askPrice": fmt(ask[0]) if ask else fmt(Decimal(0)),
        "askQty": fmt(ask[1]) if ask else fmt(Decimal(0)),
        **{k: s[k] for k in ("openPrice", "highPrice", "lowPrice", "volume", "quoteVolume")},
        **{k: s[k] for k in ("openTime", "closeTime", "firstId", "lastId", "count")},
    }


def mini(stats: dict[str, Any]) -> dict[str, Any]:
    keys = ["symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume"]
    keys += ["openTime", "closeTime", "firstId", "lastId", "count"]
    return {k: stats[k] for k in keys}


def avg_price(market: SimMarket, now: int) -> dict[str, Any]:
    trades = market.tape.window(now - AVG_PRICE_MS, now)
    volume = sum((t.qty for t in trades), Decimal(0))
    price = (
        sum((t.qty * t.price for t in trades), Decimal(0)) / volume if volume else _reference_price(market)
    )
    last = trades[-1].time if trades else now
    return {"mins": 5, "price": fmt(price), "closeTime": last}


def book_ticker(market: SimMarket) -> dict[str, Any]:
    bid, ask = market.best_bid(), market.best_ask()
    zero = fmt(Decimal(0))
    return {
        "symbol": market.symbol,
        "bidPrice": fmt(bid[0]) if bid else zero,
        "bidQty": fmt(bid[1]) if bid else zero,
        "askPrice": fmt(ask[0]) if ask else zero,
        "askQty": fmt(ask[1]) if ask else zero,
    }


# -- streams ---------------------------------------------------------------------------------------
def ticker_event(market: SimMarket, now: int) -> dict[str, Any]:
    s = day_stats(market, now)
    return {
        "e": "24hrTicker",
        "E": now,
        "s": market.symbol,
        "p": s["priceChange"],
        "P": s["priceChangePercent"],
        "w": s["weightedAvgPrice"],
        "x": s["prevClosePrice"],
        "c": s["lastPrice"],
        "Q": s["lastQty"],
        "b": s["bidPrice"],
        "B": s["bidQty"],
        "a": s["askPrice"],
        "A": s["askQty"],
        "o": s["openPrice"],
        "h": s["highPrice"],
        "l": s["lowPrice"],
        "v": s["volume"],
        "q": s["quoteVolume"],
        "O": s["openTime"],
        "C": s["closeTime"],
        "F": s["firstId"],
        "L": s["lastId"],
        "n": s["count"],
    }


def mini_ticker_event(market: SimMarket, now: int) -> dict[str, Any]:
    s = window_stats(market, now, DAY_MS)
    return {
        "e": "24hrMiniTicker",
        "E": now,
        "s": market.symbol,
        "c": s["lastPrice"],
        "o": s["openPrice"],
        "h": s["highPrice"],
        "l": s["lowPrice"],
        "v": s["volume"],
        "q": s["quoteVolume"],
    }


def rolling_event(market: SimMarket, now: int, window: str) -> dict[str, Any]:
    s = window_stats(market, now, WINDOWS_MS[window])
    return {
        "e": f"{window}Ticker",
        "E": now,
        "s": market.symbol,
        "p": s["priceChange"],
        "P": s["priceChangePercent"],
        "o": s["openPrice"],
        "h": s["highPrice"],
        "l": s["lowPrice"],
        "c": s["lastPrice"],
        "w": s["weightedAvgPrice"],
        "v": s["volume"],
        "q": s["quoteVolume"],
        "O": s["openTime"],
        "C": s["closeTime"],
        "F": s["firstId"],
        "L": s["lastId"],
        "n": s["count"],
    }


def avg_price_event(market: SimMarket, now: int) -> dict[str, Any]:
    a = avg_price(market, now)
    return {"e": "avgPrice", "E": now, "s": market.symbol, "i": "5m", "w": a["price"], "T": a["closeTime"]}


def publish_tickers(markets: Iterable[SimMarket], now: int) -> None:
    """One round of every ticker stream that has subscribers (Binance sends them each second)."""
    markets = list(markets)
    if not markets:
        return
    hub = markets[0].hub
    for m in markets:
        p = m.stream_prefix
        if hub.has_subscribers(f"{p}@ticker"):
            hub.publish(f"{p}@ticker", ticker_event(m, now))
        if hub.has_subscribers(f"{p}@miniTicker"):
            hub.publish(f"{p}@miniTicker", mini_ticker_event(m, now))
        if hub.has_subscribers(f"{p}@avgPrice"):
            hub.publish(f"{p}@avgPrice", avg_price_event(m, now))
        for w in WINDOWS_MS:
            if hub.has_subscribers(f"{p}@ticker_{w}"):
                hub.publish(f"{p}@ticker_{w}", rolling_event(m, now, w))
    if hub.has_subscribers("!miniTicker@arr"):
        hub.publish("!miniTicker@arr", [mini_ticker_event(m, now) for m in markets])
    if hub.has_subscribers("!ticker@arr"):
        hub.publish("!ticker@arr", [ticker_event(m, now) for m in markets])
    for w in WINDOWS_MS:
        if hub.has_subscribers(f"!ticker_{w}@arr"):
            hub.publish(f"!ticker_{w}@arr", [rolling_event(m, now, w) for m in markets])


async def run_tickers(markets: dict[str, SimMarket], now_ms: Any, period_s: float = 1.0) -> None:
    """The once-a-second ticker producer (real seconds: a stream pace, not a market time)."""
    while True:
        await asyncio.sleep(period_s)
        publish_tickers(markets.values(), int(now_ms()))
