"""Every Prometheus metric a bot exposes, created on a registry injected per bot.

One `BotMetrics` per bot process (and per test: each test gets a fresh `CollectorRegistry`, so
counters never leak between tests). Names follow Prometheus conventions: `_total` counters,
`_seconds` histograms in base units, `_bytes` for sizes.

Loss ratio in PromQL (documented in the README):
    rate(tradefleet_sequence_gaps_total[5m]) / rate(tradefleet_messages_total{stream="depth"}[5m])
    rate(tradefleet_malformed_frames_total[5m]) / rate(tradefleet_messages_total[5m])
    rate(tradefleet_store_dropped_total[5m]) / rate(tradefleet_store_enqueued_total[5m])
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Microseconds to seconds: the hot path lives in 10 µs – 1 ms, REST round trips in 1 ms – 5 s.
LATENCY_BUCKETS = (
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5,
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

OPERATIONS = (
    "parse",  # frame received -> parsed event
    "book_apply",  # depth diff applied to the local book
    "candle_update",  # kline -> candle + SMA + crossover decision
    "signal_to_order",  # signal decided -> order request sent
    "order_ack",  # order request sent -> exchange acknowledgement
    "event_to_stored",  # exchange event received -> written to the store
    "store_write",  # one batch write to the store
)


class BotMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "tradefleet_operation_latency_seconds",
            "Latency of one pipeline operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        for op in OPERATIONS:
            self.latency.labels(op)
        self.feed_lag = Histogram(
            "tradefleet_feed_lag_seconds",
            "Exchange event time to local processing (includes clock offset to the exchange)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "tradefleet_messages_total", "Market-data frames received", ["stream"], registry=r
        )
        self.malformed = Counter(
            "tradefleet_malformed_frames_total", "Frames that could not be parsed (skipped)", registry=r
        )
        self.gaps = Counter("tradefleet_sequence_gaps_total", "Depth update id gaps detected", registry=r)
        self.resyncs = Counter("tradefleet_resyncs_total", "Order book rebuilds from a snapshot", registry=r)
        self.reconnects = Counter(
            "tradefleet_reconnects_total", "Websocket reconnects", ["reason"], registry=r
        )
        self.stale = Counter(
            "tradefleet_stale_stream_total", "Streams declared dead by the watchdog", registry=r
        )
        self.rest_errors = Counter(
            "tradefleet_rest_errors_total", "REST errors by kind", ["kind"], registry=r
        )
        self.store_failures = Counter(
            "tradefleet_store_write_failures_total", "Failed store writes", ["kind"], registry=r
        )
        self.store_retries = Counter("tradefleet_store_retries_total", "Store write retries", registry=r)
        self.store_enqueued = Counter(
            "tradefleet_store_enqueued_total", "Records queued for the store", ["kind"], registry=r
        )
        self.store_dropped = Counter(
            "tradefleet_store_dropped_total",
            "Price samples dropped because the store buffer was full (oldest first)",
            registry=r,
        )
        self.store_buffered = Gauge(
            "tradefleet_store_buffered", "Records waiting for the store", ["kind"], registry=r
        )
        self.signals = Counter("tradefleet_signals_total", "Crossover signals", ["side"], registry=r)
        self.orders = Counter("tradefleet_orders_total", "Orders submitted", ["side"], registry=r)
        self.order_updates = Counter(
            "tradefleet_order_updates_total", "Order updates applied", ["status"], registry=r
        )
        self.orders_rejected = Counter(
            "tradefleet_orders_rejected_total", "Orders the exchange rejected", registry=r
        )
        self.book_in_sync = Gauge("tradefleet_book_in_sync", "1 while the local book is in sync", registry=r)
        self.connected = Gauge("tradefleet_stream_connected", "1 while the market stream is up", registry=r)
        self.warmed_up = Gauge("tradefleet_warmed_up", "1 once the long SMA has enough candles", registry=r)
        self.leader = Gauge("tradefleet_leader", "1 while this replica holds the trading lease", registry=r)
        self.lease_errors = Counter(
            "tradefleet_lease_errors_total", "Lease operations that could not reach Redis", registry=r
        )
        self.position_qty = Gauge("tradefleet_position_qty", "Open position in the base asset", registry=r)
        self.sma = Gauge("tradefleet_sma", "Current SMA values", ["window"], registry=r)
        self.last_price = Gauge("tradefleet_last_close", "Close of the last closed candle", registry=r)
        self.loop_lag = Gauge(
            "tradefleet_event_loop_lag_seconds", "How late the event loop runs a scheduled tick", registry=r
        )
