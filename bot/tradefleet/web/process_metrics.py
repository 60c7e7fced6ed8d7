"""Process health as metrics: CPU, memory, file descriptors, threads, and event-loop lag.

Two sources, on purpose:
- prometheus_client's own collectors (`process_*` from /proc, `python_gc_*`, `python_info`) — the
  names every Prometheus user and stock dashboard already knows;
- `PsutilCollector` (`tradefleet_process_*`) for what those lack: CPU percent since the previous
  scrape, CPU seconds split into user/system, thread count, and the same numbers on platforms
  without /proc (macOS laptops running `tradefleet demo`).

`LoopMonitor` is a task that sleeps a fixed interval and records how late it woke up. A loop that is
blocked by synchronous work wakes it late (lag), a loop that is dead never wakes it (stall); /livez
asks `LoopMonitor.liveness()`. A monitor that was never started reports alive (the HTTP answer itself
proves the loop runs); a started one that never ticks is a stall like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator

import psutil
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tradefleet.metrics import BotMetrics

log = logging.getLogger(__name__)


class PsutilCollector(Collector):
    """Reads the process once per scrape (psutil `oneshot`, a few /proc reads)."""

    def __init__(self, pid: int | None = None) -> None:
        self._proc = psutil.Process(pid if pid is not None else os.getpid())
        # Prime cpu_percent: its first call has nothing to compare with and returns 0.0.
        self._proc.cpu_percent(interval=None)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        p = self._proc
        try:
            with p.oneshot():
                cpu_percent = p.cpu_percent(interval=None)
                times = p.cpu_times()
                mem = p.memory_info()
                threads = p.num_threads()
                fds = p.num_fds() if hasattr(p, "num_fds") else p.num_handles()
                ctx = p.num_ctx_switches()
        except psutil.Error as e:  # the process is ours, so this is a platform quirk: skip, never fail
            log.warning("psutil could not read the process: %s", e)
            return
        cpu = CounterMetricFamily(
            "tradefleet_process_cpu_seconds", "CPU time used by this process", labels=["mode"]
        )
        cpu.add_metric(["user"], times.user)
        cpu.add_metric(["system"], times.system)
        yield cpu
        yield GaugeMetricFamily(
            "tradefleet_process_cpu_percent",
            "CPU use since the previous scrape, percent of one core (200 = two cores busy)",
            value=cpu_percent,
        )
        yield GaugeMetricFamily(
            "tradefleet_process_resident_memory_bytes", "Resident set size", value=float(mem.rss)
        )
        yield GaugeMetricFamily(
            "tradefleet_process_virtual_memory_bytes", "Virtual memory size", value=float(mem.vms)
        )
        yield GaugeMetricFamily("tradefleet_process_open_fds", "Open file descriptors", value=float(fds))
        yield GaugeMetricFamily("tradefleet_process_threads", "OS threads", value=float(threads))
        switches = CounterMetricFamily(
            "tradefleet_process_context_switches", "Context switches", labels=["kind"]
        )
        switches.add_metric(["voluntary"], float(ctx.voluntary))
        switches.add_metric(["involuntary"], float(ctx.involuntary))
        yield switches


_installed: weakref.WeakKeyDictionary[CollectorRegistry, PsutilCollector] = weakref.WeakKeyDictionary()


def install_process_metrics(registry: CollectorRegistry) -> PsutilCollector:
    """Register the standard process/GC/platform collectors and the psutil one on `registry`.

    Idempotent per registry: a runtime rebuilt on the same metrics (the demo restarting a bot)
    must not die of "Duplicated timeseries"."""
    existing = _installed.get(registry)
    if existing is not None:
        return existing
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)
    collector = PsutilCollector()
    registry.register(collector)
    _installed[registry] = collector
    return collector


class LoopMonitor:
    """Measures event-loop lag by sleeping `interval` and checking how late the wake-up comes.

    `liveness()` fails when the last tick came later than `threshold`, or when no tick has happened
    for `interval + threshold` (the loop, or this task, is stuck). A late tick clears at the next
    timely one, so one slow snapshot parse fails one probe, not the pod (the kubelet needs
    `failureThreshold` failures in a row).
    """

    def __init__(
        self,
        metrics: BotMetrics,
        *,
        interval: float = 0.5,
        threshold: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or threshold <= 0:
            raise ValueError("interval and threshold must be positive")
        self.metrics = metrics
        self.interval = interval
        self.threshold = threshold
        self._clock = clock
        self.started_at: float | None = None
        self.last_tick: float | None = None
        self.last_lag = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Tick until cancelled."""
        self.started_at = self._clock()
        while True:
            before = self._clock()
            await asyncio.sleep(self.interval)
            now = self._clock()
            lag = max(0.0, now - before - self.interval)
            self.last_lag = lag
            self.last_tick = now
            self.ticks += 1
            self.metrics.loop_lag.set(lag)
            self.metrics.loop_delay.observe(lag)

    def start(self) -> asyncio.Task[None]:
        """Run the monitor as a task of the current loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="loop-monitor")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def liveness(self) -> dict[str, tuple[bool, str]]:
        if self.started_at is None:
            return {"event_loop": (True, "monitor not running; this answer is the only evidence")}
        since = self._clock() - (self.last_tick if self.last_tick is not None else self.started_at)
        if since > self.interval + self.threshold:
            return {"event_loop": (False, f"no tick for {since:.3f}s (threshold {self.threshold}s)")}
        if self.last_lag > self.threshold:
            return {
                "event_loop": (False, f"loop ran {self.last_lag:.3f}s late (threshold {self.threshold}s)")
            }
        return {"event_loop": (True, f"lag {self.last_lag * 1000:.1f}ms")}
