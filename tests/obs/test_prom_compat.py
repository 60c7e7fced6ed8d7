"""`tradefleet.prom` answers /metrics with prometheus_client's bytes (README "Memory": the bot no longer
imports prometheus_client, ~1.3 MiB of RSS). The same metrics are built twice — once on
prometheus_client 0.26 (the test venv has it; the operator uses it), once on `tradefleet.prom` — moved
by the same calls at the same (patched) clock, then exposed for the Accept headers Prometheus, curl
and other scrapers send: body and Content-Type must be equal, byte for byte."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from prometheus_client.exposition import choose_encoder as their_encoder

from tradefleet import metrics as metrics_module
from tradefleet import prom
from tradefleet.metrics import BotMetrics

ACCEPTS = (
    "",  # curl
    "*/*",
    "text/plain",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=dots",
    "application/openmetrics-text",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text;version=0.0.1",
    "application/openmetrics-text;version=2.0.0;escaping=underscores",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    # Prometheus 3's scrape header, then Prometheus 2's
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,*/*;q=0.1",
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
)  # fmt: skip


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Both libraries stamp `_created` with time.time(): one fixed instant for both."""
    monkeypatch.setattr(time, "time", lambda: 1_767_225_600.125)
    was = gc.isenabled()
    gc.disable()  # python_gc_* must not move between the two collections
    try:
        yield
    finally:
        if was:
            gc.enable()


def exposed(registry: Any, accept: str, ours: bool) -> tuple[str, bytes]:
    encoder, content_type = (prom.choose_encoder if ours else their_encoder)(accept)
    return content_type, encoder(registry)


def assert_same(theirs: Any, ours: prom.Registry) -> None:
    for accept in ACCEPTS:
        expected, got = exposed(theirs, accept, ours=False), exposed(ours, accept, ours=True)
        assert got[0] == expected[0], accept
        if got[1] != expected[1]:  # a readable diff: the first differing line
            for a, b in zip(expected[1].splitlines(), got[1].splitlines(), strict=False):
                assert b == a, accept
        assert got[1] == expected[1], accept


def build(lib: Any, registry: Any) -> None:
    """Every kind of series, with the escapes and float formats the formats must agree on."""
    plain = lib.Counter(
        "demo_events_total", 'Events, "quoted", a back\\slash\nand a new line', registry=registry
    )
    plain.inc(3)
    by = lib.Counter("demo_requests", "Requests by path", ["path", "code"], registry=registry)
    by.labels("/a", "200").inc()
    by.labels(path='we"ird\\pa\nth', code="500").inc(2.5)
    lib.Counter("demo_unused_total", "A labelled counter no one moved", ["kind"], registry=registry)
    g = lib.Gauge("demo_temperature", "A gauge", registry=registry)
    g.set(12_345_678.9)
    big = lib.Gauge("demo_values", "Gauges by kind", ["kind"], registry=registry)
    for kind, value in (("small", 1e-7), ("neg", -12_345_678.0), ("inf", float("inf")), ("nan", float("nan")),
                        ("int", 42), ("huge", 1.5e300), ("tiny_pos", 0.000_002_5)):  # fmt: skip
        big.labels(kind).set(value)
    big.labels("fn").set_function(lambda: 7)
    h = lib.Histogram("demo_latency_seconds", "Latency", ["op"], registry=registry,
                      buckets=(0.000_001, 0.000_002_5, 0.001, 1.0, 10_000_000.0, 123_456_789.0))  # fmt: skip
    for v in (0.0000005, 0.000002, 0.5, 0.5, 2e7, 1e9):
        h.labels("parse").observe(v)
    h.labels("apply")
    lib.Histogram("demo_sizes", "No labels", registry=registry, buckets=(1, 2, 5)).observe(3)


def test_every_series_kind_is_exposed_as_prometheus_client_exposes_it(frozen_clock: None) -> None:
    theirs, ours = prometheus_client.CollectorRegistry(), prom.Registry()
    build(prometheus_client, theirs)
    build(prom, ours)
    assert_same(theirs, ours)


def test_the_bots_metrics_are_exposed_as_prometheus_client_exposes_them(
    frozen_clock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BotMetrics itself, built once on prometheus_client's classes (patched into its module)."""
    ours = BotMetrics()
    for name in ("Counter", "Gauge", "Histogram"):
        monkeypatch.setattr(metrics_module, name, getattr(prometheus_client, name))
    theirs = BotMetrics(prometheus_client.CollectorRegistry())  # type: ignore[arg-type]
    for m in (ours, theirs):
        m.set_identity(bot="btc", exchange="binance", symbol="BTC/USDT", mode="paper", interval="1m")
        m.messages.labels("depth").inc(10)
        m.gaps.inc()
        m.op_latency["parse"].observe(0.000_012)
        m.op_latency["book_apply"].observe(0.3)
        m.feed_lag.observe(0.04)
        m.sma.labels("short").set(101.25)
        m.store_buffered.labels("price").set_function(lambda: 3)
        m.loop_delay.observe(0.002)
    assert_same(theirs.registry, ours.registry)


def test_the_standard_collectors_match_prometheus_clients(frozen_clock: None, tmp_path: Path) -> None:
    """process_* from a /proc written here (the real one moves between two reads), python_gc_*,
    python_info."""
    (tmp_path / "self" / "fd").mkdir(parents=True)
    for fd in ("0", "1", "2", "7"):
        (tmp_path / "self" / "fd" / fd).touch()
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1767000000\nprocesses 9\n")
    fields = ["S"] + [str(n) for n in range(1, 50)]  # after "pid (comm)": state, ppid, ...
    fields[11], fields[12], fields[19], fields[20], fields[21] = "1234", "567", "89012", "123456789", "4321"
    (tmp_path / "self" / "stat").write_text("4242 (python3 (x)) " + " ".join(fields) + "\n")
    (tmp_path / "self" / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max open files            1048576              1048576              files\n"
    )
    theirs, ours = prometheus_client.CollectorRegistry(), prom.Registry()
    prometheus_client.ProcessCollector(proc=str(tmp_path), registry=theirs)
    prometheus_client.GCCollector(registry=theirs)
    prometheus_client.PlatformCollector(registry=theirs)
    for collector in (
        prom.ProcessCollector(proc=str(tmp_path)),
        prom.GcCollector(),
        prom.PlatformCollector(),
    ):
        ours.register(collector)
    assert_same(theirs, ours)
    assert ours.get_sample_value("process_open_fds") == 4.0


def test_the_created_series_can_be_switched_off_as_in_prometheus_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROMETHEUS_DISABLE_CREATED_SERIES", "true")
    registry = prom.Registry()
    prom.Counter("c_total", "c", registry=registry).inc()
    text = prom.text_format(registry).decode()
    assert "c_total 1.0" in text and "_created" not in text


def test_what_it_refuses() -> None:
    registry = prom.Registry()
    c = prom.Counter("refused_total", "c", ["kind"], registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        prom.Counter("refused", "again", registry=registry)
    with pytest.raises(ValueError, match=r"call \.labels"):
        c.inc()
    with pytest.raises(ValueError, match="only goes up"):
        c.labels("x").inc(-1)
    with pytest.raises(ValueError, match="label values"):
        c.labels("x", "y")
    with pytest.raises(ValueError, match="invalid metric name"):
        prom.Gauge("has-dash", "g")
    with pytest.raises(ValueError, match="invalid label name"):
        prom.Gauge("g", "g", ["__reserved"])
    with pytest.raises(ValueError, match="le"):
        prom.Histogram("h", "h", ["le"], buckets=(1, 2))
    with pytest.raises(ValueError, match="sorted"):
        prom.Histogram("h", "h", buckets=(2, 1))
