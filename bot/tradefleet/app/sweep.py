"""Parameter sweeps and walk-forward: many backtests of the real engine, one per (short, long) pair,
spread over every core.

Each pair is a whole bot (strategy, order manager, position, its own in-process exchange) run by
`run_fleet` in a worker process, a few dozen bots per worker sharing one simulated clock and one
in-memory SQLite store, as a fleet shares them; nothing is vectorised, so what the grid ranks is
exactly what `tradefleet backtest --short S --long L` reports for each pair (a test holds them equal).

Walk-forward splits the candles at a fraction: the grid is run in-sample (before the split) and
out-of-sample (after it, each pair warmed up on the candles just before the split, so every pair
trades from the same day). The in-sample winner's out-of-sample rank shows how much of its
in-sample lead was fitted noise.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tradefleet.app.backtest_run import BacktestResult, BacktestSpec, backtest_fleet, quiet_logs
from tradefleet.errors import ConfigError

Job = tuple[BacktestSpec, int, int]
FLEET = 24
"""Bots backtested together in one worker's event loop: they share the clock, the candle events and
the store's candle writes (a fleet of 24 costs about half of 24 single runs)."""
METRICS = (
    "sharpe",
    "sortino",
    "total_return_pct",
    "annual_return_pct",
    "max_drawdown_pct",
    "win_rate_pct",
)


def parse_range(text: str, name: str) -> list[int]:
    """`50` or `start:stop:step` (stop included, like the issue's `--short 10:100:5`)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise ConfigError(f"--{name} {text!r}: give N or START:STOP:STEP with whole numbers") from None
    if len(parts) == 1:
        values = parts
    elif len(parts) in (2, 3):
        start, stop = parts[0], parts[1]
        step = parts[2] if len(parts) == 3 else 1
        if step <= 0 or stop < start:
            raise ConfigError(f"--{name} {text!r}: STEP must be > 0 and STOP >= START")
        values = list(range(start, stop + 1, step))
    else:
        raise ConfigError(f"--{name} {text!r}: give N or START:STOP:STEP")
    if any(v < 1 for v in values):
        raise ConfigError(f"--{name} {text!r}: windows must be >= 1")
    return values


def pairs(shorts: Sequence[int], longs: Sequence[int]) -> list[tuple[int, int]]:
    return [(s, lg) for s in shorts for lg in longs if s < lg]


@dataclass(frozen=True)
class PairResult:
    short: int
    long: int
    summary: dict[str, Any]
    fills: list[tuple[int, str, str, str]]  # (time, side, base qty, quote qty) of each filled order

    def metric(self, name: str) -> float:
        v = self.summary.get(name)
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else -math.inf


def _pair_result(result: BacktestResult) -> PairResult:
    summary = result.performance.summary() | {"signals": len(result.signals)}
    fills = [
        (o.created_at, o.side.value, format(o.filled_qty, "f"), format(o.cum_quote, "f"))
        for o in sorted(result.orders, key=lambda o: o.created_at)
        if o.filled_qty > 0
    ]
    return PairResult(result.spec.short_window, result.spec.long_window, summary, fills)


def _fleet(jobs: Sequence[Job]) -> list[PairResult]:
    specs = [dataclasses.replace(base, short_window=s, long_window=lg) for base, s, lg in jobs]
    return [_pair_result(r) for r in backtest_fleet(specs)]


def _init_worker() -> None:
    quiet_logs()
    # A worker only runs fleets and exits: what it inherited (modules, the parsed CSV) is never
    # garbage, so the collector stops re-scanning it, and it runs a tenth as often (a fleet makes
    # millions of short-lived Decimals and candles, almost none of them in reference cycles).
    gc.freeze()
    gc.set_threshold(7_000, 10, 10)


def run_grid(
    base: BacktestSpec, grid: Sequence[tuple[int, int]], *, workers: int | None = None
) -> list[PairResult]:
    """Every pair of `grid` backtested on `base`'s data; results in grid order."""
    return run_jobs([(base, s, lg) for s, lg in grid], workers=workers)


def run_jobs(jobs: Sequence[Job], *, workers: int | None = None, fleet: int = FLEET) -> list[PairResult]:
    """Backtest every job, `fleet` bots at a time per worker process, on `workers` processes."""
    n = workers or os.cpu_count() or 1
    size = max(1, min(fleet, math.ceil(len(jobs) / n)))
    fleets = [list(jobs[i : i + size]) for i in range(0, len(jobs), size)]
    if n == 1 or len(fleets) == 1:
        quiet_logs()
        return [r for f in fleets for r in _fleet(f)]
    # fork: workers inherit the imported modules (and the parsed CSV cache) instead of re-importing.
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(n, len(fleets)), initializer=_init_worker) as pool:
        return [r for rs in pool.map(_fleet, fleets, chunksize=1) for r in rs]


def best(results: Sequence[PairResult], metric: str) -> PairResult:
    """Highest value wins for every metric (drawdowns are negative: the shallowest wins)."""
    return max(results, key=lambda r: r.metric(metric))


def heat_values(
    results: Sequence[PairResult], shorts: Sequence[int], longs: Sequence[int], metric: str
) -> list[list[float | None]]:
    by = {(r.short, r.long): r.metric(metric) for r in results}
    return [
        [None if (s, lg) not in by or not math.isfinite(by[(s, lg)]) else by[(s, lg)] for lg in longs]
        for s in shorts
    ]


def walk_forward(
    base: BacktestSpec, grid: Sequence[tuple[int, int]], *, split: int, metric: str, workers: int | None
) -> dict[str, Any]:
    """In-sample grid on candles [start, split), out-of-sample grid trading from `split` on."""
    longest = max(lg for _, lg in grid)
    if split - base.start <= longest or split >= (base.end or 10**12):
        raise ConfigError(
            f"walk-forward split at candle {split} leaves no room for the {longest}-candle window"
        )
    ins = run_grid(dataclasses.replace(base, end=split), grid, workers=workers)
    # Each pair warms up on the `long` candles right before the split, so all trade from the split.
    outs = run_jobs([(dataclasses.replace(base, start=split - lg), s, lg) for s, lg in grid], workers=workers)
    is_best = best(ins, metric)
    oos_best = best(outs, metric)
    oos_by = {(r.short, r.long): r for r in outs}
    ranked = sorted(outs, key=lambda r: r.metric(metric), reverse=True)
    rank = next(i for i, r in enumerate(ranked, 1) if (r.short, r.long) == (is_best.short, is_best.long))
    is_oos = oos_by[(is_best.short, is_best.long)]
    return {
        "metric": metric,
        "split_candle": split,
        "in_sample_best": [is_best.short, is_best.long],
        "in_sample_value": is_best.summary.get(metric),
        "its_out_of_sample_value": is_oos.summary.get(metric),
        "its_out_of_sample_rank": f"{rank} of {len(outs)}",
        "out_of_sample_best": [oos_best.short, oos_best.long],
        "out_of_sample_best_value": oos_best.summary.get(metric),
    }
