"""Everything that configures one simulator, as one frozen, typed record.

The CLI, the pytest plugin and the demo all build a `SimOptions`; `SimOptions.from_mapping`
rejects unknown keys so a typo in a test's `make_sim(sped=5)` fails loudly instead of silently
running with the default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradefleet_sim.klines import DEFAULT_KLINES

CAPTURES = ("2021-10-12", "2021-08-14")


@dataclass(frozen=True)
class SimOptions:
    symbols: tuple[str, ...] = ("BTCUSDT",)
    """Markets with a generated random-walk book."""
    klines: Path | None = DEFAULT_KLINES
    """CSV of candles (symbol,timeframe,open_time,...); None serves no klines."""
    kline_interval: str | None = None
    """Serve the CSV's candles under another interval label (e.g. `1m`), times rebuilt."""
    history: int = 260
    """Closed candles visible over REST before the replay starts."""
    speed: float = 200.0
    """Replayed candles per second."""
    loop: bool = False
    """After the last candle, replay the series mirrored in time, then forwards, for ever."""
    progress_frames: int = 2
    """In-progress (x=false) frames sent before each candle's closing frame."""
    autostart: bool = False
    """Start the kline/capture replay at once instead of on the first subscriber."""
    depth_rate: float = 10.0
    """Generated depth diffs per second per symbol; 0 means as fast as clients can take them."""
    levels_per_side: int = 1000
    changes_per_side: int = 20
    trade_probability: float = 0.3
    """Chance that a generated diff is followed by a trade at the touch."""
    replay_capture: str | None = None
    """Replay a recorded Binance session: `2021-10-12` or `2021-08-14`."""
    capture_speed: float = 1.0
    """Time compression of the capture replay (1 = as recorded; 0 = no pauses)."""
    fault_every: float | None = None
    rest_faults_on_orders: bool = True
    """Whether REST faults (slow_rest, fail_rest) also hit the signed trading endpoints. The demo turns
    this off so its scheduled faults test market data while orders fill on their own candle (order-path
    faults have their own controls: `POST /sim/orders/faults`)."""
    """Inject a random fault every this many seconds."""
    seed: int = 7
    ping_interval: float = 20.0
    """Server websocket ping period, like Binance's 20 s."""
    pong_timeout: float = 60.0
    """Close (1008) a market-data connection that sent no pong for this long (Binance: a minute)."""
    max_connection_s: float | None = None
    """Close (1001) every market-data connection at this age; 86400 is Binance's 24-hour cut."""
    send_queue: int = 100_000
    """Frames buffered per websocket client before a slow client is disconnected."""
    weight_limit: int = 6000
    """REQUEST_WEIGHT per minute advertised in exchangeInfo and counted in X-MBX-USED-WEIGHT-1M."""
    enforce_limits: bool = True
    """Refuse what Binance refuses: weight over `weight_limit` a minute (429, then 418 bans), more
    than 100 orders per 10 s, more than 5 websocket messages a second. False: count, send the
    headers, never refuse (for benchmarks and tests that flood on purpose)."""
    wall_timestamps: bool | None = None
    """Also accept signed requests whose `timestamp` is within `recvWindow` of the wall clock (not
    only of the exchange clock). None = only while the default kline-replay clock runs: it races
    ahead of real time (`speed` candles a second), so no client can stay inside a recvWindow of it
    and clients stamping with their own clock (our bot) must still be able to trade."""
    record_arrivals: bool = False
    """Keep, per client order id, the CLOCK_MONOTONIC readings (ns) at which its first order request
    reached the simulator (read from its socket: `arrivals.ArrivalStamps` on the plain-TCP listener)
    and its REST edge (`rest.binance_edge`, after aiohttp's parsing and routing, before the weight
    checks), for `GET /sim/orders/arrivals`; with it, per closing kline frame of the replay, the
    readings just before its write to a client's socket and just after (`Hub.sent_at`, `"closes"`;
    None after when the write left bytes in the buffer). The clock is
    the host's, so a process on the same machine can subtract its own readings
    (`python -m bench.tick_to_order`). Off: no clock is read."""
    startup_faults: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    """Fault requests (same JSON as `POST /sim/faults`) applied when the server starts."""

    def __post_init__(self) -> None:
        if not self.symbols and not self.replay_capture:
            raise ValueError("no markets: give symbols or replay_capture")
        for s in self.symbols:
            if not s.isalnum() or s.upper() != s:
                raise ValueError(f"symbol {s!r} must be upper-case letters/digits, like BTCUSDT")
        if self.history < 1:
            raise ValueError("history must be >= 1")
        if self.speed <= 0:
            raise ValueError("speed must be > 0 candles per second")
        if self.depth_rate < 0:
            raise ValueError("depth_rate must be >= 0 (0 = as fast as possible)")
        if self.progress_frames < 0:
            raise ValueError("progress_frames must be >= 0")
        if self.replay_capture is not None and self.replay_capture.removeprefix("capture_") not in CAPTURES:
            raise ValueError(f"unknown capture {self.replay_capture!r}; known: {', '.join(CAPTURES)}")
        if self.pong_timeout <= 0 or self.ping_interval <= 0:
            raise ValueError("ping_interval and pong_timeout must be > 0 seconds")
        if self.max_connection_s is not None and self.max_connection_s <= 0:
            raise ValueError("max_connection_s must be > 0 seconds (None: no lifetime)")
        if self.weight_limit < 1:
            raise ValueError("weight_limit must be >= 1")
        if self.fault_every is not None and self.fault_every <= 0:
            raise ValueError("fault_every must be > 0 seconds")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SimOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown simulator option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        v = dict(values)
        if "symbols" in v and isinstance(v["symbols"], str):
            v["symbols"] = tuple(s.strip() for s in v["symbols"].split(",") if s.strip())
        elif "symbols" in v:
            v["symbols"] = tuple(v["symbols"])
        if isinstance(v.get("klines"), str):
            v["klines"] = Path(v["klines"])
        if "startup_faults" in v:
            v["startup_faults"] = tuple(v["startup_faults"])
        return cls(**v)
