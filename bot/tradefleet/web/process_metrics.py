"""Process health as metrics: CPU, memory, file descriptors, threads, and event-loop lag.

Two sources, on purpose:
- the standard collectors (`process_*` from /proc, `python_gc_*`, `python_info`, as prometheus_client
  exposes them, from `tradefleet.prom`) — the names every Prometheus user and stock dashboard knows;
- `PsutilCollector` (`tradefleet_process_*`) for what those lack: CPU percent since the previous
  scrape, CPU seconds split into user/system, thread count, and the same numbers on platforms
  without /proc (macOS laptops running `tradefleet demo`). On Linux it reads /proc/self itself (three
  small files per scrape) and psutil is not imported: ~1 MiB of RSS a bot (issue #17's import diet);
  elsewhere it asks psutil.

`LoopMonitor` is a task that sleeps a fixed interval and records how late it woke up. A loop that is
blocked by synchronous work wakes it late (lag), a loop that is dead never wakes it (stall); /livez
asks `LoopMonitor.liveness()`. A monitor that was never started reports alive (the HTTP answer itself
proves the loop runs); a started one that never ticks is a stall like any other.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tradefleet.metrics import BotMetrics
from tradefleet.prom import (
    Family,
    GcCollector,
    PlatformCollector,
    ProcessCollector,
    Registry,
    counter_family,
    gauge_value,
)
from tradefleet.tasks import stop_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessSample:
    user_s: float
    system_s: float
    rss: int
    vms: int
    threads: int
    fds: int
    voluntary: int
    involuntary: int


class ProcfsReader:
    """One process's figures from Linux's /proc/PID/{stat,status,fd}, without psutil."""

    available = os.path.exists("/proc/self/stat")

    def __init__(self, pid: int) -> None:
        self.root = f"/proc/{pid}"
        self.ticks = float(os.sysconf("SC_CLK_TCK"))
        self.page = os.sysconf("SC_PAGE_SIZE")

    def read(self) -> ProcessSample:
        with open(f"{self.root}/stat", "rb") as f:
            stat = f.read()
        # Fields after the command name, which is in parentheses and may itself hold spaces or ')'.
        rest = stat[stat.rindex(b")") + 2 :].split()
        switches: dict[bytes, int] = {}
        with open(f"{self.root}/status", "rb") as f:
            for line in f:
                key, _, value = line.partition(b":")
                if key.endswith(b"ctxt_switches"):
                    switches[key] = int(value)
        return ProcessSample(
            user_s=int(rest[11]) / self.ticks,  # field 14, utime
            system_s=int(rest[12]) / self.ticks,  # field 15, stime
            threads=int(rest[17]),  # field 20, num_threads
            vms=int(rest[20]),  # field 23, vsize (bytes)
            rss=int(rest[21]) * self.page,  # field 24, rss (pages)
            fds=len(os.listdir(f"{self.root}/fd")),
            voluntary=switches.get(b"voluntary_ctxt_switches", 0),
            involuntary=switches.get(b"nonvoluntary_ctxt_switches", 0),
        )


class PsutilReader:
    """The same figures through psutil, for platforms without /proc (imported only there)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._proc = psutil.Process(pid)

    def read(self) -> ProcessSample:
        p = self._proc
        with p.oneshot():
            times = p.cpu_times()
            mem = p.memory_info()
            fds = p.num_fds() if hasattr(p, "num_fds") else p.num_handles()
            ctx = p.num_ctx_switches()
            return ProcessSample(
                user_s=times.user, system_s=times.system, rss=mem.rss, vms=mem.vms, threads=p.num_threads(),
                fds=fds, voluntary=ctx.voluntary, involuntary=ctx.involuntary,
            )  # fmt: skip


class PsutilCollector:
    """Reads the process once per scrape: /proc on Linux, psutil elsewhere (`reader` to choose)."""

    def __init__(self, pid: int | None = None, *, reader: type[ProcfsReader | PsutilReader] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        pid = pid if pid is not None else os.getpid()
        chosen = reader or (ProcfsReader if ProcfsReader.available else PsutilReader)
        self._reader: ProcfsReader | PsutilReader = chosen(pid)
        self._clock = clock
        # CPU percent is CPU time over wall time since the previous scrape (as psutil's cpu_percent).
        first = self._reader.read()
        self._last = (clock(), first.user_s + first.system_s)

    def collect(self) -> Iterator[Family]:
        try:
            sample = self._reader.read()
        except Exception as e:  # the process is ours, so this is a platform quirk: skip, never fail
            log.warning("could not read the process: %s", e)
            return
        now, cpu_s = self._clock(), sample.user_s + sample.system_s
        then, cpu_then = self._last
        self._last = (now, cpu_s)
        cpu_percent = 100.0 * (cpu_s - cpu_then) / (now - then) if now > then else 0.0
        cpu = counter_family("tradefleet_process_cpu_seconds", "CPU time used by this process", ["mode"])
        cpu.add_metric(["user"], sample.user_s)
        cpu.add_metric(["system"], sample.system_s)
        yield cpu
        yield gauge_value(
            "tradefleet_process_cpu_percent",
            "CPU use since the previous scrape, percent of one core (200 = two cores busy)",
            cpu_percent,
        )
        yield gauge_value("tradefleet_process_resident_memory_bytes", "Resident set size", float(sample.rss))
        yield gauge_value("tradefleet_process_virtual_memory_bytes", "Virtual memory size", float(sample.vms))
        fds = float(sample.fds)
        yield gauge_value("tradefleet_process_open_fds", "Open file descriptors", fds)
        yield gauge_value("tradefleet_process_threads", "OS threads", float(sample.threads))
        switches = counter_family("tradefleet_process_context_switches", "Context switches", ["kind"])
        switches.add_metric(["voluntary"], float(sample.voluntary))
        switches.add_metric(["involuntary"], float(sample.involuntary))
        yield switches


_installed: weakref.WeakKeyDictionary[Registry, PsutilCollector] = weakref.WeakKeyDictionary()


def install_process_metrics(registry: Registry) -> PsutilCollector:
    """Register the standard process/GC/platform collectors and the psutil one on `registry`.

    Idempotent per registry: a runtime rebuilt on the same metrics (the demo restarting a bot)
    must not die of "Duplicated timeseries"."""
    existing = _installed.get(registry)
    if existing is not None:
        return existing
    registry.register(ProcessCollector())
    registry.register(GcCollector())
    registry.register(PlatformCollector())
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
        await stop_task(self._task)
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
