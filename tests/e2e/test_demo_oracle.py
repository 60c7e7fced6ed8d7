"""`tradefleet demo` end to end: the simulator replays real BTCUSDT daily candles over websockets, the
bot warms up over REST (ccxt), trades, and leaves a store. Run as the user runs it (a subprocess of
the real CLI), asserted on its JSON lines and the SQLite file it leaves behind."""

from __future__ import annotations

import csv
import json
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


def test_exchange_mode_orders_fill_at_the_crossing_and_pnl_matches_a_naive_backtest(tmp_path: Path) -> None:
    # 2024-03 onwards: 200 warm-up candles, then ~460 live ones with 4 crossings. 8 candles/s leaves
    # each order 125 ms to fill on the candle that caused it (orders take ~12 ms here; ccxt's client-side
    # rate limiter can hold the first one ~200 ms right after start-up).
    start = 2400
    klines, closes = write_subset(tmp_path, start, None)
    events, summary = run_demo(tmp_path, "--klines", str(klines), "--no-faults", "--speed", "8")
    expected = [(to_iso(t), side) for t, side in oracle_days(closes, start)]
    assert signal_days(events) == expected and len(expected) == 4
    assert summary["duplicates"] == 0
    actionable = summary["orders"]
    assert actionable == summary["filled"] == summary["sim_orders"]
    assert actionable == 4
    pnl, backtest = Decimal(summary["realized_pnl_quote"]), Decimal(summary["backtest_realized_pnl_quote"])
    traded = Decimal(1000) * actionable
    # Fills walk a real book one tick from the close and sizes round to the lot step: cents, not dollars.
    assert abs(pnl - backtest) <= traded * Decimal("0.0005"), (pnl, backtest)
    assert Decimal(summary["position_qty"]) < Decimal("0.0001")  # flat but for sub-lot dust
    orders = [e for e in events if e.get("event") == "order"]
    assert {o["status"] for o in orders} >= {"PENDING", "FILLED"}


def test_signals_survive_dropped_connections_gaps_and_failing_rest(tmp_path: Path) -> None:
    start = 2500
    klines, closes = write_subset(tmp_path, start, 2900)
    events, summary = run_demo(
        tmp_path, "--klines", str(klines), "--speed", "15", "--fault-every", "1", "--mode", "paper"
    )
    expected = [(to_iso(t), side) for t, side in oracle_days(closes, start)]
    assert signal_days(events) == expected and expected
    assert summary["duplicates"] == 0 and summary["error"] is None
    log = [json.loads(x) for x in (tmp_path / "demo.log").read_text().splitlines() if x.startswith("{")]
    kinds = {e.get("event") for e in log}
    assert "feed_connected" in kinds and "book_synced" in kinds
    reconnects = sum(1 for e in log if e.get("event") == "feed_connected")
    assert reconnects >= 2, "the simulator's faults must have forced at least one reconnect"
