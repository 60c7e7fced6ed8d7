"""An exchange inside the bot's process: the simulator's own market, book and order matching, read
through the bot's `MarketRest` and `Execution` ports, on the caller's clock.

Why: `tradefleet backtest` runs the live engine (strategy, order manager, position, store) over
history as fast as the CPU allows, so it cannot wait on sockets. Everything that decides a fill is
the simulator's code, not a copy of it: `SimExchange` seeds the same book from the same seed as
`tradefleet demo`, `close_candle` re-centres it on each close exactly as the kline replay does, and
orders go through the simulator's `Trading.place` (LOT_SIZE/NOTIONAL filters, balances,
`take_liquidity`, commission rounding). Its executionReports are parsed by the bot's live user data
parser. So a backtest fills as the demo does, to the last digit.

What it refuses: sockets, signatures, rate limits and faults (the network is not what a backtest
measures; tests/orders and the demo cover it), and a clock of its own: time is the caller's
simulated clock, advanced by the backtest driver only when everything of the current instant is done.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradefleet.adapters.userdata import parse_execution_report
from tradefleet.domain.market import DepthSnapshot, KlineEvent
from tradefleet.domain.models import Candle, Order, OrderStatus, OrderUpdate
from tradefleet.errors import OrderRejected
from tradefleet.ports import SymbolRules
from tradefleet_sim.accounts import DEFAULT_API_KEY
from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.klines import Candle as SimCandle
from tradefleet_sim.klines import KlineSeries, load_csv
from tradefleet_sim.options import SimOptions
from tradefleet_sim.trading import BinanceError, Trading

ZERO = Decimal(0)


@functools.lru_cache(maxsize=8)
def _load_series(
    path: Path, mtime_ns: int, interval: str | None
) -> tuple[KlineSeries, tuple[KlineEvent, ...], list[int]]:
    """The simulator's own CSV reader, once per file version per process (a sweep runs hundreds
    of backtests over one file; everything here is immutable), with each candle's closing kline
    event as the stream would carry it and the open times for REST lookups."""
    series = load_csv(path, interval=interval)
    events = tuple(
        KlineEvent(
            symbol=series.symbol,
            event_time=c.close_time,
            interval=series.interval,
            open_time=c.open_time,
            close_time=c.close_time,
            open=str(c.open),
            high=str(c.high),
            low=str(c.low),
            close=str(c.close),
            volume=str(c.volume),
            trades=c.trades,
            closed=True,
        )
        for c in series.candles
    )
    return series, events, [c.open_time for c in series.candles]


class _OnClock:
    """The simulator's exchange as its order matching sees it, but reading the backtest's clock:
    order times, fills and executionReports are stamped with simulated time."""

    def __init__(self, sim: SimExchange, clock: Callable[[], int]) -> None:
        self._sim = sim
        self._clock = clock

    def now_ms(self) -> int:
        return self._clock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sim, name)


class _Reports:
    """Stands in for the simulator's user data streams: keeps the account's executionReports."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.mute = False  # the simulator's user-stream fault switch; never set in a backtest

    def publish(self, api_key: str, event: dict[str, Any]) -> None:
        self.events.append(event)


class InProcessExchange:
    """One symbol's simulated exchange; implements `MarketRest` and `Execution`.

    The driver calls `close_candle(i)` when candle `i` closes (before the bot sees it), so REST
    history then includes it and the book sits on its close, as on the simulator's replay."""

    unknown_settle_s = 0.0
    """An order is answered in the same call that places it: nothing is ever in flight."""

    def __init__(
        self,
        klines: Path,
        *,
        symbol: str,
        history: int,
        clock: Callable[[], int],
        interval: str | None = None,
        seed: int = 7,
        levels_per_side: int = 5,
    ) -> None:
        market_id = symbol.replace("/", "")
        series, self._events, self._open_times = _load_series(
            klines.resolve(), klines.stat().st_mtime_ns, interval
        )
        if series.symbol != market_id:
            raise ValueError(f"{klines} holds {series.symbol} candles, not {market_id}")
        # The simulator's exchange without its replay task: this driver is the replay. Its market
        # is seeded on the first traded candle's open, as the replay seeds it.
        self.sim = SimExchange(
            SimOptions(symbols=(market_id,), klines=None, seed=seed, levels_per_side=levels_per_side)
        )
        self.symbol = symbol
        self.market_id = market_id
        self.interval = series.interval
        self.candles: tuple[SimCandle, ...] = series.candles
        self.history = min(history, len(self.candles))
        self.closed = self.history  # candles [0, closed) are closed and served over REST
        self.market = self.sim.markets[self.market_id]
        self.generator = self.sim.generators[self.market_id]
        if self.history < len(self.candles):
            bids, asks = self.generator.seed(self.candles[self.history].open)
            self.market.seed(bids, asks, update_id=1_000_000)
        self.clock = clock
        self.trading = Trading(_OnClock(self.sim, clock))
        self.reports = _Reports()
        self.trading.streams = self.reports  # type: ignore[assignment]
        account = self.trading.accounts.get(DEFAULT_API_KEY)  # 100000 USDT, 0 BTC, as in the demo
        assert account is not None
        self.account = account
        self._recentre_on: Decimal | None = None
        self._queue: asyncio.Queue[OrderUpdate] = asyncio.Queue()

    # -- the driver's side -------------------------------------------------------------------

    def close_candle(self, index: int) -> KlineEvent:
        """Candle `index` closes: the book moves onto its close (the replay's re-centre), REST
        history includes it, and the closing kline event the stream would carry is returned."""
        if index != self.closed:
            raise ValueError(f"candle {index} closed out of order (next is {self.closed})")
        self._recentre_on = self.candles[index].close
        self.closed = index + 1
        return self._events[index]

    def _book_on_close(self) -> None:
        """Re-centre the book on the last close, as the replay does before sending it. Done when
        the book is next looked at rather than on every candle: nothing reads it in between, and a
        re-centre costs more than the rest of a candle's work."""
        if self._recentre_on is not None:
            bids, asks = self.generator.recentre(self.market.book, self._recentre_on)
            self.market.apply(bids, asks)
            self._recentre_on = None

    async def drain(self) -> None:
        """Wait until every order report handed out by `updates()` has been applied."""
        await self._queue.join()

    # -- MarketRest ----------------------------------------------------------------------------

    async def fetch_depth_snapshot(self, market_id: str, limit: int) -> DepthSnapshot:
        self._book_on_close()
        snap = self.market.snapshot(limit)
        return DepthSnapshot(
            market_id,
            int(snap["lastUpdateId"]),
            [(p, q) for p, q in snap["bids"]],
            [(p, q) for p, q in snap["asks"]],
        )

    async def fetch_candles(self, symbol: str, interval: str, since_ms: int, until_ms: int) -> list[Candle]:
        lo = bisect.bisect_left(self._open_times, since_ms, 0, self.closed)
        hi = bisect.bisect_left(self._open_times, until_ms, 0, self.closed)
        return [
            Candle(symbol, interval, c.open_time, c.close_time, c.open, c.high, c.low, c.close, c.volume)
            for c in self.candles[lo:hi]
        ]

    async def server_time_ms(self) -> int:
        return self.clock()

    async def fetch_symbol_rules(self, symbol: str) -> SymbolRules:
        r = self.market.rules
        return SymbolRules(
            market_id=r.symbol,
            base_asset=r.base,
            quote_asset=r.quote,
            step_size=r.step_size,
            min_qty=r.min_qty,
            max_qty=r.max_qty,
            tick_size=r.tick_size,
            min_notional=r.min_notional,
        )

    # -- Execution -----------------------------------------------------------------------------

    async def submit(self, order: Order) -> OrderUpdate:
        params = {
            "symbol": self.market_id,
            "side": order.side.value,
            "type": "MARKET",
            "newClientOrderId": order.client_order_id,
        }
        if order.quantity is not None:
            params["quantity"] = format(order.quantity, "f")
        if order.quote_amount is not None:
            params["quoteOrderQty"] = format(order.quote_amount, "f")
        self._book_on_close()
        first = len(self.reports.events)
        try:
            placed = self.trading.place(self.account, params)
        except BinanceError as e:
            raise OrderRejected(f"{e.msg} ({e.code})", code=e.code) from e
        for event in self.reports.events[first:]:
            # Balance events (outboundAccountPosition) follow each fill; the position is the bot's own.
            if event.get("e") == "executionReport":
                self._queue.put_nowait(parse_execution_report(event))
        return _summary(placed)

    async def query(self, order: Order) -> OrderUpdate | None:
        placed = self.trading.by_client_id.get(order.client_order_id)
        return _summary(placed[-1]) if placed else None

    async def open_orders(self, symbol: str) -> list[OrderUpdate]:
        return [_summary(o) for o in self.trading.orders if o.is_open]

    async def updates(self) -> AsyncIterator[OrderUpdate]:  # type: ignore[override]
        while True:
            update = await self._queue.get()
            try:
                yield update  # resumes when the consumer asks for the next one: this one is applied
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        return None


def _summary(o: Any) -> OrderUpdate:
    """What a REST answer (FULL) or a query says about a simulator order: its totals."""
    fee = sum((f.commission for f in o.fills), ZERO)
    return OrderUpdate(
        client_order_id=o.client_order_id,
        status=OrderStatus(o.status),
        event_time=o.update_time or o.time,
        exchange_order_id=str(o.order_id),
        filled_qty=o.executed_qty,
        cum_quote=o.cum_quote,
        fee=fee,
        fee_asset=o.fills[0].commission_asset if o.fills else None,
        exec_type="QUERY",
        source="rest",
    )
