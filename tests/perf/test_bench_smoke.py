"""The benchmarks keep working: `bench.hotpath` runs the bot's real per-frame code on generated and
recorded frames and refuses to report a run in which any book lost sync."""

from __future__ import annotations

import json
from pathlib import Path

from tests.perf.benchrun import bench_lines


def test_hotpath_reports_every_stream_of_both_workloads_with_books_in_sync() -> None:
    result = json.loads(bench_lines("bench.hotpath", "--quick", "--json")[-1])
    assert set(result) == {"generated", "capture"}
    generated = result["generated"]["streams"]
    assert set(generated) == {"depth", "trade", "kline", "book_ticker"}
    assert {"depth", "book_ticker"} <= set(result["capture"]["streams"])
    for workload in result.values():
        for row in workload["streams"].values():
            assert row["n"] > 0 and row["total_us_mean"] > 0 and row["alloc_bytes_per_msg"] > 0
        assert workload["mix_cpu_pct"] > 0


def test_commit_fsync_reports_every_row(tmp_path: Path) -> None:
    line = bench_lines("bench.commit_fsync", "--n", "5", "--dir", str(tmp_path))[-1]
    assert line.startswith("commit_fsync ")
    fields = dict(kv.split("=") for kv in line.split()[1:])
    assert set(fields) == {
        "commit_growing_WAL_p50_us", "commit_reused_WAL_p50_us", "commit_via_the_store_p50_us",
        "fdatasync_append_p50_us", "fdatasync_overwrite_p50_us",
    }  # fmt: skip
    assert all(float(v) > 0 for v in fields.values())
    assert list(tmp_path.iterdir()) == [], "its files are removed"


def test_redis_hot_times_both_clients_on_every_row() -> None:
    lines = bench_lines("bench.redis_hot", "--n", "5")
    assert lines[-1].startswith("redis_hot ")
    fields = dict(kv.split("=") for kv in lines[-1].split()[1:])
    assert {"confirm_ratio", "reserve_ratio", "overlap_resp_p50_us", "block_alone_p50_us"} <= set(fields)
    assert fields["n"] == "5" and all(float(v) > 0 for v in fields.values())
    assert sum(line.startswith(("confirm", "reserve", "0.5 ms")) for line in lines) == 7
