"""BotMetrics and the process collectors on a fresh registry per test, read with get_sample_value."""

from __future__ import annotations

import os

import psutil
import pytest

from tradefleet.metrics import OPERATIONS, BotMetrics
from tradefleet.prom import Registry
from tradefleet.web.process_metrics import LoopMonitor, install_process_metrics


def test_every_operation_and_loss_series_exists_at_zero_before_anything_happens(metrics: BotMetrics) -> None:
    get = metrics.registry.get_sample_value
    for op in OPERATIONS:
        assert get("tradefleet_operation_latency_seconds_count", {"operation": op}) == 0
    assert get("tradefleet_messages_total", {"stream": "depth"}) == 0
    assert get("tradefleet_signals_total", {"side": "BUY"}) == 0
    assert get("tradefleet_store_enqueued_total", {"kind": "price"}) == 0
    assert get("tradefleet_sequence_gaps_total") == 0


def test_latency_buckets_resolve_microseconds(metrics: BotMetrics) -> None:
    metrics.op_latency["parse"].observe(0.000_003)  # 3 µs
    bucket = metrics.registry.get_sample_value
    labels = {"operation": "parse"}
    assert bucket("tradefleet_operation_latency_seconds_bucket", {**labels, "le": "2.5e-06"}) == 0
    assert bucket("tradefleet_operation_latency_seconds_bucket", {**labels, "le": "5e-06"}) == 1
    assert bucket("tradefleet_operation_latency_seconds_count", labels) == 1


def test_prebound_children_are_the_labelled_series(metrics: BotMetrics) -> None:
    metrics.stream_messages["depth"].inc(2)
    metrics.messages.labels("depth").inc()
    assert metrics.registry.get_sample_value("tradefleet_messages_total", {"stream": "depth"}) == 3


def test_identity_is_one_series_and_replaced_not_added(metrics: BotMetrics) -> None:
    metrics.set_identity(bot="a", exchange="binance", symbol="BTC/USDT", mode="paper", interval="1m")
    metrics.set_identity(bot="a", exchange="binance", symbol="BTC/USDT", mode="live", interval="1m")
    info = [s for m in metrics.registry.collect() if m.name == "tradefleet_bot_info" for s in m.samples]
    assert [(s.labels["mode"], s.value) for s in info] == [("live", 1.0)]


def test_counters_sum_over_labels_for_status(metrics: BotMetrics) -> None:
    metrics.reconnects.labels("stale").inc()
    metrics.reconnects.labels("closed").inc(2)
    metrics.malformed.inc(3)
    totals = metrics.counters()
    assert totals["reconnects"] == 3
    assert totals["malformed_frames"] == 3
    assert totals["sequence_gaps"] == 0


def test_process_collectors_report_this_process() -> None:
    registry = Registry()
    install_process_metrics(registry)
    get = registry.get_sample_value
    me = psutil.Process(os.getpid())
    rss = get("tradefleet_process_resident_memory_bytes")
    assert rss is not None and abs(rss - me.memory_info().rss) < 50e6
    assert get("process_resident_memory_bytes") is not None
    assert get("tradefleet_process_threads") == pytest.approx(me.num_threads(), abs=2)
    assert (get("tradefleet_process_open_fds") or 0) > 2
    assert (get("tradefleet_process_cpu_seconds_total", {"mode": "user"}) or 0) > 0
    sum(range(3_000_000))  # burn some CPU between two scrapes
    assert (get("tradefleet_process_cpu_percent") or 0) > 0


def test_the_proc_reader_and_psutil_read_the_same_process_alike() -> None:
    """On Linux the collector reads /proc itself (psutil is not imported: ~1 MiB a bot); elsewhere it
    asks psutil. Both readers, on this process, against psutil's own answers."""
    import threading

    from tradefleet.web.process_metrics import ProcfsReader, PsutilCollector, PsutilReader

    assert ProcfsReader.available  # the tests run on Linux: the /proc path is the one under test
    me = psutil.Process(os.getpid())
    stop = threading.Event()
    extra = threading.Thread(target=stop.wait)  # one more thread: the count must follow it
    extra.start()
    try:
        for reader in (ProcfsReader, PsutilReader):
            sample = reader(os.getpid()).read()
            times, mem, ctx = me.cpu_times(), me.memory_info(), me.num_ctx_switches()
            assert sample.user_s == pytest.approx(times.user, abs=0.5)
            assert sample.system_s == pytest.approx(times.system, abs=0.5)
            assert sample.rss == pytest.approx(mem.rss, rel=0.2)
            assert sample.vms == pytest.approx(mem.vms, rel=0.2)
            assert sample.threads == me.num_threads()
            assert sample.fds == pytest.approx(me.num_fds(), abs=3)
            assert 0 < sample.voluntary <= ctx.voluntary and sample.involuntary <= ctx.involuntary
    finally:
        stop.set()
        extra.join()
    ticks = iter([100.0, 101.0])
    collector = PsutilCollector(reader=ProcfsReader, clock=lambda: next(ticks))
    sum(range(3_000_000))  # CPU between the collector's first reading and the scrape
    percent = next(m for m in collector.collect() if m.name == "tradefleet_process_cpu_percent")
    assert 0 < percent.samples[0].value <= 100 * (os.cpu_count() or 1)  # CPU seconds over the 1 s clock


def test_installing_process_metrics_twice_on_one_registry_is_harmless() -> None:
    registry = Registry()
    first = install_process_metrics(registry)
    assert install_process_metrics(registry) is first
    assert registry.get_sample_value("process_open_fds") is not None


def test_loop_monitor_rejects_nonsense_and_reports_not_started_as_alive(metrics: BotMetrics) -> None:
    with pytest.raises(ValueError):
        LoopMonitor(metrics, interval=0)
    ok, detail = LoopMonitor(metrics).liveness()["event_loop"]
    assert ok and "not running" in detail
