"""Candles for the simulator: load the real daily history, serve it like `GET /api/v3/klines`,
and replay the rest candle by candle as `@kline_<interval>` frames.

Why a module of its own: the demo and the SMA oracle test compare a bot's signals with a naive
backtest on these exact closes, so the REST window semantics (startTime/endTime/limit, the open
candle as the last row) and the frame contents (x=false progress, then x=true with the real
OHLCV) must be right and easy to test without a server.

What it refuses to do: invent prices. Progress frames interpolate between the candle's own open
and close inside its real high/low; the closing frame carries the recorded values unchanged.
The source CSV has no quote volume or taker-buy volumes, so those fields are estimates
(volume x typical price, and half of each) and say so here. It also does no I/O beyond reading
the CSV once, and no timing: `SimExchange` paces the replay.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from tradefleet_sim.book import fmt

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_KLINES = DATA_DIR / "BTCUSDT_1d_2017-08-17_to_2026-01-05.csv"

INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_592_000_000,  # nominal; only used when relabelling a series
}

EIGHT = Decimal("0.00000001")


@dataclass(frozen=True)
class Candle:
    open_time: int
    close_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    first_trade_id: int

    def quote_volume(self, volume: Decimal | None = None) -> Decimal:
        v = self.volume if volume is None else volume
        return (v * (self.high + self.low + self.close) / 3).quantize(EIGHT, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class KlineSeries:
    symbol: str
    interval: str
    candles: tuple[Candle, ...]


def load_csv(path: Path, *, interval: str | None = None, drop_last: bool = True) -> KlineSeries:
    """Read `symbol,timeframe,open_time,close_time,open,high,low,close,volume,trades` rows.

    `drop_last` drops the final row, which in our capture was still open when recorded.
    `interval` relabels the series (e.g. real daily closes served as `1m` candles so a demo runs
    in minutes): times are then rebuilt as consecutive intervals from the first open time.
    """
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if drop_last:
        rows = rows[:-1]
    if not rows:
        raise ValueError(f"{path}: no candles")
    symbol, source_interval = rows[0]["symbol"], rows[0]["timeframe"]
    label = interval or source_interval
    if label not in INTERVAL_MS:
        raise ValueError(f"unknown kline interval {label!r}; known: {', '.join(INTERVAL_MS)}")
    step = INTERVAL_MS[label]
    base = int(rows[0]["open_time"])
    candles: list[Candle] = []
    trade_id = 0
    for i, r in enumerate(rows):
        relabel = label != source_interval
        open_time = base + i * step if relabel else int(r["open_time"])
        close_time = open_time + step - 1 if relabel else int(r["close_time"])
        n = int(r["trades"])
        candles.append(
            Candle(
                open_time,
                close_time,
                Decimal(r["open"]),
                Decimal(r["high"]),
                Decimal(r["low"]),
                Decimal(r["close"]),
                Decimal(r["volume"]),
                n,
                trade_id,
            )
        )
        trade_id += n
    return KlineSeries(symbol=symbol, interval=label, candles=tuple(candles))


def partial(c: Candle, fraction: float, tick: Decimal) -> Candle:
    """The candle as it looked `fraction` of the way through: close moves from open towards the
    real close, high/low widen towards the real ones, volume and trades accrue linearly."""
    f = Decimal(str(fraction))

    def at(target: Decimal) -> Decimal:
        return (c.open + (target - c.open) * f).quantize(tick, ROUND_HALF_EVEN)

    close = at(c.close)
    return Candle(
        open_time=c.open_time,
        close_time=c.close_time,
        open=c.open,
        high=max(c.open, close, at(c.high)),
        low=min(c.open, close, at(c.low)),
        close=close,
        volume=(c.volume * f).quantize(EIGHT, ROUND_HALF_EVEN),
        trades=int(c.trades * fraction),
        first_trade_id=c.first_trade_id,
    )


def rest_row(c: Candle) -> list[Any]:
    """One `GET /api/v3/klines` row, with Binance's types (times and counts are numbers)."""
    q = c.quote_volume()
    return [
        c.open_time,
        fmt(c.open),
        fmt(c.high),
        fmt(c.low),
        fmt(c.close),
        fmt(c.volume),
        c.close_time,
        fmt(q),
        c.trades,
        fmt(c.volume / 2),
        fmt(q / 2),
        "0",
    ]


def ws_payload(symbol: str, interval: str, c: Candle, *, closed: bool, event_time: int) -> dict[str, Any]:
    """One `@kline_<interval>` payload (the raw form; combined streams wrap it)."""
    q = c.quote_volume()
    first = c.first_trade_id if c.trades else -1
    last = c.first_trade_id + c.trades - 1 if c.trades else -1
    return {
        "e": "kline",
        "E": event_time,
        "s": symbol,
        "k": {
            "t": c.open_time,
            "T": c.close_time,
            "s": symbol,
            "i": interval,
            "f": first,
            "L": last,
            "o": fmt(c.open),
            "c": fmt(c.close),
            "h": fmt(c.high),
            "l": fmt(c.low),
            "v": fmt(c.volume),
            "n": c.trades,
            "x": closed,
            "q": fmt(q),
            "V": fmt(c.volume / 2),
            "Q": fmt(q / 2),
            "B": "0",
        },
    }


class KlineWindowError(ValueError):
    """A klines request Binance would reject; `code` is Binance's error code."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code


def select(rows: list[Candle], *, start: int | None, end: int | None, limit: int) -> list[Candle]:
    """Binance's window rules: both bounds -> the first `limit` with start <= open <= end;
    start only -> the first `limit` from start; end only or none -> the last `limit` up to end."""
    if start is not None and end is not None and start > end:
        raise KlineWindowError(-1023, "Start time is greater than end time.")
    chosen = [
        c for c in rows if (start is None or c.open_time >= start) and (end is None or c.open_time <= end)
    ]
    if start is not None:
        return chosen[:limit]
    return chosen[-limit:]


_MONDAY_MS = 4 * 86_400_000  # 1970-01-05, the first Monday: Binance's weeks open on Monday


def bucket_start(t: int, interval: str, offset_ms: int = 0) -> int:
    """Open time (UTC ms) of the `interval` candle holding instant `t`, with candle boundaries in the
    time zone `offset_ms` east of UTC (Binance's `timeZone`); months are calendar months there."""
    local = t + offset_ms
    if interval == "1M":
        d = datetime.fromtimestamp(local / 1000, tz=UTC)
        return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000) - offset_ms
    size = INTERVAL_MS[interval]
    if interval == "1w":
        return local - (local - _MONDAY_MS) % size - offset_ms
    return local - local % size - offset_ms


def bucket_end(start: int, interval: str, offset_ms: int = 0) -> int:
    if interval == "1M":
        d = datetime.fromtimestamp((start + offset_ms) / 1000, tz=UTC)
        nxt = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
        return int(nxt.timestamp() * 1000) - offset_ms - 1
    return start + INTERVAL_MS[interval] - 1


def derivable(base: str, target: str, offset_ms: int = 0) -> bool:
    """Whether `target` candles (boundaries `offset_ms` east of UTC) are whole groups of `base` ones."""
    if offset_ms % INTERVAL_MS[base] != 0 and not (target == "1M" and offset_ms == 0):
        return False
    if target == "1M":
        return INTERVAL_MS[base] <= 86_400_000
    return INTERVAL_MS[target] >= INTERVAL_MS[base] and INTERVAL_MS[target] % INTERVAL_MS[base] == 0


_TZ = re.compile(r"^([+-]?)([0-9]{1,2})(?::([0-9]{2}))?$")


def parse_time_zone(raw: str) -> int:
    """Binance's `timeZone` (`8`, `+08:00`, `-1:30`, ... within -12:00..+14:00) as ms east of UTC."""
    m = _TZ.match(raw.strip())
    if m is None:
        raise ValueError(f"invalid timeZone {raw!r}")
    minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
    minutes = -minutes if m.group(1) == "-" else minutes
    if not -12 * 60 <= minutes <= 14 * 60:
        raise ValueError(f"timeZone {raw!r} is outside -12:00..+14:00")
    return minutes * 60_000


def merge_group(group: list[Candle], start: int, end: int) -> Candle:
    return Candle(
        open_time=start,
        close_time=end,
        open=group[0].open,
        high=max(c.high for c in group),
        low=min(c.low for c in group),
        close=group[-1].close,
        volume=sum((c.volume for c in group), Decimal(0)),
        trades=sum(c.trades for c in group),
        first_trade_id=group[0].first_trade_id,
    )


def aggregate(rows: list[Candle], interval: str, offset_ms: int = 0) -> list[Candle]:
    """Group base candles (oldest first) into `interval` candles: open of the first, close of the
    last, extremes and sums over the group. The last group may be incomplete (the open candle)."""
    out: list[Candle] = []
    group: list[Candle] = []
    start = None
    for c in rows:
        b = bucket_start(c.open_time, interval, offset_ms)
        if start is not None and b != start:
            out.append(merge_group(group, start, bucket_end(start, interval, offset_ms)))
            group = []
        start = b
        group.append(c)
    if group and start is not None:
        out.append(merge_group(group, start, bucket_end(start, interval, offset_ms)))
    return out
