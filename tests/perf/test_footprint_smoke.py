"""`bench.footprint` keeps working end to end: simulator, `tradefleet bot` and the bare websocket
floor all start, the bot keeps up with the stream without a gap, and the report ends with the
machine-readable line. It asserts no CPU or memory figure: those are the benchmark's to print."""

from __future__ import annotations

import json

import pytest

from tests.perf.benchrun import bench_lines


@pytest.mark.slow
def test_footprint_run_measures_bot_and_floor_on_the_same_stream_and_ends_with_the_summary_line() -> None:
    lines = bench_lines("bench.footprint", "--window", "4", "--warmup", "1", "--json")
    last = lines[-1].split()
    assert last[0] == "footprint"
    fields = dict(item.split("=") for item in last[1:])
    assert set(fields) >= {"bot_cpu_pct", "bot_rss_mib", "baseline_cpu_pct", "baseline_rss_mib",
                           "msgs_per_s", "p99_book_apply_us", "bots", "bot_rss_ready_mib", "marginal_mib",
                           "node_bots_by_cpu", "node_bots_by_mem"}  # keys are added, never renamed  # fmt: skip
    raw = next(json.loads(line) for line in lines if line.startswith("{"))
    rates = raw["msgs_per_s"]
    assert rates["depth"] > 0 and rates["trade"] > 0  # both streams reached the bot
    assert raw["baseline_frames"] > 0  # and the floor
    assert raw["counters"]["sequence_gaps"] == 0 and raw["counters"]["malformed_frames"] == 0
    assert [p["name"] for p in raw["procs"]] == ["bot", "baseline", "simulator"]
    assert all(p["rss"] for p in raw["procs"])
