"""The Store the order manager sees, built on the buffered writer.

Two rules meet here:
- "An order is stored before the request leaves": `insert_order` goes straight to the store and waits
  until the PENDING record is durable, retrying through an outage. While the store is down no order
  is sent at all — signals wait in the order manager's queue — because an order we could not record
  is an order a restart could not reconcile. It keeps the store's answer (False: that client order
  id already exists), which the order manager uses to follow an order another run stored first.
- Everything else that money depends on (signals, signal actions, order updates, positions) goes
  through the buffered writer: awaited, never dropped, written strictly in order, and queued rather
  than blocking while the store is down. `apply_order_update` therefore returns None, and the order
  manager applies the update to its in-memory order with the same forward-only merge the store uses.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from tradefleet.domain.models import Candle, Order, OrderUpdate, Position, PriceSample, Signal
from tradefleet.errors import TemporaryError
from tradefleet.logs import log_event
from tradefleet.store.buffered import BufferedStore

log = logging.getLogger("tradefleet.order_store")


class OrderStoreView:
    def __init__(self, buffered: BufferedStore, *, retry_max_s: float = 5.0) -> None:
        self.buffered = buffered
        self.store = buffered.store
        self.retry_max_s = retry_max_s

    async def insert_order(self, order: Order) -> bool:
        delay = 0.05
        while True:
            try:
                started = asyncio.get_running_loop().time()
                inserted = await self.store.insert_order(order)
                self.buffered.metrics.latency.labels("store_write").observe(
                    asyncio.get_running_loop().time() - started
                )
                return inserted
            except TemporaryError as e:
                self.buffered.metrics.store_failures.labels("order").inc()
                self.buffered.metrics.store_retries.inc()
                wait = min(e.retry_after or delay * (0.5 + random.random()), self.retry_max_s)
                log_event(
                    log,
                    "order_store_wait",
                    logging.WARNING,
                    client_order_id=order.client_order_id,
                    error=str(e),
                    wait_s=round(wait, 3),
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.retry_max_s)

    async def insert_signal(self, signal: Signal) -> bool:
        return await self.buffered.record_signal(signal)

    async def update_signal_action(self, signal_id: str, action: str) -> None:
        await self.buffered.record_signal_action(signal_id, action)

    async def apply_order_update(self, update: OrderUpdate) -> Order | None:
        await self.buffered.record_update(update)
        return None

    async def save_position(self, position: Position) -> None:
        await self.buffered.record_position(position)

    # -- the rest of the Store protocol passes through ------------------------------------------

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.buffered.close()

    async def ping(self) -> None:
        await self.store.ping()

    async def write_prices(self, samples: Sequence[PriceSample]) -> None:
        for sample in samples:
            self.buffered.enqueue_price(sample)

    async def write_candles(self, candles: Sequence[Candle]) -> None:
        for candle in candles:
            self.buffered.enqueue_candle(candle)

    async def get_order(self, client_order_id: str) -> Order | None:
        return await self.store.get_order(client_order_id)

    async def open_orders(self, bot: str) -> list[Order]:
        return await self.store.open_orders(bot)

    async def order_updates(self, client_order_id: str) -> list[OrderUpdate]:
        return await self.store.order_updates(client_order_id)

    async def orders(self, bot: str) -> list[Order]:
        return await self.store.orders(bot)

    async def signals(self, bot: str) -> list[Signal]:
        return await self.store.signals(bot)

    async def candles(self, symbol: str, interval: str) -> list[Candle]:
        return await self.store.candles(symbol, interval)

    async def prices(self, bot: str, limit: int = 1000) -> list[PriceSample]:
        return await self.store.prices(bot, limit)

    async def load_position(self, bot: str, symbol: str) -> Position | None:
        return await self.store.load_position(bot, symbol)
