"""One clock for a bot: the wall clock live, a simulated clock in the demo, tests and backtests.

Why: decisions that read the time (a signal's `created_at`, an order's timestamps, whether a
crossing on the newest history candle is fresh enough to act on) must give the same answer whether
the machine is idle or saturated. Live, that is the wall clock. Replayed, it is the replay's own
time, which only moves when the driver says every event of the current instant has been processed
(orders sent, answered and applied) — so a replay's results cannot depend on how busy the CPU is.

What it refuses: running backwards. `SimulatedClock.set` to an earlier time is a driver bug and
raises instead of silently reordering history.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """What the engine, the order manager, the store timestamps and the simulator read."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, UTC, on this clock."""
        ...


class WallClock:
    """The machine's clock: what a live bot reads."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class SimulatedClock:
    """Time that moves only when told to (by a replay or backtest driver, or a test)."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def set(self, ms: int) -> None:
        if ms < self._now:
            raise ValueError(f"simulated clock cannot go back from {self._now} to {ms}")
        self._now = ms

    def advance(self, ms: int) -> None:
        self.set(self._now + ms)
