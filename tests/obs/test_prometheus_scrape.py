"""A real Prometheus scrapes a BotHttpServer whose metrics are moved by real work.

The work is the bot's own hot path on generated Binance combined-stream frames: the real
`BinanceSpot.parse` and the real `OrderBook`, timed into the latency histograms, with malformed
frames and sequence gaps injected at known counts. Prometheus (Debian's binary, own port, own
storage) scrapes it every second; the assertions go through its HTTP query API, so they prove the
exposition is something Prometheus ingests, not just text that looks right.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import aiohttp
import pytest

from tests.obs.conftest import Prometheus, values
from tradefleet.adapters.binance import BinanceSpot
from tradefleet.domain.market import DepthDiff
from tradefleet.domain.orderbook import OrderBook
from tradefleet.errors import MalformedFrame
from tradefleet.metrics import BotMetrics
from tradefleet.web.http import BotHttpServer

pytestmark = pytest.mark.slow  # a Prometheus server process

MALFORMED_EVERY = 50
GAP_EVERY = 199
FRAMES = 2000


def depth_frame(update_id: int, mid: int) -> bytes:
    data = {
        "e": "depthUpdate", "E": int(time.time() * 1000), "s": "BTCUSDT", "U": update_id, "u": update_id,
        "b": [[f"{mid - 1 - i}.00", f"{0.1 + i:.8f}"] for i in range(5)],
        "a": [[f"{mid + 1 + i}.00", f"{0.2 + i:.8f}"] for i in range(5)],
    }  # fmt: skip
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": data}).encode()


async def drive(metrics: BotMetrics) -> dict[str, int]:
    """Parse and apply FRAMES frames, injecting faults; counts what was injected."""
    adapter, book = BinanceSpot(), OrderBook()
    book.load([("60000.00", "1")], [("60002.00", "1")])
    injected = {"malformed": 0, "gaps": 0, "depth": 0}
    last = 100
    for i in range(1, FRAMES + 1):
        if i % MALFORMED_EVERY == 0:
            frame = b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","U":'  # truncated
            injected["malformed"] += 1
        else:
            step = 2 if i % GAP_EVERY == 0 else 1
            frame = depth_frame(last + step, 60000 + i % 7)
        metrics.messages.labels("depth").inc()
        injected["depth"] += 1
        t0 = time.perf_counter()
        try:
            event = adapter.parse(frame)
        except MalformedFrame:
            metrics.malformed.inc()
            continue
        metrics.latency.labels("parse").observe(time.perf_counter() - t0)
        assert isinstance(event, DepthDiff)
        if event.first_update_id != last + 1:
            metrics.gaps.inc()
            injected["gaps"] += 1
        last = event.final_update_id
        t0 = time.perf_counter()
        book.apply(event.bids, event.asks)
        metrics.latency.labels("book_apply").observe(time.perf_counter() - t0)
        metrics.feed_lag.observe(max(0.0, time.time() - event.event_time / 1000))
        metrics.book_in_sync.set(1)
        metrics.last_event.set(time.time())
        if i % 20 == 0:
            await asyncio.sleep(0.02)  # spread the work over a few scrapes (rate() needs two)
    return injected


async def test_prometheus_ingests_latency_cpu_memory_and_loss_counters(
    endpoint: BotHttpServer, metrics: BotMetrics, prometheus: Prometheus, http: aiohttp.ClientSession
) -> None:
    prometheus.start([f"127.0.0.1:{endpoint.port}"])
    await prometheus.wait_ready(http)
    await prometheus.wait_for(http, "up == 1")  # a first sample before the work, so increase() sees it
    injected = await drive(metrics)
    assert injected["malformed"] == FRAMES // MALFORMED_EVERY
    assert injected["gaps"] > 0

    # Counters reach Prometheus with exactly the injected counts (a scrape after the work is done).
    q = prometheus.wait_for
    exact = f"tradefleet_malformed_frames_total == {injected['malformed']}"
    await q(http, exact)
    await q(http, f"tradefleet_sequence_gaps_total == {injected['gaps']}")
    await q(http, f'tradefleet_messages_total{{stream="depth"}} == {injected["depth"]}')
    await q(http, f'tradefleet_operation_latency_seconds_count{{operation="parse"}} == {FRAMES - 40}')

    # Latency percentiles per operation: real work of microseconds, resolved by the µs buckets.
    p50 = values(
        await q(
            http,
            "histogram_quantile(0.5, sum by (le, operation) "
            '(tradefleet_operation_latency_seconds_bucket{operation=~"parse|book_apply"}))',
            lambda r: len(r) == 2,
        )
    )
    for series, seconds in p50.items():
        assert 0 < seconds < 0.05, (series, seconds)
    # The same p50 from the client's own buckets: Prometheus and the process agree.
    assert p50["operation=parse"] <= 0.01

    # CPU and memory: the standard collector and the psutil one, both plausible for this process.
    rss = values(await q(http, "process_resident_memory_bytes"))
    ps_rss = values(await q(http, "tradefleet_process_resident_memory_bytes"))
    assert 20e6 < next(iter(rss.values())) < 4e9
    assert 20e6 < next(iter(ps_rss.values())) < 4e9
    cpu = values(await q(http, "sum(tradefleet_process_cpu_seconds_total)"))
    assert next(iter(cpu.values())) > 0
    await q(http, "process_cpu_seconds_total > 0")
    await q(http, "tradefleet_process_cpu_percent >= 0")
    await q(http, "tradefleet_process_threads >= 1")
    await q(http, "process_open_fds > 3")
    await q(http, "tradefleet_event_loop_delay_seconds_count > 0")
    await q(http, 'tradefleet_bot_info{bot="btc-usdt",symbol="BTC/USDT",mode="paper"} == 1')
    await q(http, "time() - tradefleet_last_event_timestamp_seconds < 300")

    # The documented loss-ratio query evaluates to the injected ratio.
    ratio = values(
        await q(
            http,
            "increase(tradefleet_malformed_frames_total[1h]) / sum without (stream) (increase(tradefleet_messages_total[1h]))",
        )
    )
    assert ratio and all(0 <= v <= 0.1 for v in ratio.values()), ratio

    # Prometheus's own lint of the exposition is clean.
    async with http.get(f"{endpoint.url}/metrics") as r:
        text = await r.read()
    lint = await asyncio.to_thread(
        subprocess.run, ["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint
