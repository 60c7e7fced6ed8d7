"""Every Prometheus metric a bot exposes, created on a registry injected per bot.

One `BotMetrics` per bot process (and per test: each test gets a fresh `Registry`, so
counters never leak between tests). Names follow Prometheus conventions: `_total` counters,
`_seconds` histograms in base units, `_bytes` for sizes, `_timestamp_seconds` for points in time
(an age is `time() - x` in PromQL, so a stuck process cannot report a fresh-looking age).

This module only declares metrics (on `tradefleet.prom`, not prometheus_client: README "Memory"). It
refuses to read the clock, the process or the network: process CPU/memory come from
`tradefleet.web.process_metrics` (/proc, and the standard collectors), and who observes what is the
business of the component that does the work.

Identity: `tradefleet_bot_info{bot,exchange,symbol,mode,interval} 1` (set by `set_identity`) joins the
bot's name onto any series of the same scrape target:
    tradefleet_leader * on(job, instance) group_left(bot) tradefleet_bot_info

Derived rates and ratios (the dashboard `dashboards/tradefleet.json` uses exactly these):
    latency p99 per operation:
        histogram_quantile(0.99,
          sum by (le, operation) (rate(tradefleet_operation_latency_seconds_bucket[5m])))
    market-data frames per second:   sum by (stream) (rate(tradefleet_messages_total[5m]))
    depth loss ratio (gaps per diff):
        rate(tradefleet_sequence_gaps_total[5m]) / rate(tradefleet_messages_total{stream="depth"}[5m])
    malformed ratio:
        rate(tradefleet_malformed_frames_total[5m])
          / sum without (stream) (rate(tradefleet_messages_total[5m]))
    store loss ratio (price samples; nothing else is ever dropped):
        rate(tradefleet_store_dropped_total[5m]) / rate(tradefleet_store_enqueued_total{kind="price"}[5m])
    store error rate: sum by (kind) (rate(tradefleet_store_write_failures_total[5m]))
    REST error rate:  sum by (kind) (rate(tradefleet_rest_errors_total[5m]))
    CPU (cores):      rate(process_cpu_seconds_total[5m])   (or tradefleet_process_cpu_percent / 100)
    feed silence:     time() - tradefleet_last_event_timestamp_seconds
    leaders per bot (must be exactly 1):
        sum by (bot) (tradefleet_leader * on(job, instance) group_left(bot) tradefleet_bot_info)
"""

from __future__ import annotations

from tradefleet.prom import Counter, Gauge, Histogram, Registry

# Microseconds to seconds: the hot path lives in 5 µs – 1 ms, REST round trips in 1 ms – 10 s.
# A 1-2.5-5 ladder per decade keeps histogram_quantile's interpolation error below ~2.5x anywhere.
LATENCY_BUCKETS = (
    0.000_001, 0.000_002_5, 0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5,
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# Feed lag includes the network and the clock offset to the exchange: milliseconds to a minute.
FEED_LAG_BUCKETS = (
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

# How late the event loop runs a timer: anything above ~100 ms is visible in the latency panels.
LOOP_DELAY_BUCKETS = (0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

OPERATIONS = (
    "parse",  # frame received -> parsed event
    "book_apply",  # depth diff applied to the local book
    "candle_update",  # kline -> candle + SMA + crossover decision
    "signal_to_order",  # signal decided -> order request sent
    "order_ack",  # order request sent -> exchange acknowledgement
    "event_to_stored",  # exchange event received -> written to the store
    "store_write",  # one batch write to the store
)

# Label values created up front, so every series exists (as 0) from the first scrape: a panel or an
# alert on `rate(x[5m])` then works before the first incident instead of showing "no data".
STREAMS = ("depth", "trade", "kline", "book_ticker")
SIDES = ("BUY", "SELL")
# `domain.risk` denial reasons (the word after "risk: ").
RISK_REASONS = ("halted", "risk_state_unknown", "position_cap", "fleet_cap", "quote_asset_cap", "order_rate")
STORE_KINDS = ("price", "candle", "signal", "order", "order_update", "position")


class BotMetrics:
    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        r = self.registry
        self.info = Gauge(
            "tradefleet_bot_info",
            "Identity of this bot process (value 1); join it to name series by bot",
            ["bot", "exchange", "symbol", "mode", "interval"],
            registry=r,
        )
        self.latency = Histogram(
            "tradefleet_operation_latency_seconds",
            "Latency of one pipeline operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Pre-bound children for the hot path: `labels()` is a locked dict lookup that costs ~2 µs,
        # more than the observation itself (~1 µs); `m.op_latency["parse"].observe(dt)` skips it.
        self.op_latency = {op: self.latency.labels(op) for op in OPERATIONS}
        self.feed_lag = Histogram(
            "tradefleet_feed_lag_seconds",
            "Exchange event time to local processing (includes clock offset to the exchange)",
            buckets=FEED_LAG_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "tradefleet_messages_total", "Market-data frames received", ["stream"], registry=r
        )
        self.stream_messages = {stream: self.messages.labels(stream) for stream in STREAMS}
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
        for kind in STORE_KINDS:
            self.store_enqueued.labels(kind)
            self.store_buffered.labels(kind)
        self.signals = Counter("tradefleet_signals_total", "Crossover signals", ["side"], registry=r)
        self.orders = Counter("tradefleet_orders_total", "Orders submitted", ["side"], registry=r)
        for side in SIDES:
            self.signals.labels(side)
            self.orders.labels(side)
        self.order_updates = Counter(
            "tradefleet_order_updates_total", "Order updates applied", ["status"], registry=r
        )
        self.orders_rejected = Counter(
            "tradefleet_orders_rejected_total", "Orders the exchange rejected", registry=r
        )
        self.book_in_sync = Gauge("tradefleet_book_in_sync", "1 while the local book is in sync", registry=r)
        self.ticker_checks = Counter(
            "tradefleet_book_ticker_checks_total",
            "bookTicker frames whose update id equals the book's, compared with the book's top",
            ["result"],
            registry=r,
        )
        for result in ("match", "mismatch"):
            self.ticker_checks.labels(result)
        self.close_rehearsals = Counter(
            "tradefleet_close_rehearsals_total",
            "Order paths rehearsed just before a candle's close (engine.hot_close), by what would follow: "
            "order, no_order (a skip reason), not_ready (the manager is busy or recovering), failed",
            ["result"],
            registry=r,
        )
        for result in ("order", "no_order", "not_ready", "failed"):
            self.close_rehearsals.labels(result)
        self.close_forecast_error = Gauge(
            "tradefleet_close_forecast_error_seconds",
            "The last closing kline frame's arrival minus its forecast (positive: later than forecast); "
            "beyond hot_close_ms either way, the close found the loop asleep",
            registry=r,
        )
        self.last_event = Gauge(
            "tradefleet_last_event_timestamp_seconds",
            "Unix time of the last market-data event the engine handled (age = time() - this)",
            registry=r,
        )
        self.connected = Gauge("tradefleet_stream_connected", "1 while the market stream is up", registry=r)
        self.warmed_up = Gauge("tradefleet_warmed_up", "1 once the long SMA has enough candles", registry=r)
        self.leader = Gauge("tradefleet_leader", "1 while this replica holds the trading lease", registry=r)
        self.lease_errors = Counter(
            "tradefleet_lease_errors_total", "Lease operations that could not reach Redis", registry=r
        )
        self.events_buffered = Gauge(
            "tradefleet_events_buffered", "Event stream entries waiting for Redis", ["stream"], registry=r
        )
        self.events_dropped = Counter(
            "tradefleet_events_dropped_total",
            "Event stream entries dropped because the buffer was full (oldest first)",
            ["stream"],
            registry=r,
        )
        self.event_errors = Counter(
            "tradefleet_event_publish_errors_total", "Event batches Redis did not accept", registry=r
        )
        self.position_qty = Gauge("tradefleet_position_qty", "Open position in the base asset", registry=r)
        self.position_mismatch = Gauge(
            "tradefleet_position_mismatch_qty",
            "Exchange account balance of the base asset minus the stored position (0 when they agree)",
            registry=r,
        )
        self.sma = Gauge("tradefleet_sma", "Current SMA values", ["window"], registry=r)
        self.last_price = Gauge("tradefleet_last_close", "Close of the last closed candle", registry=r)
        self.mid_price = Gauge(
            "tradefleet_mid_price", "Mid of the local book's best bid and ask (live)", registry=r
        )
        self.loop_lag = Gauge(
            "tradefleet_event_loop_lag_seconds", "How late the event loop ran the last tick", registry=r
        )
        self.loop_delay = Histogram(
            "tradefleet_event_loop_delay_seconds",
            "How late the event loop runs scheduled monitor ticks (distribution)",
            buckets=LOOP_DELAY_BUCKETS,
            registry=r,
        )

        # Risk controls (`engine.risk_gate`): the kill switch, caps and loss limits.
        self.risk_halted = Gauge(
            "tradefleet_risk_halted", "1 while a halt (fleet or this bot) is in force", registry=r
        )
        self.risk_state_known = Gauge(
            "tradefleet_risk_state_known",
            "1 while the kill switch was read within risk_stale_ms (0: opening nothing)",
            registry=r,
        )
        self.risk_denials = Counter(
            "tradefleet_risk_denials_total", "Orders the risk rules refused", ["reason"], registry=r
        )
        for reason in RISK_REASONS:
            self.risk_denials.labels(reason)
        self.risk_exposure = Gauge(
            "tradefleet_risk_exposure_quote",
            "Quote this bot holds or has reserved in the fleet's exposure table",
            registry=r,
        )
        self.risk_equity = Gauge(
            "tradefleet_risk_equity_quote", "Realized + unrealized P&L at the last mark", registry=r
        )
        self.risk_drawdown = Gauge(
            "tradefleet_risk_drawdown_quote", "Equity below its peak (>= 0)", registry=r
        )
        self.risk_fleet_drawdown = Gauge(
            "tradefleet_risk_fleet_drawdown_quote",
            "The scope's summed equity below its peak, as this leader last reported it (>= 0; reported "
            "only with a fleet drawdown limit)",
            registry=r,
        )

    def set_identity(self, *, bot: str, exchange: str, symbol: str, mode: str, interval: str) -> None:
        """Publish who this process is (`tradefleet_bot_info`); call once at start."""
        self.info.clear()
        self.info.labels(bot, exchange, symbol, mode, interval).set(1)

    def counters(self) -> dict[str, float]:
        """Totals of the loss and error counters (summed over labels), for `/status` and the CLI.

        Collects only these counters, not the registry: `/status` is built every second, and a
        whole-registry collect (histograms, process and GC collectors reading /proc) cost ~1.9 ms
        each time, as much CPU as the bot's whole market-data path."""
        counters = {
            "messages": self.messages,
            "malformed_frames": self.malformed,
            "sequence_gaps": self.gaps,
            "resyncs": self.resyncs,
            "reconnects": self.reconnects,
            "stale_streams": self.stale,
            "rest_errors": self.rest_errors,
            "store_write_failures": self.store_failures,
            "store_dropped": self.store_dropped,
            "signals": self.signals,
            "orders": self.orders,
            "orders_rejected": self.orders_rejected,
            "lease_errors": self.lease_errors,
            "risk_denials": self.risk_denials,
        }
        out = dict.fromkeys(counters, 0.0)
        for key, counter in counters.items():
            for family in counter.collect():
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        out[key] += sample.value
        return out
