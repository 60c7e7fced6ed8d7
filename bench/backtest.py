"""Backtest benchmark: the real engine (`tradefleet backtest`) against backtesting.py and a vectorised
numpy baseline, same data, same grid, same run.

    python -m bench.backtest            # 1,221-pair grid (a few minutes on a 2-core machine)
    python -m bench.backtest --quick    # 60 pairs, under a minute

1. One backtest: the full bundled BTCUSDT daily history (3,063 candles, SMA 50/200) through the live
   strategy, order manager, position and (in-memory SQLite) store, best and median of `--repeats`.
2. The grid (`--short`, `--long`, default 10:100:3 x 50:300:6, short < long: 1,221 pairs) three
   ways, each on every core:
   - ours: one whole engine run per pair (`tradefleet.app.sweep.run_grid`);
   - backtesting.py's `Backtest.optimize` (SMA crossover like its README's, trade on close,
     0.1 % commission) -- the popular library a user would otherwise reach for;
   - a vectorised numpy baseline (exact integer rolling sums, long-only crossings): the floor.
   Every pair's trades (candle, side) must be identical between ours and the baseline; the run
   fails otherwise.

Install the peer first: `pip install -e '.[bench]'` (backtesting.py is not a runtime dependency).
The last line is machine-readable:
    backtest one_s=<s> grid_pairs=<n> ours_s=<s> backtesting_py_s=<s> numpy_s=<s> identical=<bool>
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

import tradefleet_sim
from tradefleet.app.backtest_run import BacktestSpec, backtest, quiet_logs
from tradefleet.app.sweep import pairs, parse_range, run_grid

CSV = Path(tradefleet_sim.__file__).parent / "data" / "BTCUSDT_1d_2017-08-17_to_2026-01-05.csv"


def load() -> tuple[np.ndarray, list[int], list[dict[str, str]]]:
    with CSV.open() as f:
        rows = list(csv.DictReader(f))[:-1]  # the last row was still open (the simulator drops it too)
    cents = np.array([round(float(r["close"]) * 100) for r in rows], dtype=np.int64)
    return cents, [int(r["open_time"]) for r in rows], rows


def numpy_trades(cents: np.ndarray, times: list[int], short: int, long: int) -> list[tuple[int, str]]:
    """Long-only SMA crossings as the engine trades them: a BUY while flat, a SELL while long, from
    the first candle after the `long`-candle warm-up. Exact: short_sum*long vs long_sum*short."""
    c = np.concatenate(([0], np.cumsum(cents)))
    n = len(cents)
    idx = np.arange(long - 1, n)
    s_sum = c[idx + 1] - c[idx + 1 - short]
    l_sum = c[idx + 1] - c[idx + 1 - long]
    diff = np.sign(s_sum * long - l_sum * short)
    # ties keep the previous relation (forward fill of the last non-zero sign)
    nz = np.where(diff != 0, np.arange(len(diff)), -1)
    np.maximum.accumulate(nz, out=nz)
    rel = np.where(nz >= 0, diff[np.maximum(nz, 0)], 0)
    change = np.nonzero((rel[1:] != rel[:-1]) & (rel[:-1] != 0) & (rel[1:] != 0))[0] + 1
    out: list[tuple[int, str]] = []
    long_now = False
    for k in change:  # crossings alternate; the position rule only drops a leading SELL
        side = "BUY" if rel[k] > 0 else "SELL"
        if (side == "BUY") != long_now:
            out.append((times[idx[k]], side))
            long_now = side == "BUY"
    return out


def backtesting_py(rows: list[dict[str, str]], grid: list[tuple[int, int]]) -> tuple[float, int]:
    import pandas as pd
    from backtesting import Backtest

    from bench.backtest_peer import SmaCross

    df = pd.DataFrame(
        {k.capitalize(): [float(r[k]) for r in rows] for k in ("open", "high", "low", "close", "volume")},
        index=pd.to_datetime([int(r["open_time"]) for r in rows], unit="ms"),
    )
    shorts = sorted({s for s, _ in grid})
    longs = sorted({lg for _, lg in grid})
    wanted = set(grid)
    bt = Backtest(df, SmaCross, cash=10_000_000, commission=0.001, trade_on_close=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, heat = bt.optimize(
            n1=shorts,
            n2=longs,
            constraint=lambda p: (p.n1, p.n2) in wanted,
            maximize="Sharpe Ratio",
            max_tries=None,
            return_heatmap=True,
        )
    return time.perf_counter() - started, len(heat)


def cpu_s() -> float:
    """CPU seconds of this process and of its reaped children (pool workers): load-independent."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 60-pair grid and 3 single runs")
    p.add_argument("--short", default="10:100:3")
    p.add_argument("--long", default="50:300:6")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--skip-peer", action="store_true", help="do not run backtesting.py")
    args = p.parse_args()
    if args.quick:
        args.short, args.long, args.repeats = "10:60:10", "70:250:18", 3
    quiet_logs()
    cents, times, rows = load()
    grid = pairs(parse_range(args.short, "short"), parse_range(args.long, "long"))
    print(f"data: {CSV.name}, {len(rows)} closed candles; grid {len(grid)} pairs; {args.workers} workers")

    one, one_cpu = [], []
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        r = backtest(BacktestSpec(CSV, "BTC/USDT"))
        one.append(time.perf_counter() - t)
        one_cpu.append(time.process_time() - c)
    print(
        f"one backtest (SMA 50/200, {len(rows)} candles, {len(r.signals)} signals, {len(r.orders)} orders): "
        f"best {min(one):.3f} s, median {statistics.median(one):.3f} s (CPU best {min(one_cpu):.3f} s)"
    )

    t = time.perf_counter()
    baseline = {(s, lg): numpy_trades(cents, times, s, lg) for s, lg in grid}
    numpy_s = time.perf_counter() - t
    print(f"numpy baseline: {len(grid)} pairs in {numpy_s:.3f} s (one core)")

    t, c = time.perf_counter(), cpu_s()
    results = run_grid(BacktestSpec(CSV, "BTC/USDT"), grid, workers=args.workers)
    ours_s, ours_cpu = time.perf_counter() - t, cpu_s() - c
    per = ours_s / len(grid) * 1000
    print(
        f"ours (real engine per pair): {len(grid)} pairs in {ours_s:.2f} s ({per:.1f} ms/pair), "
        f"{ours_cpu:.1f} CPU-s"
    )

    mismatches = []
    trades = 0
    for res in results:
        # An order's candle: the signal's candle opens one interval before the fill (created at close).
        ours = [(times[_index(times, at)], side) for at, side, _, _ in res.fills]
        trades += len(ours)
        if ours != baseline[(res.short, res.long)]:
            mismatches.append((res.short, res.long))
    identical = not mismatches
    same = len(grid) - len(mismatches)
    print(f"trades identical to the baseline on {same}/{len(grid)} pairs ({trades} trades)")
    if mismatches:
        print(f"  mismatching pairs: {mismatches[:10]}")

    peer_s: float | None = None
    peer_cpu: float | None = None
    if not args.skip_peer:
        c = cpu_s()
        peer_s, n = backtesting_py(rows, grid)
        peer_cpu = cpu_s() - c
        print(
            f"backtesting.py optimize: {n} pairs in {peer_s:.2f} s ({peer_s / n * 1000:.1f} ms/pair), "
            f"{peer_cpu:.1f} CPU-s"
        )
        print(
            f"ours / backtesting.py: {ours_s / peer_s:.2f}x the wall time, {ours_cpu / peer_cpu:.2f}x the CPU"
        )
    summary = {
        "one_s": round(min(one), 4),
        "one_median_s": round(statistics.median(one), 4),
        "one_cpu_s": round(min(one_cpu), 4),
        "grid_pairs": len(grid),
        "ours_s": round(ours_s, 2),
        "ours_cpu_s": round(ours_cpu, 1),
        "backtesting_py_s": None if peer_s is None else round(peer_s, 2),
        "backtesting_py_cpu_s": None if peer_cpu is None else round(peer_cpu, 1),
        "numpy_s": round(numpy_s, 3),
        "identical": identical,
    }
    print(json.dumps(summary))
    print("backtest " + " ".join(f"{k}={v}" for k, v in summary.items()))
    if not identical:
        raise SystemExit(1)


def _index(times: list[int], close_ms: int) -> int:
    """The candle whose close is `close_ms` (fills are stamped with their candle's close time)."""
    import bisect

    return bisect.bisect_right(times, close_ms) - 1


if __name__ == "__main__":
    main()
