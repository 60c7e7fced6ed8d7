"""Parameter sweeps and walk-forward: every pair of a grid is a whole bot run in a fleet on worker
processes, and must report exactly what a single `backtest` of that pair reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.strategy.test_oracle_real_btcusdt import CSV
from tradefleet.app.backtest_run import BacktestSpec, backtest
from tradefleet.app.sweep import PairResult, pairs, parse_range, run_grid, walk_forward
from tradefleet.errors import ConfigError


def test_ranges_include_their_stop_and_pairs_keep_short_below_long() -> None:
    assert parse_range("10:30:10", "short") == [10, 20, 30]
    assert parse_range("50", "long") == [50]
    assert pairs([10, 50], [50, 60]) == [(10, 50), (10, 60), (50, 60)]
    for bad in ("10:5", "a:b", "1:2:0", "0", "1:2:3:4"):
        with pytest.raises(ConfigError):
            parse_range(bad, "short")


def test_a_grid_on_two_workers_reports_each_pair_exactly_as_a_single_backtest() -> None:
    grid = [(10, 30), (20, 60), (50, 200), (30, 90), (15, 45)]
    results = run_grid(BacktestSpec(CSV, "BTC/USDT"), grid, workers=2)
    assert [(r.short, r.long) for r in results] == grid
    for r in results[:3]:
        single = backtest(BacktestSpec(CSV, "BTC/USDT", r.short, r.long))
        assert r.summary == single.performance.summary() | {"signals": len(single.signals)}
        fills = [(o.created_at, o.side.value) for o in sorted(single.orders, key=lambda o: o.created_at)]
        assert [(t, side) for t, side, _, _ in r.fills] == fills
    by = {(r.short, r.long): r for r in results}
    assert by[(50, 200)].summary["signals"] == 17 and by[(50, 200)].summary["orders"] == 16


def test_walk_forward_ranks_the_in_sample_winner_out_of_sample() -> None:
    grid = [(10, 30), (20, 60), (30, 90)]
    wf = walk_forward(BacktestSpec(CSV, "BTC/USDT"), grid, split=2000, metric="sharpe", workers=2)
    assert wf["in_sample_best"] in [list(p) for p in grid]
    rank, _, total = wf["its_out_of_sample_rank"].split()
    assert 1 <= int(rank) <= int(total) == 3
    assert isinstance(wf["its_out_of_sample_value"], float)


def test_cli_sweep_draws_the_heatmap_and_reports_the_best_pair_in_full(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "tradefleet.app.cli", "backtest", "--short", "10:30:10", "--long", "40:60:20",
           "--metric", "total_return_pct", "--walk-forward", "0.7", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "sweep.json").read_text())
    results = doc["sweep"]["results"]
    assert len(results) == 6
    best = max(results, key=lambda r: r["total_return_pct"])
    assert doc["sweep"]["best"] == [best["short"], best["long"]] == [doc["short"], doc["long"]]
    assert doc["total_return_pct"] == best["total_return_pct"]
    html = (tmp_path / "sweep.html").read_text()
    assert 'id="heatmap"' in html and html.count("<rect ") == 6 and "Walk-forward" in html
    assert doc["walk_forward"]["metric"] == "total_return_pct"


def test_pair_results_rank_missing_metrics_last() -> None:
    a = PairResult(1, 2, {"sharpe": None}, [])
    b = PairResult(1, 3, {"sharpe": -1.0}, [])
    assert max([a, b], key=lambda r: r.metric("sharpe")) is b
