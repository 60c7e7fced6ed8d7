"""Oracle on real data: 3,063 closed BTCUSDT daily candles, 50/200 SMA crossings, ours vs pandas.

The whole live path (simulator → websocket klines → bot) is checked against the same oracle in
tests/e2e/test_demo_oracle.py; this test pins the core and the oracle itself.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

import tradefleet_sim
from tradefleet.domain.models import Candle, Side
from tradefleet.domain.sma_cross import SmaCrossover

CSV = Path(tradefleet_sim.__file__).parent / "data" / "BTCUSDT_1d_2017-08-17_to_2026-01-05.csv"


def closed_candles() -> list[Candle]:
    with CSV.open() as f:
        rows = list(csv.DictReader(f))
    rows = rows[:-1]  # the last row was still open when captured (see PROVENANCE.md)
    return [
        Candle(
            "BTC/USDT",
            "1d",
            int(r["open_time"]),
            int(r["close_time"]),
            Decimal(r["open"]),
            Decimal(r["high"]),
            Decimal(r["low"]),
            Decimal(r["close"]),
            Decimal(r["volume"]),
        )
        for r in rows
    ]


def pandas_crossings(closes: list[float], short: int = 50, long: int = 200) -> list[tuple[int, str]]:
    s = pd.Series(closes)
    diff = s.rolling(short).mean() - s.rolling(long).mean()
    sign = np.sign(diff).replace(0, np.nan).ffill()
    prev = sign.shift(1)
    idx = sign.index[(sign != prev) & prev.notna() & sign.notna()]
    return [(int(i), "BUY" if sign[i] > 0 else "SELL") for i in idx]


def day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date().isoformat()


def test_real_btcusdt_daily_50_200_gives_the_17_crossings_pandas_gives() -> None:
    candles = closed_candles()
    assert len(candles) == 3063
    sma = SmaCrossover(50, 200)
    ours = []
    for i, c in enumerate(candles):
        update = sma.on_close(c)
        if update.cross:
            ours.append((i, update.cross.side.value))
    oracle = pandas_crossings([float(c.close) for c in candles])
    assert ours == oracle
    assert len(ours) == 17
    dated = [(day(candles[i].open_time), side) for i, side in ours]
    assert dated[0] == ("2018-03-31", Side.SELL.value)
    assert dated[-3:] == [("2025-04-07", "SELL"), ("2025-05-22", "BUY"), ("2025-11-16", "SELL")]
