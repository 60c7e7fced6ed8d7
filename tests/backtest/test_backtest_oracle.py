"""`tradefleet backtest` on the bundled BTCUSDT history: the live engine (strategy, order manager,
position, store) driven by a simulated clock against the simulator's own matching, held against the
pandas oracle and the naive backtest, and run as the user runs it (the CLI, a subprocess)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest

from tests.strategy.test_oracle_real_btcusdt import CSV, closed_candles, pandas_crossings
from tradefleet.app.backtest_run import BacktestSpec, backtest, backtest_fleet, result_json
from tradefleet.domain.backtest import naive_backtest
from tradefleet.domain.models import OrderStatus, Side

TICK, STEP = Decimal("0.01"), Decimal("0.00001")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory):
    store = tmp_path_factory.mktemp("bt") / "bt.sqlite"
    return backtest(BacktestSpec(CSV, "BTC/USDT"), store_url=f"sqlite:///{store}"), store


def test_backtest_gives_the_17_crossings_pandas_gives_and_trades_each_one_the_position_allows(
    full_run,
) -> None:
    result, _ = full_run
    candles = closed_candles()
    oracle = [(candles[i].open_time, side) for i, side in pandas_crossings([float(c.close) for c in candles])]
    ours = [(s.candle_open_time, s.side.value) for s in result.signals]
    assert ours == oracle and len(ours) == 17
    naive = naive_backtest(result.signals, quote_amount=Decimal(1000), fee_rate=Decimal("0.001"))
    filled = [o for o in result.orders if o.status is OrderStatus.FILLED]
    assert len(result.orders) == len(filled) == naive.trades == 16
    assert result.signals[0].action == "flat_cannot_sell"  # the first crossing, a SELL while flat
    assert all(s.action == "order" for s in result.signals[1:])


def test_fills_are_the_simulators_at_the_crossing_candles_close(full_run) -> None:
    """The simulator's book sits on the close (best bid = close, best ask one tick above): a BUY
    spends 1000 quote on whole lot steps at the ask, a SELL sells the held steps at the bid, with
    the simulator's 0.1 % taker fee rounded down to 8 decimals."""
    result, _ = full_run
    signals = {s.signal_id: s for s in result.signals}
    for o in sorted(result.orders, key=lambda o: o.created_at):
        s = signals[o.signal_id]
        assert o.created_at == s.candle_close_time  # the simulated clock: the candle's close
        if o.side is Side.BUY:
            price = s.close + TICK
            assert o.filled_qty == (Decimal(1000) / price).quantize(STEP, rounding=ROUND_DOWN)
            assert o.fee == (o.filled_qty * Decimal("0.001")).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)
        else:
            price = s.close
        assert o.avg_price == price


def test_realized_pnl_equals_the_naive_backtest_within_lot_rounding(full_run) -> None:
    result, _ = full_run
    naive = naive_backtest(result.signals, quote_amount=Decimal(1000), fee_rate=Decimal("0.001"))
    ours = result.performance.realized_pnl_quote
    # A BUY fills one tick above the close and whole steps only; dust stays. Cents over 8 trips.
    assert abs(ours - naive.realized_pnl_quote) < Decimal("2.00"), (ours, naive.realized_pnl_quote)
    perf = result.performance
    assert len([t for t in perf.round_trips if t.exit_time is not None]) == 8
    assert perf.candles == 3063 - 200
    assert perf.equity[0] == 1000.0 and perf.max_drawdown < 0
    assert perf.sharpe is not None and perf.sortino is not None and 0 < perf.exposure < 1


def test_the_backtest_leaves_the_tables_a_bot_writes(full_run) -> None:
    _, store = full_run
    with sqlite3.connect(store) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        assert {"signals", "orders", "order_updates", "candles", "positions"} <= tables
        assert conn.execute("select count(*) from signals").fetchone()[0] == 17
        assert conn.execute("select count(*) from orders where status='FILLED'").fetchone()[0] == 16
        assert conn.execute("select count(*) from candles").fetchone()[0] == 3063
        trades = conn.execute("select count(*) from order_updates where exec_type='TRADE'").fetchone()[0]
        assert trades == 16


def test_two_runs_are_identical_to_the_last_digit(full_run) -> None:
    first, _ = full_run
    again = backtest(BacktestSpec(CSV, "BTC/USDT"))
    assert result_json(again) == result_json(first)


def test_cli_writes_json_html_and_store_and_report_reads_the_store(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tradefleet.app.cli", "backtest", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["signals"] == 17 and line["orders"] == 16 and line["round_trips"] == 8
    doc = json.loads((tmp_path / "run.json").read_text())
    assert len(doc["trades"]) == 8 and len(doc["equity_curve"]) == 2863
    assert 'id="equity"' in (tmp_path / "run.html").read_text()
    report = subprocess.run(
        [sys.executable, "-m", "tradefleet.app.cli", "report", "--store", f"sqlite:///{out}.sqlite",
         "--out", str(tmp_path / "report.html")],  # no --bot: the store's only bot
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "BUY" in (tmp_path / "report.html").read_text()


def test_cli_refuses_bad_input_with_a_clear_message(tmp_path: Path) -> None:
    for args, message in (
        (["--short", "10:5"], "STOP >= START"),
        (["--short", "300", "--long", "200"], "short < long"),
        (["--klines", str(tmp_path / "nope.csv")], "no such file"),
        (["--walk-forward", "0.7"], "needs a sweep"),
    ):
        cmd = [sys.executable, "-m", "tradefleet.app.cli", "backtest", "--out", str(tmp_path / "x"), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)


def test_report_without_bot_names_the_bots_of_a_store_that_holds_several(tmp_path: Path) -> None:
    store = tmp_path / "fleet.sqlite"
    backtest_fleet(
        [BacktestSpec(CSV, "BTC/USDT", 20, 100), BacktestSpec(CSV, "BTC/USDT")],
        store_url=f"sqlite:///{store}",
    )
    cmd = [
        sys.executable,
        "-m",
        "tradefleet.app.cli",
        "report",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "r.html"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "backtest-btcusdt-20-100-0, backtest-btcusdt-50-200-0" in proc.stderr, proc.stderr
