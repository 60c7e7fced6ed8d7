"""The real bot process, observed from outside: Prometheus scrapes it, faults move its counters, and
/readyz follows what breaks and what heals.

`tradefleet bot` runs in its own process against the exchange simulator (in this test's event loop,
faults injected through its control API), exactly as in a pod: the assertions only use what a pod
exposes (HTTP endpoints, the Prometheus query API, the SQLite file).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.obs.botproc import BotProcess
from tests.obs.conftest import Prometheus, values
from tests.obs.test_dashboard import METRIC_RE, queries
from tests.plugins.sim import MakeSim, sim_fault
from tradefleet_sim.server import SimServer

pytestmark = pytest.mark.slow


@pytest.fixture
async def sim(make_sim: MakeSim) -> SimServer:
    return await make_sim(depth_rate=20.0, levels_per_side=300)


@pytest.fixture
async def bot(tmp_path: Path, sim: SimServer, http: aiohttp.ClientSession) -> AsyncIterator[BotProcess]:
    proc = BotProcess(tmp_path, sim)
    proc.start()
    try:
        await proc.wait_ready(http)
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, f"the bot did not stop cleanly ({code}):\n{proc.tail()}"


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, bot: BotProcess, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bot.check_alive()
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not reached in {timeout}s\n{bot.tail()}")


async def test_prometheus_scrapes_the_running_bot(
    bot: BotProcess, prometheus: Prometheus, http: aiohttp.ClientSession
) -> None:
    prometheus.start([f"127.0.0.1:{bot.port}"])
    await prometheus.wait_ready(http)
    q = prometheus.wait_for
    await q(http, 'up{job="tradefleet"} == 1')
    await q(http, 'tradefleet_bot_info{bot="obs-bot",symbol="BTC/USDT",mode="paper",interval="1d"} == 1')

    # Latency histograms per operation, with observations from the live pipeline.
    ops = values(await q(
        http,
        'tradefleet_operation_latency_seconds_count{operation=~"parse|book_apply|candle_update|store_write"} > 0',
        lambda r: len(r) == 4,
    ))  # fmt: skip
    assert len(ops) == 4, ops
    p99 = values(await q(
        http,
        "histogram_quantile(0.99, sum by (le, operation) (rate(tradefleet_operation_latency_seconds_bucket"
        '{operation=~"parse|book_apply"}[1m])))',
        lambda r: len(r) == 2 and all(s["value"][1] not in ("NaN", "+Inf") for s in r),
    ))  # fmt: skip
    assert all(0 < v < 1.0 for v in p99.values()), p99  # a frame parses/applies well under a second
    await q(http, "tradefleet_feed_lag_seconds_count > 0")
    await q(http, "time() - tradefleet_last_event_timestamp_seconds < 30")  # read at scrape time
    await q(http, "tradefleet_mid_price > 0")
    await q(http, "tradefleet_last_close > 0")

    # CPU and memory of the bot process itself.
    rss = next(iter(values(await q(http, "process_resident_memory_bytes")).values()))
    assert 30e6 < rss < 2e9, rss
    await q(http, "rate(process_cpu_seconds_total[1m]) > 0")
    await q(http, "tradefleet_process_cpu_percent > 0")
    await q(http, "tradefleet_process_threads >= 1")
    await q(http, "tradefleet_process_open_fds > 5")
    await q(http, "tradefleet_event_loop_delay_seconds_count > 0")

    # Loss and error counters exist and, with no faults injected, read zero.
    for name in ("tradefleet_sequence_gaps_total", "tradefleet_malformed_frames_total",
                 "tradefleet_store_dropped_total"):  # fmt: skip
        assert values(await q(http, name)) == {f"instance=127.0.0.1:{bot.port},job=tradefleet": 0.0}
    await q(http, 'tradefleet_messages_total{stream="depth"} > 0')
    await q(http, "tradefleet_leader == 1")

    # The exposition passes Prometheus's own lint, and carries every metric the dashboard reads.
    _, text = await bot.get(http, "/metrics")
    lint = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint
    exposed = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    families = {name for name, _ in exposed}
    histograms = {name for name, kind in exposed if kind == "histogram"}
    referenced = {m[0] for e in queries() for m in METRIC_RE.findall(e)}
    missing = {
        n
        for n in referenced
        if n not in families and re.sub(r"_(bucket|sum|count)$", "", n) not in histograms
    }
    assert not missing, f"the running bot does not expose {sorted(missing)}"


async def test_faults_move_exactly_their_counters_and_readyz_follows(
    bot: BotProcess, sim: SimServer, http: aiohttp.ClientSession
) -> None:
    async def counters() -> dict[str, float]:
        _, text = await bot.get(http, "/metrics")
        out: dict[str, float] = {}
        for name in ("tradefleet_malformed_frames_total", "tradefleet_sequence_gaps_total",
                     "tradefleet_resyncs_total", "tradefleet_stale_stream_total",
                     "tradefleet_store_dropped_total"):  # fmt: skip
            out[name] = float(re.search(rf"^{name} (\S+)$", text, re.M)[1])  # type: ignore[index]
        out["reconnects"] = sum(
            float(v) for v in re.findall(r"^tradefleet_reconnects_total\{.*\} (\S+)$", text, re.M)
        )
        out["store_failures"] = sum(
            float(v) for v in re.findall(r"^tradefleet_store_write_failures_total\{.*\} (\S+)$", text, re.M)
        )
        out["depth"] = float(re.search(r'^tradefleet_messages_total\{stream="depth"\} (\S+)$', text, re.M)[1])  # type: ignore[index]
        return out

    async def settle(base: dict[str, float], frames: int = 40) -> dict[str, float]:
        """Counters after `frames` more depth frames went through: any late effect would show by then."""

        async def more() -> bool:
            return (await counters())["depth"] >= base["depth"] + frames

        await eventually(more, f"{frames} more depth frames", bot)
        return await counters()

    def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before[k] for k in before if k != "depth" and after[k] != before[k]}

    failed_seen: set[str] = set()

    async def ready_is(want: bool) -> bool:
        status, body = await bot.get(http, "/readyz")
        failed_seen.update(body["failed"])
        return (status == 200) is want

    # 1. Malformed frames: counted one by one, skipped; nothing else moves, the bot stays ready.
    base = await counters()
    await sim_fault(sim, kind="malformed", count=3, shape="mixed")
    after = await settle(base)
    assert moved(base, after) == {"tradefleet_malformed_frames_total": 3}
    assert await ready_is(True)

    # 2. A sequence gap: detected once, one resync; /readyz names the book until the snapshot arrives
    #    (REST is slowed so the resync window is seconds long, not milliseconds).
    base = after
    await sim_fault(sim, kind="slow_rest", delay_ms=1500)
    await sim_fault(sim, kind="gap", diffs=3, symbol="BTCUSDT")
    failed_seen.clear()
    await eventually(lambda: ready_is(False), "unready after the gap", bot)
    await sim_fault(sim, kind="clear")
    await eventually(lambda: ready_is(True), "ready after the resync", bot)
    assert "book" in failed_seen, failed_seen
    after = await settle(base)
    assert moved(base, after) == {"tradefleet_sequence_gaps_total": 1, "tradefleet_resyncs_total": 1}

    # 3. The stream drops: one reconnect and one book rebuild; unready until the new book is in sync.
    base = after
    await sim_fault(sim, kind="slow_rest", delay_ms=1500)
    failed_seen.clear()
    await sim_fault(sim, kind="drop")
    await eventually(lambda: ready_is(False), "unready after the drop", bot)
    await sim_fault(sim, kind="clear")
    await eventually(lambda: ready_is(True), "ready after reconnecting", bot)
    assert "book" in failed_seen, failed_seen
    after = await settle(base)
    assert moved(base, after) == {"reconnects": 1, "tradefleet_resyncs_total": 1}

    # 4. The store is locked by another process: writes fail and are buffered, /readyz names the
    #    store; once the lock is gone everything buffered is written and nothing was dropped.
    base = after
    lock = sqlite3.connect(bot.db, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        failed_seen.clear()

        async def store_failing() -> bool:
            return (await counters())["store_failures"] > base["store_failures"]

        await eventually(store_failing, "store write failures counted", bot)
        await eventually(lambda: ready_is(False), "unready while the store is locked", bot)
        assert "store" in failed_seen, failed_seen
        assert await bot.metric(http, "tradefleet_store_buffered", 'kind="price"') > 0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await eventually(lambda: ready_is(True), "ready after the store is back", bot)

    async def drained() -> bool:
        return await bot.metric(http, "tradefleet_store_buffered", 'kind="price"') < 50

    await eventually(drained, "price buffer drained", bot)
    after = await counters()
    assert after["tradefleet_store_dropped_total"] == 0
    assert after["tradefleet_sequence_gaps_total"] == base["tradefleet_sequence_gaps_total"]
    assert after["tradefleet_malformed_frames_total"] == base["tradefleet_malformed_frames_total"]
