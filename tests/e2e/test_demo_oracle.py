"""`tradefleet demo` end to end: the simulator replays real BTCUSDT daily candles over websockets, the
bot warms up over REST (ccxt), trades, and leaves a store. Run as the user runs it (a subprocess of
the real CLI), asserted on its JSON lines and the SQLite file it leaves behind."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import tradefleet_sim
from tests.strategy.test_oracle_real_btcusdt import pandas_crossings

pytestmark = pytest.mark.slow

FULL_CSV = Path(tradefleet_sim.__file__).parent / "data" / "BTCUSDT_1d_2017-08-17_to_2026-01-05.csv"


def run_demo(tmp_path: Path, *args: str, timeout: float = 420) -> tuple[list[dict], dict]:
    cmd = [
        sys.executable, "-m", "tradefleet.app.cli", "demo", "--quiet",
        "--store", str(tmp_path / "demo.sqlite"), "--log", str(tmp_path / "demo.log"), *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON output; rc={proc.returncode}\nstderr:\n{proc.stderr[-3000:]}"
    summary = lines[-1]
    assert summary["event"] == "summary", proc.stdout[-2000:]
    assert proc.returncode == 0, f"rc={proc.returncode} summary={summary}\n{proc.stderr[-3000:]}"
    return lines[:-1], summary


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def write_subset(tmp_path: Path, start: int, end: int | None) -> tuple[Path, list[float]]:
    """Rows [start, end) of the real file (its unfinished last row stays last, as the sim drops it)."""
    rows = csv_rows(FULL_CSV)
    subset = rows[start:end] + ([rows[-1]] if end is not None else [])
    path = tmp_path / "klines.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(subset)
    return path, [float(r["close"]) for r in subset[:-1]]


def day(iso: str) -> str:
    return iso[:10]


def oracle_days(
    closes: list[float], rows_offset: int, short: int = 50, long: int = 200
) -> list[tuple[str, str]]:
    rows = csv_rows(FULL_CSV)
    return [(rows[rows_offset + i]["open_time"], side) for i, side in pandas_crossings(closes, short, long)]


def signal_days(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["candle_open_time"], e["side"]) for e in events if e.get("event") == "signal"]


def to_iso(ms: str) -> str:
    import datetime as dt

    return (
        dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def test_live_path_over_websockets_gives_the_17_crossings_pandas_gives(tmp_path: Path) -> None:
    events, summary = run_demo(tmp_path, "--mode", "paper", "--no-faults", "--speed", "400")
    closes = [float(r["close"]) for r in csv_rows(FULL_CSV)[:-1]]
    expected = [(to_iso(t), side) for t, side in oracle_days(closes, 0)]
    assert len(expected) == 17
    assert signal_days(events) == expected
    for e in events:
        if e["event"] == "signal":
            assert {
                "bot",
                "exchange",
                "symbol",
                "interval",
                "close",
                "sma_short",
                "sma_long",
                "signal_id",
            } <= set(e)
            assert e["candle_close_time"].endswith("Z")
            Decimal(e["close"]), Decimal(e["sma_short"]), Decimal(e["sma_long"])
    assert summary["signals"] == 17
    assert summary["duplicates"] == 0


def window_2023_08(tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    """2023-08 onwards: 200 warm-up candles, then ~680 live ones with 5 crossings (the first, a SELL
    while flat, is stored with its reason, so 4 orders)."""
    start = 2180
    klines, closes = write_subset(tmp_path, start, None)
    return klines, [(to_iso(t), side) for t, side in oracle_days(closes, start)]


@pytest.fixture
def cpu_load():
    """Every core kept busy by the test itself while the demo runs: results must not depend on load."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield len(hogs)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_signed_orders_fill_at_each_crossings_close_and_pnl_equals_the_backtest_under_cpu_load(
    tmp_path: Path, cpu_load: int
) -> None:
    # Lockstep: the replay waits after each close until the bot is done with it, so the fills (and the
    # P&L) are the backtest's to the last digit however busy the machine is; the speed only caps pace.
    klines, expected = window_2023_08(tmp_path)
    events, summary = run_demo(tmp_path, "--klines", str(klines), "--no-faults", "--speed", "100")
    assert signal_days(events) == expected and len(expected) == 5
    assert summary["duplicates"] == 0 and summary["error"] is None
    assert summary["orders"] == summary["filled"] == summary["sim_orders"] == summary["backtest_orders"] == 4
    pnl, backtest = Decimal(summary["realized_pnl_quote"]), Decimal(summary["backtest_realized_pnl_quote"])
    assert pnl == backtest and summary["pnl_equals_backtest"] is True, (pnl, backtest)
    assert summary["position_qty"] == summary["backtest_position_qty"]
    assert Decimal(summary["position_qty"]) < Decimal("0.0001")  # flat but for sub-lot dust
    orders = [e for e in events if e.get("event") == "order"]
    assert {o["status"] for o in orders} >= {"PENDING", "FILLED"}


def test_paper_mode_fills_like_the_simulator_so_its_pnl_equals_the_backtest(tmp_path: Path) -> None:
    # Paper fills walk the bot's own copy of the simulator's book with the simulator's own walk,
    # fee rounding and FILLED rule (tradefleet_sim.matching): the P&L is the backtest's to the digit.
    klines, expected = window_2023_08(tmp_path)
    events, summary = run_demo(
        tmp_path, "--klines", str(klines), "--mode", "paper", "--no-faults", "--speed", "100"
    )
    assert signal_days(events) == expected
    assert summary["duplicates"] == 0 and summary["error"] is None
    assert summary["orders"] == summary["filled"] == summary["backtest_orders"] == 4
    pnl, backtest = Decimal(summary["realized_pnl_quote"]), Decimal(summary["backtest_realized_pnl_quote"])
    assert pnl == backtest and summary["pnl_equals_backtest"] is True, (pnl, backtest)
    assert summary["position_qty"] == summary["backtest_position_qty"]


def test_through_a_fault_every_second_every_crossing_is_traded_exactly_once(tmp_path: Path) -> None:
    # The simulator drops connections, skips sequence ranges, sends malformed frames, stalls and fails
    # public REST every second. A close missed in a disconnect is refetched over REST before deciding.
    klines, expected = window_2023_08(tmp_path)
    events, summary = run_demo(tmp_path, "--klines", str(klines), "--speed", "40", "--fault-every", "1")
    assert signal_days(events) == expected
    assert summary["duplicates"] == 0 and summary["error"] is None
    assert summary["orders"] == summary["filled"] == summary["sim_orders"] == 4
    # Lockstep holds the book on each close until the bot (reconnected, backfilled) is done with it.
    assert summary["pnl_equals_backtest"] is True, summary
    assert Decimal(summary["position_qty"]) < Decimal("0.0001")
    log = [json.loads(x) for x in (tmp_path / "demo.log").read_text().splitlines() if x.startswith("{")]
    assert sum(1 for e in log if e.get("event") == "feed_connected") >= 5, "faults must force reconnects"
    assert any(e.get("event") == "book_synced" for e in log)
