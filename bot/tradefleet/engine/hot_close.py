"""Hot close: the order path rehearsed, and the event loop held awake, just before a candle closes.

A bot acts once per candle, on the frame that closes it, after seconds to days of doing other
things (the book, the stream) or nothing. Measured with `bench.tick_to_order`, the order path run
cold (its code and data last touched a candle ago, the loop asleep until the frame woke it) took
~2.0 ms from the closing frame to the order request; the same path rehearsed ~20 ms before, with the
loop kept polling since, ~1.65 ms. So when a candle's close is near, the strategy runs
`on_close_near`: the engine rehearses the whole order path for the crossing that could come (the
decision, the risk gate's checks, the order, the store's rows in a transaction rolled back, the signed
request encoded and dropped: nothing stored, reserved, sent or counted), and holds the loop awake
(`tradefleet.awake`) until a little after the close is due.

When is the close near: `CloseForecast` reads it from the kline frames. Each carries the exchange's
event time, and the candle's close time is on that clock; the pace of that clock against this
process's is measured between consecutive frames (exchange milliseconds per local second: ~1,000
live, the replay's speed in a simulation), so a live stream and an accelerated replay are forecast
alike. A venue that publishes its closing frame some time after the close (or a network between)
makes every forecast early by about as much: that lag is learnt from the closes seen (`closed`) and
added to the next forecasts. `hot_close_ms` (config) is how early the window opens and how long
after the forecast it stays open. A forecast that is off by more than that only means the close
finds a cold path, as without any of this; `tradefleet_close_forecast_error_seconds` says by how much
the last one was off.
"""

from __future__ import annotations

MIN_SPAN_S = 0.001
"""Frames closer together than this (locally) say nothing about the pace: a burst read at once."""
REHEARSE_EVERY_S = 0.002
"""While the loop is held, the rehearsal runs again this often (the held core is spent anyway)."""
QUIET_S = 0.003
"""No rehearsal starts this close to the forecast close: in the replay the closing frame came within
±2 ms of its forecast nine times in ten, and one that finds the loop in a rehearsal's commit waits
for it. The disk stays warm that long (`bench.disk_warm`: an fsync 5 ms after the last is still
~0.25 ms)."""
LIVE_RATE = 1000.0
"""Exchange milliseconds per local second until two frames have measured it: a live exchange's."""
LAG_GAIN = 0.5
"""How much of a close's forecast error the lag takes on (the rest is noise, maybe)."""
MAX_LAG_S = 5.0
"""An error beyond this is not lag (a reconnect, a stall): it is not learnt from."""


class CloseForecast:
    """When the frame that closes the current candle should arrive here, in local seconds."""

    __slots__ = ("_last", "lag", "rate")

    def __init__(self, rate: float = LIVE_RATE) -> None:
        self.rate = rate
        """Exchange milliseconds per local second, from the last two frames that could say."""
        self.lag = 0.0
        """Seconds a closing frame arrives after its forecast, learnt from the closes seen."""
        self._last: tuple[int, float] | None = None

    def frame(self, event_time_ms: int, local_s: float) -> None:
        """A kline frame with this event time arrived at `local_s`."""
        last = self._last
        self._last = (event_time_ms, local_s)
        if last is None:
            return
        exchange_ms = event_time_ms - last[0]
        local = local_s - last[1]
        # Out of order, equal, or read in one burst: the pace is unknown from these two; keep the last.
        if exchange_ms > 0 and local >= MIN_SPAN_S:
            self.rate = exchange_ms / local

    def arrival(self, close_time_ms: int, event_time_ms: int, local_s: float) -> float:
        """The local time the close of a candle ending at `close_time_ms` should arrive, seen from a
        frame with `event_time_ms` that arrived at `local_s` (the close already due: now), plus the
        lag learnt."""
        ahead_ms = close_time_ms - event_time_ms
        return (local_s + ahead_ms / self.rate if ahead_ms > 0 else local_s) + self.lag

    def closed(self, error_s: float) -> None:
        """A closing frame arrived `error_s` after its forecast (negative: before)."""
        if abs(error_s) <= MAX_LAG_S:
            self.lag += LAG_GAIN * error_s
