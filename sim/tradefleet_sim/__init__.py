"""tradefleet's exchange simulator: a local server speaking Binance Spot's public protocol.

It is the exchange for tests, the offline demo and benchmarks; unmodified ccxt/ccxt.pro pointed
at it must work, which is the proof that it speaks the protocol.

Map of the package (one concern per module):
- `options.SimOptions`   every knob, frozen, unknown keys rejected
- `book`, `generator`    the true order book and its random walk (BTCUSDT-like)
- `market.SimMarket`     one symbol: book + update ids + frames; `take_liquidity` for orders
- `klines`, `kline_replay` the real daily history over REST and its accelerated replay + clock
- `capture`              replay of real recorded Binance sessions (2021-10-12, 2021-08-14)
- `faults`               drop, gap, malformed, stall, slow/failing REST, serverShutdown
- `hub`                  per-client ordered fan-out of frames by stream name
- `rest`, `streams`, `control`  Binance REST, Binance websockets, the `/sim/` API
- `exchange.SimExchange` the state of one simulated exchange; `server.SimServer` serves it
- `cli`                  `tradefleet sim ...`

What it refuses to be: a matching engine for limit orders or an account system (another module,
`trading.py`, adds signed endpoints through `server.build_app`), or a source of invented prices
(candles and captures are real; only the generated book is synthetic).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradefleet_sim.exchange import SimExchange
    from tradefleet_sim.market import SimMarket
    from tradefleet_sim.options import SimOptions
    from tradefleet_sim.server import SimServer, build_app

__all__ = ["SimExchange", "SimMarket", "SimOptions", "SimServer", "build_app"]

# Loaded on first use (PEP 562): a paper bot imports `tradefleet_sim.matching` (the simulator's fill
# rules, which its paper fills share) and must not pull the server, aiohttp.web and the history in.
_WHERE = {
    "SimExchange": "tradefleet_sim.exchange",
    "SimMarket": "tradefleet_sim.market",
    "SimOptions": "tradefleet_sim.options",
    "SimServer": "tradefleet_sim.server",
    "build_app": "tradefleet_sim.server",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'tradefleet_sim' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
