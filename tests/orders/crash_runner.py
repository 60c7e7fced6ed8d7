"""A separate bot process for the kill -9 tests: a real OrderManager with a real SQLite store and
ccxt against the simulator. `--crash-at after_store|after_send` makes it SIGKILL itself at that point.

    python -m tests.orders.crash_runner --rest-url URL --ws-api-url URL (--store PATH | --store-url URL)
        [--buy N] [--crash-at POINT]

It recovers first (as every bot start does), optionally submits one BUY signal, waits until every
order it knows is final and prints one JSON line:
{"orders": {...}, "signals": {signal id: action}, "position_qty": "..."}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from decimal import Decimal

from tradefleet.adapters.binance_exec import BinanceExecution
from tradefleet.adapters.credentials import Credentials
from tradefleet.config import BotConfig
from tradefleet.coord.lease import LocalLease
from tradefleet.domain.models import Side, Signal
from tradefleet.engine.order_manager import OrderManager
from tradefleet.metrics import BotMetrics
from tradefleet.ports import SymbolRules
from tradefleet.store import open_store
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET


async def main(args: argparse.Namespace) -> int:
    config = BotConfig(name="crash-bot", symbol="BTC/USDT", interval="1m", short_window=2, long_window=3,
                       quote_amount=Decimal("100"), mode="testnet", rest_url=args.rest_url,
                       ws_api_url=args.ws_api_url)  # fmt: skip
    store = open_store(args.store_url or f"sqlite:///{args.store}")
    await store.open()
    lease = LocalLease("crash-runner")
    await lease.start()
    execution = BinanceExecution(config, Credentials(DEFAULT_API_KEY, DEFAULT_API_SECRET), recv_window_ms=2000,
                                 timeout_ms=3000)  # fmt: skip
    rules = SymbolRules("BTCUSDT", "BTC", "USDT", Decimal("0.00001"), Decimal("0.00001"), Decimal("9000"),
                        Decimal("0.01"), Decimal("5"))  # fmt: skip
    manager = OrderManager(config=config, store=store, execution=execution, lease=lease, rules=rules,
                           metrics=BotMetrics(), reconcile_interval_s=0.5, crash_at=args.crash_at)  # fmt: skip
    await manager.recover()
    task = asyncio.get_running_loop().create_task(manager.run())
    if args.buy is not None:
        t = 1_700_000_000_000 + args.buy * 60_000
        manager.submit_signal(Signal(
            signal_id=f"crash-bot:1m:{t}:BUY", bot=config.name, exchange="binance", symbol=config.symbol,
            interval="1m", side=Side.BUY, candle_open_time=t, candle_close_time=t + 59_999, close=Decimal(0),
            sma_short=Decimal(1), sma_long=Decimal(1), created_at=t + 60_000,
        ))  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        orders = await store.orders(config.name)
        if orders and all(o.status.is_final for o in orders) and manager._signals.empty():
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    orders = await store.orders(config.name)
    print(json.dumps({
        "orders": {o.client_order_id: {"status": o.status.value, "filled_qty": str(o.filled_qty),
                                       "fee": str(o.fee)} for o in orders},
        "signals": {s.signal_id: s.action for s in await store.signals(config.name)},
        "position_qty": str(manager.position.qty),
    }), flush=True)  # fmt: skip
    await execution.close()
    await store.close()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rest-url", required=True)
    p.add_argument("--ws-api-url", required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="SQLite file")
    where.add_argument("--store-url", help="any store URL (MongoDB: with its database in the path)")
    p.add_argument("--buy", type=int)
    p.add_argument("--crash-at", choices=["after_store", "after_send"])
    sys.exit(asyncio.run(main(p.parse_args())))
