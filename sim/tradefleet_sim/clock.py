"""The simulator's one clock: every time the exchange shows or checks is read from one `Clock`.

Why: a Binance client syncs its clock to `GET /api/v3/time` and then stamps signed requests with
that offset (python-binance `AsyncClient.create`, ccxt `adjustForTimeDifference`). If REST time,
stream `E`/`T`, `transactTime`, fills and the `-1021` timestamp check read different clocks, such a
client gets `-1021` on every signed call. So `SimExchange.clock` is the single source, and another
component (the shared simulated clock of the engine) can be injected in its place: anything with
`now_ms()`.

Clocks here:
- `WallClock`: real time (a live-like testnet; the default without a kline replay).
- `OffsetClock(start_ms)`: runs at real rate from a chosen instant (a testnet "in 2018": a
  client that syncs works, one that does not gets `-1021`, exactly as on Binance).
- `ManualClock(ms)`: moves only when told (`advance`, `set`); for tests.
- The kline replay's clock (`kline_replay.py`), which follows the replayed candles.

What it refuses: running backwards. `ManualClock.set` to an earlier time raises.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the epoch on the exchange's clock."""
        ...


class WallClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)


class OffsetClock:
    """Real-rate time that started at `start_ms` when this object was made."""

    def __init__(self, start_ms: int) -> None:
        self._offset = start_ms - int(time.time() * 1000)

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self._offset


class ManualClock:
    def __init__(self, start_ms: int) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("a clock does not run backwards")
        self._now += ms

    def set(self, ms: int) -> None:
        if ms < self._now:
            raise ValueError(f"a clock does not run backwards: {ms} < {self._now}")
        self._now = ms


def timestamp_problem(ts: int, window: int, clocks: list[int]) -> str | None:
    """Binance's `-1021` rule: a signed request's `timestamp` may be at most 1 s ahead of the
    server and at most `recvWindow` behind it. `clocks` are the instants it is checked against
    (accepted if any passes); returns Binance's message, or None when the timestamp is fine."""
    if any(ts < now + 1000 and now - ts <= window for now in clocks):
        return None
    if all(ts >= now + 1000 for now in clocks):
        return "Timestamp for this request was 1000ms ahead of the server's time."
    return "Timestamp for this request is outside of the recvWindow."
