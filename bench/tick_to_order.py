"""Tick -> order: from the closing kline frame arriving on the bot's socket to the order request
arriving at the exchange, end to end over real sockets, with today's path, today's path without its
hot close, and the four-commit path it replaced measured in the same run.

    python -m bench.tick_to_order                  # 200 orders per path, ~8 minutes
    python -m bench.tick_to_order --samples 40     # quicker, rougher tails

What runs: the simulator as its own process (`tradefleet sim`, real BTCUSDT candles replayed as
1-minute candles at `--speed` candles a second with depth, trades and tickers streaming, orders
matched, `--record-order-arrivals`), a real redis-server (the lease's fencing check and the risk
gate's fleet reserve are Redis round trips on the path), and a whole bot in this process
(`BotRuntime`: the websocket feed, the book, the strategy with windows 2/5 so crossings come every few
candles, the buffered store over a SQLite file on disk with `synchronous=FULL`, the order manager,
the risk gate, signing and sending in testnet mode). Nothing on the path is stubbed.

Where the two times are taken, both on the host's CLOCK_MONOTONIC (one clock for both processes),
each at the moment the bytes are on the receiving socket:
- start: the simulator's clock just after its socket write of the frame that closes the candle
  returned with nothing left in its buffer (`Hub.sent_at`, with `SimOptions.record_arrivals`; off,
  the simulator reads no clock). Over loopback TCP the kernel has put the bytes on the receiver's
  socket before the send returns: `_loopback_check` checks that with FIONREAD on 2,000 sends in each
  run and prints the count. Everything the bot does from there counts: waking, reading the socket,
  the frames ahead of the close in the same stream (the book's last diff), parsing.
- end: the bot's clock just after its socket write of the order request returned with nothing left in
  its buffer (`_time_write`): the request is then on the simulator's socket. Also printed: the span to
  the simulator reading it (`ArrivalStamps`: adds the simulator's own scheduling, ~0.06 ms, and up to
  ~2 ms when its core was busy) and to its order handler (adds aiohttp's parsing and routing there,
  ~0.25 ms); and the span measured before 2026-12-05, from the bot's feed being handed the frame to
  the simulator's read, which left out the bot's own reading of the frame and put the simulator's in.
One sample per order the bot sent for a crossing it saw live.

Where they run: the bot (this process) on one CPU, the simulator and Redis on another (`--no-pin`
leaves it to the scheduler). In production neither shares the bot's cores; here, unpinned, the
simulator often shared the bot's and read the request only once the bot let go of the CPU.

The simulator shares this machine's CPUs, and the replay moves its book onto the candle's price
before each kline frame (a real exchange's close is just another trade): the diff just ahead of the
closing frame is the bot's to read first. With the simulator's default 1,000 levels a side, that
burst kept the simulator, and the Redis round trips right after the close, waiting for a core.
`--levels 200` (the default here) keeps it smaller; the bot reads 100 levels either way. And the
replay sends `--progress-frames 8` in-progress kline frames per candle (the simulator's default is
2), each after moving the book along the candle's path, so the diff just ahead of a close moves the
book by the candle's last ninth, not its last third. Binance sends a 1-minute candle's kline frame
about 30 times and the depth diff every 100 ms (~20 levels a side at BTCUSDT): the diff ahead of a
close is small there. From the close on the bot's socket to its feed having it took 0.25-0.29 ms at
the median with 2, and 0.18-0.19 ms with 8 (the same code, in runs minutes apart).

The three paths run one after the other in rounds (fresh bot, store and Redis keys each time; each
path first, second and last in turn) on the same simulator, so all see the same machine load. The
bot's loop is `tradefleet.awake`'s, as in `tradefleet bot`.

The three paths:
- ours: the engine hands the signal to the order manager unstored; the manager sends the lease's
  confirmation and a BUY's fleet reserve (Redis), signs the request, stores the signal with its
  action and the PENDING order in ONE SQLite commit meanwhile, reads both answers straight from their
  sockets, and sends. Before the close, the hot close (`engine.hot_close`, `hot_close_ms=20`, the
  default) has rehearsed that path and held the loop awake.
- cold: the same with `hot_close_ms=0`: the closing frame finds the loop asleep and the path cold.
- baseline: the path before (#17), rebuilt from today's parts so only the storing differs (and no hot
  close): the engine stores the signal (commit 1), the manager stores it again (2), stores the order
  (3) and the action (4), then sends.

Also printed: where the time goes on each path (medians of the per-sample segments, including the
risk gate's share). Ends with one line:
`tick_to_order p50_us=… p99_us=… baseline_p50_us=… baseline_p99_us=… ratio=… samples=… risk_p50_us=…
cold_p50_us=… cold_p99_us=… feed_read_p50_us=… feed_read_p99_us=… disk_median_p50_us=…
disk_median_p99_us=…` (`feed_read_*`: the span before 2026-12-05, for comparison with older figures;
`disk_median_*`: ours with every commit's fsync at most the run's median, `_without_disk_stalls`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import termios
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import RedisServer, free_port, wait_for_port

from tradefleet import awake
from tradefleet.app.runtime import BotRuntime
from tradefleet.config import BotConfig
from tradefleet.domain.market import KlineEvent, MarketEvent
from tradefleet.domain.models import Order, Signal
from tradefleet.engine.order_manager import OrderManager
from tradefleet.logs import setup_logging
from tradefleet.metrics import BotMetrics
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

SEGMENTS = (
    ("inbound", "close on the bot's socket -> its feed has it", "closed", "recv"),
    ("sock_in", "  of which: -> read from the socket", "closed", "sock"),
    ("ws_feed", "  of which: read -> the feed (frames ahead too)", "sock", "recv"),
    ("strategy", "frame -> crossover decided (parse, candle, SMAs)", "recv", "signal"),
    ("engine", "decided -> handed to the order manager", "signal", "handed"),
    ("checks", "handed -> store write starts (all of:)", "handed", "commit0"),
    ("queue", "  handed -> lease check starts", "handed", "lease0"),
    ("hop", "    of which: handed -> the manager acts on it", "handed", "act0"),
    ("lease", "  lease confirm (Redis; ours: overlaps the store)", "lease0", "lease1"),
    ("risk", "  risk gate (checks; a BUY's Redis reserve sent)", "risk0", "risk1"),
    ("decide", "  risk -> store write starts", "risk1", "commit0"),
    ("store", "store writes before the request", "commit0", "commit1"),
    ("to_thread", "  of which: to the store's thread (+ queue)", "commit0", "sql0"),
    ("begin", "  of which: BEGIN IMMEDIATE", "sql0", "sql1"),
    ("rows", "  of which: the rows (order, signal)", "sql1", "sql2"),
    ("fsync", "  of which: COMMIT (the WAL fsync)", "sql2", "sql3"),
    ("back", "  of which: thread -> the manager resumes", "sql3", "commit1"),
    ("to_send", "stored -> request built", "commit1", "submit"),
    ("request", "signs and sends -> on the simulator's socket", "submit", "sent"),
    ("write", "  of which: signs, encodes (to the socket write)", "submit", "written"),
    ("wire", "  of which: the socket write (delivers it)", "written", "sent"),
    ("sim_read", "after: on the sim's socket -> read by the sim", "sent", "arrived"),
    ("sim_edge", "after: read by the sim -> its order handler", "arrived", "handled"),
)


# -- the baseline: the four-commit path, from today's parts ----------------------------------------


class FourCommitOrderManager(OrderManager):
    """The order manager as it was before the one-commit path (#17): the engine stores every signal
    first (`ready_to_act` False: commit 1), `_act` begins by storing it again (2), and the order and
    the signal's action are two more commits (3, 4) before the request."""

    def ready_to_act(self) -> bool:
        return False

    async def _act(self, signal: Signal, queued_at: float) -> None:
        await self.store.insert_signal(signal)
        await super()._act(signal, queued_at)

    async def _commit(self, signal: Signal, order: Order) -> bool:
        if not await self.store.insert_order(order):
            return False
        await self.store.update_signal_action(signal.signal_id, signal.action)
        return True


# -- instrumentation (benchmark only) ---------------------------------------------------------------


@dataclass
class Marks:
    """CLOCK_MONOTONIC ns readings of one bot run: closing frames by candle open time, and the
    order path's steps by signal id (a signal's steps never interleave with another's here: the
    manager acts on one signal at a time)."""

    recv: dict[int, int] = field(default_factory=dict)
    sock: dict[int, int] = field(default_factory=dict)  # closing frames: the websocket's last read
    last_read: list[int] = field(default_factory=lambda: [0])
    steps: dict[str, dict[str, int]] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    sent: dict[str, str] = field(default_factory=dict)  # client order id -> signal id

    def mark(self, name: str) -> None:
        self.current.setdefault(name, time.monotonic_ns())


class TimedAdapter:
    """The venue adapter, noting when each frame that closes a candle reached the feed."""

    def __init__(self, inner: Any, marks: Marks) -> None:
        self.name = inner.name
        self.stream_url = inner.stream_url
        self._parse = inner.parse
        self._recv, self._sock, self._last_read = marks.recv, marks.sock, marks.last_read

    def parse(self, frame: str | bytes) -> MarketEvent | None:
        t = time.monotonic_ns()
        event = self._parse(frame)
        if type(event) is KlineEvent and event.closed:
            self._recv.setdefault(event.open_time, t)
            self._sock.setdefault(event.open_time, self._last_read[0])
        return event


def _time_reads(marks: Marks) -> Callable[[], None]:
    """A clock reading each time aiohttp's client connections take bytes from their sockets
    (`ResponseHandler.data_received`): a closing frame's `sock` is the last one before the feed got
    it. Returns the undo."""
    from aiohttp import client_proto

    received = client_proto.ResponseHandler.data_received
    last = marks.last_read

    def timed(self: Any, data: bytes) -> None:
        last[0] = time.monotonic_ns()
        received(self, data)

    client_proto.ResponseHandler.data_received = timed  # type: ignore[method-assign]

    def undo() -> None:
        client_proto.ResponseHandler.data_received = received  # type: ignore[method-assign]

    return undo


def _time_commit(marks: Marks) -> Callable[[], None]:
    """Clock readings inside the store's one transaction before the request (`commit_order`'s), on
    whatever thread runs it: sql0 BEGIN, sql1 rows, sql2 COMMIT, sql3 committed. Returns the undo."""
    from tradefleet.store import sqlite as sqlite_mod

    write = sqlite_mod._write

    def timed(conn: Any, fn: Callable[[Any], Any]) -> Any:
        if getattr(fn, "__name__", "") != "commit":
            return write(conn, fn)
        steps = marks.current
        steps.setdefault("sql0", time.monotonic_ns())

        def rows(c: Any) -> Any:
            steps.setdefault("sql1", time.monotonic_ns())
            try:
                return fn(c)
            finally:
                steps.setdefault("sql2", time.monotonic_ns())

        try:
            return write(conn, rows)
        finally:
            steps.setdefault("sql3", time.monotonic_ns())

    sqlite_mod._write = timed  # type: ignore[assignment]

    def undo() -> None:
        sqlite_mod._write = write

    return undo


def _time_write(marks: Marks) -> Callable[[], None]:
    """Clock readings around the order request's socket write (`http1`'s connection): `written` just
    before it, `sent` just after it returned with nothing left in the transport's buffer: the request
    was then on the simulator's socket (loopback TCP delivers within the send; `_loopback_check`).
    Returns the undo."""
    from tradefleet.adapters import http1

    send = http1._Connection.send

    def timed(self: Any, data: bytes) -> Any:
        if "submit" not in marks.current:
            return send(self, data)
        marks.current.setdefault("written", time.monotonic_ns())
        answer = send(self, data)
        if self.transport is not None and not self.transport.get_write_buffer_size():
            marks.current.setdefault("sent", time.monotonic_ns())
        return answer

    http1._Connection.send = timed  # type: ignore[method-assign]

    def undo() -> None:
        http1._Connection.send = send  # type: ignore[method-assign]

    return undo


def _around(marks: Marks, before: str, after: str, call: Callable[..., Awaitable[Any]]) -> Any:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        marks.mark(before)
        try:
            return await call(*args, **kwargs)
        finally:
            marks.mark(after)

    return timed


def _started(marks: Marks, before: str, after: str, start: Callable[[], Awaitable[Any]]) -> Any:
    """`_around` for a call that starts its work and hands back a future (`Lease.start_confirm`)."""

    def timed() -> Awaitable[Any]:
        marks.mark(before)
        answer = asyncio.ensure_future(start())
        answer.add_done_callback(lambda _: marks.mark(after))
        return answer

    return timed


class BenchRuntime(BotRuntime):
    """A whole bot; the benchmark wraps the adapter and the order path's steps with clock readings,
    and the baseline swaps in the four-commit order manager."""

    def __init__(self, config: BotConfig, *, baseline: bool, marks: Marks) -> None:
        super().__init__(config, BotMetrics(), holder=f"bench-{config.name}")
        self.baseline = baseline
        self.marks = marks

    async def _build(self) -> None:
        await super()._build()
        self.feed.adapter = TimedAdapter(self.feed.adapter, self.marks)
        strategy, steps = self.engine.strategy, self.marks.steps
        on_signal = strategy.on_signal

        def decided(signal: Signal) -> None:
            steps.setdefault(signal.signal_id, {}).setdefault("signal", time.monotonic_ns())
            on_signal(signal)

        strategy.on_signal = decided

    async def _build_orders(self) -> None:
        await super()._build_orders()
        m = self.marks
        if self.baseline:
            o = self.orders
            self.orders = FourCommitOrderManager(
                config=o.config, store=o.store, execution=o.execution, lease=o.lease, rules=o.rules,
                metrics=o.metrics, publisher=o.publisher, risk=o.risk,
            )  # fmt: skip
        orders = self.orders

        def handing(hand: Callable[[Signal], None]) -> Callable[[Signal], None]:
            def handed(signal: Signal) -> None:
                m.current = m.steps.setdefault(signal.signal_id, {})
                m.mark("handed")
                hand(signal)

            return handed

        orders.submit_signal = handing(orders.submit_signal)  # queued: the baseline, and the engine's worker
        orders.act_now = handing(orders.act_now)  # acted on at once: ours, as its candle closes
        # `confirm()` awaits `start_confirm()`: timing the latter times whichever the manager calls.
        orders.lease.start_confirm = _started(m, "lease0", "lease1", orders.lease.start_confirm)
        # A BUY's reserve is sent here; its answer is read after the commit (`finish_send`).
        orders.risk.start_send = _around(m, "risk0", "risk1", orders.risk.start_send)
        orders._commit = _around(m, "commit0", "commit1", orders._commit)
        orders._act = _around(m, "act0", "act1", orders._act)
        submit = orders.execution.submit

        async def sent(order: Order) -> Any:
            m.mark("submit")
            m.sent.setdefault(order.client_order_id, order.signal_id)
            return await submit(order)

        orders.execution.submit = sent


# -- the run ----------------------------------------------------------------------------------------


class Sim:
    """`tradefleet sim` as its own process."""

    def __init__(self, tmp: Path, speed: float, levels: int, progress_frames: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / "sim.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradefleet.app.cli", "sim", "--port", str(self.port),
             "--kline-interval", "1m", "--speed", str(speed), "--history", "60", "--loop",
             "--depth-rate", "10", "--levels", str(levels), "--relax-limits", "--record-order-arrivals",
             "--progress-frames", str(progress_frames)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, timeout=60)

    def arrivals(self) -> tuple[dict[str, int], dict[str, int], dict[str, list[int | None]]]:
        """Per client order id: when its request reached the simulator's process (read from its
        socket), and when its REST edge handed it on (after aiohttp's parsing and routing); per
        closing kline frame (`STREAM:open time`), the readings just before its write to the bot's
        socket and just after (None if the write left bytes in the buffer)."""
        with urllib.request.urlopen(f"{self.url}/sim/orders/arrivals", timeout=10) as resp:
            body = json.loads(resp.read())
            return body["arrivals"], body["handled"], body["closes"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@dataclass
class Sample:
    total_ns: int  # the closing frame onto the bot's socket -> the request onto the simulator's
    segments: dict[str, int]
    side: str
    read_ns: int  # ... -> the request read from its socket by the simulator
    handled_ns: int  # ... -> the request at the simulator's order handler (its own parsing included)
    feed_read_ns: int  # the closing frame at the bot's feed -> read by the simulator (before 2026-12-05)
    one_write: bool  # the request left in one socket write ("sent"); else its end is the simulator's read
    close_write_ns: int | None  # the simulator's write of the closing frame (None: not in one write)


STREAM = "btcusdt@kline_1m"
"""The replayed kline stream the bot trades on (the simulator's `close_key` prefix)."""


HOT_CLOSE_MS = BotConfig().hot_close_ms
"""ours' `hot_close_ms`: the bot's default."""
PATHS = ("ours", "cold", "base")
"""ours: one commit, hot close; cold: one commit, no hot close; base: four commits, no hot close."""


async def run_bot(
    sim: Sim, redis_url: str, tmp: Path, name: str, *, path: str, samples: int, timeout_s: float
) -> list[Sample]:
    """Start a fresh bot on `path` (`PATHS`), collect `samples` orders, stop it; its samples."""
    baseline = path == "base"
    config = BotConfig(
        name=name, symbol="BTC/USDT", interval="1m", short_window=2, long_window=5,
        quote_amount=Decimal("100"), mode="testnet", rest_url=sim.url, ws_url=f"ws://127.0.0.1:{sim.port}",
        ws_api_url=f"ws://127.0.0.1:{sim.port}/ws-api/v3", store_url=f"sqlite:///{tmp / name}.sqlite",
        redis_url=redis_url, http_port=free_port(), http_host="127.0.0.1", depth_limit=100,
        risk_scope=name, hot_close_ms=HOT_CLOSE_MS if path == "ours" else 0,
    )  # fmt: skip
    marks = Marks()
    runtime = BenchRuntime(config, baseline=baseline, marks=marks)
    untime_commit, untime_write, untime_reads = _time_commit(marks), _time_write(marks), _time_reads(marks)
    task = asyncio.get_running_loop().create_task(runtime.run())
    deadline = time.monotonic() + timeout_s
    try:
        while len([s for s in marks.steps.values() if "submit" in s]) < samples:
            if task.done():
                raise RuntimeError(f"bot {name} stopped early (exit {task.result()}); see {tmp}/bot.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bot {name}: only {len(marks.sent)} orders in {timeout_s:.0f} s")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the last order's request reaches the simulator
    finally:
        runtime.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
        untime_commit()
        untime_write()
        untime_reads()
    arrivals, handled, closes = sim.arrivals()
    signals = {s.signal_id: s for s in await _stored_signals(config)}
    out = []
    for cid, signal_id in marks.sent.items():
        steps, signal = marks.steps.get(signal_id), signals.get(signal_id)
        if steps is None or signal is None or "handed" not in steps or cid not in arrivals:
            continue  # acted on at start-up (a takeover), not from a frame seen live
        recv = marks.recv.get(signal.candle_open_time)
        write = closes.get(f"{STREAM}:{signal.candle_open_time}")
        if recv is None or write is None:
            continue
        closed = write[1] or write[0]  # on the bot's socket when the write returned (else: its start)
        arrived, at_handler = arrivals[cid], handled[cid]
        sock = marks.sock.get(signal.candle_open_time, 0)
        points = {**steps, "closed": closed, "recv": recv, "arrived": arrived, "handled": at_handler}
        if closed < sock <= recv:
            points["sock"] = sock
        segments = {k: points[b] - points[a] for k, _, a, b in SEGMENTS if a in points and b in points}
        end = steps.get("sent", arrived)
        wrote = write[1] - write[0] if write[1] else None
        out.append(Sample(end - closed, segments, signal.side.value, arrived - closed, at_handler - closed,
                          arrived - recv, "sent" in steps, wrote))  # fmt: skip
    return out


async def _stored_signals(config: BotConfig) -> list[Signal]:
    from tradefleet.store import open_store

    store = open_store(config.store_url)
    await store.open()
    try:
        return await store.signals(config.name)
    finally:
        await store.close()


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process `pid` onto `cpus`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), cpus)


def _place(pin: bool, sim: Sim, redis: RedisServer) -> str:
    """The bot (this process) on one CPU, the simulator and Redis on another: in production neither
    shares the bot's cores (the exchange is another machine; Redis a service of its own). Unpinned,
    the simulator often ran on the bot's core and read the order request only once the bot let go
    of it: ~0.36 ms from the bot's socket write to the simulator's read, ~0.12 ms pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return "unpinned" + ("" if pin else " (--no-pin)")
    bot, others = {cpus[0]}, {cpus[-1]}
    os.sched_setaffinity(0, bot)  # this thread; the bot's threads start later and inherit it
    assert sim.proc.pid and redis.proc is not None
    _pin(sim.proc.pid, others)
    _pin(redis.proc.pid, others)
    return f"bot on CPU {cpus[0]}; simulator and Redis on CPU {cpus[-1]}"


LOOPBACK_SENDS = 2000


def _loopback_check(n: int, size: int = 600) -> int:
    """Of `n` loopback TCP sends of `size` bytes, how many were wholly on the receiving socket
    (FIONREAD) when the send returned: the ground for taking the sender's clock after its write as
    the bytes' arrival at the receiver (at both ends of the measured span)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
        with sender, receiver:
            sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            delivered, queued = 0, bytearray(4)
            for _ in range(n):
                sent = sender.send(b"x" * size)
                fcntl.ioctl(receiver, termios.FIONREAD, queued)
                delivered += sent == size == int.from_bytes(queued, sys.byteorder)
                receiver.recv(65536)
            return delivered


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def _report(name: str, samples: list[Sample], *, span: str = "total_ns") -> None:
    totals = [getattr(s, span) for s in samples]
    sides = "  ".join(
        f"{side} {statistics.median(t) / 1000:.0f}"
        for side in ("BUY", "SELL")
        if (t := [getattr(s, span) for s in samples if s.side == side])
    )
    print(
        f"{name:28} {statistics.median(totals) / 1000:9.0f} {_pct(totals, 0.9):9.0f} "
        f"{_pct(totals, 0.99):9.0f} {max(totals) / 1000:9.0f} {len(samples):8d}   (p50 {sides})"
    )


def _slowest(name: str, samples: list[Sample], n: int = 4) -> None:
    """Where the tail goes: the slowest samples, each with its segments that most exceed their median."""
    medians = {
        key: statistics.median(s.segments[key] for s in samples if key in s.segments)
        for key, *_ in SEGMENTS
        if any(key in s.segments for s in samples)
    }
    print(f"\nthe {n} slowest of {name} (µs; the segments furthest above their median):")
    for s in sorted(samples, key=lambda x: x.total_ns, reverse=True)[:n]:
        over = sorted(
            ((s.segments[k] - medians[k], k) for k in medians if k in s.segments and k not in TOTALS),
            reverse=True,
        )[:3]
        parts = ", ".join(f"{k} +{d / 1000:.0f}" for d, k in over)
        print(f"  {s.total_ns / 1000:7.0f} {s.side:4}  {parts}")


def _without_disk_stalls(samples: list[Sample]) -> tuple[float, float]:
    """p50 and p99 of the span with each sample's COMMIT (the WAL's fsync, the `fsync` segment) cut
    to the run's median where it took longer: what the path gives on a disk that never stalls a
    flush. The rule that PENDING is durable before the request leaves keeps that fsync on the path,
    and this machine's virtual disk stalls about one in a hundred by 1-8 ms: two such in a run of
    174 decide its p99. Printed beside the p99, never instead of it."""
    fsyncs = [s.segments["fsync"] for s in samples if "fsync" in s.segments]
    if not fsyncs:
        return 0.0, 0.0
    usual = int(statistics.median(fsyncs))
    totals = [s.total_ns - max(0, s.segments.get("fsync", usual) - usual) for s in samples]
    return statistics.median(totals) / 1000, _pct(totals, 0.99)


TOTALS = ("inbound", "checks", "store", "request", "queue")
"""Segments that contain others (`SEGMENTS`): left out of `_slowest`, which names the parts."""


def _breakdown(name: str, samples: list[Sample]) -> dict[str, float]:
    n_buys = sum(s.side == "BUY" for s in samples)
    print(f"\nwhere {name} goes (µs per segment: median, mean; BUYs {n_buys}):")
    medians: dict[str, float] = {}
    for key, what, _, _ in SEGMENTS:
        values = [s.segments[key] for s in samples if key in s.segments]
        if not values:
            continue
        medians[key] = statistics.median(values) / 1000
        mean = statistics.fmean(values) / 1000
        buy = ""
        for side in ("BUY", "SELL"):
            of_side = [s.segments[key] for s in samples if key in s.segments and s.side == side]
            buy += f"  ({side} {statistics.median(of_side) / 1000:7.0f})" if of_side else ""
        print(f"  {key:8} {what:46} {medians[key]:7.0f} {mean:7.0f}{buy}")
    # Why the medians do not add up to the median total: each sample has its own slow segment (a
    # core taken by the simulator, a slow fsync). The means do add up; what is left is unmeasured.
    chain = ("inbound", "strategy", "engine", "checks", "store", "to_send", "request")  # frame -> arrival
    whole = [s for s in samples if all(k in s.segments for k in chain)]
    means = [statistics.fmean(s.segments[k] for s in whole) / 1000 for k in chain] if whole else [0.0]
    print(
        f"  median total {statistics.median(s.total_ns for s in samples) / 1000:.0f} vs the sum of the "
        f"chain's medians {sum(medians.get(k, 0.0) for k in chain):.0f}; mean total "
        f"{statistics.fmean(s.total_ns for s in whole) / 1000 if whole else 0:.0f} = the sum of its means "
        f"{sum(means):.0f} ({len(whole)} samples with every step)"
    )
    return medians


async def main(args: argparse.Namespace) -> None:
    os.environ["TRADEFLEET_API_KEY"] = DEFAULT_API_KEY  # the simulator's account, read by the bot
    os.environ["TRADEFLEET_API_SECRET"] = DEFAULT_API_SECRET
    with tempfile.TemporaryDirectory(prefix="tick-to-order-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        log = (tmp / "bot.log").open("w")
        setup_logging("INFO", stream=log)  # the bot's JSON lines, as in production (to a file here)
        redis = RedisServer(tmp)
        redis.start()
        sim = Sim(tmp, args.speed, args.levels, args.progress_frames)
        placement = _place(args.pin, sim, redis)
        delivered = _loopback_check(LOOPBACK_SENDS)
        got: dict[str, list[Sample]] = {path: [] for path in PATHS}
        try:
            per_bot = -(-args.samples // args.rounds)
            for r in range(args.rounds):
                for path in PATHS[r % 3 :] + PATHS[: r % 3]:  # each path first, second and last in turn
                    name = f"{path}-{r}"
                    some = await run_bot(sim, redis.url, tmp, name, path=path, samples=per_bot,
                                         timeout_s=args.timeout)  # fmt: skip
                    got[path].extend(some)
                    print(f"  {name}: {len(some)} samples", file=sys.stderr, flush=True)
        finally:
            sim.stop()
            redis.stop()
            log.close()
        ours, cold, base = got["ours"], got["cold"], got["base"]
        if not ours or not cold or not base:
            raise SystemExit("no samples: the bot sent no order for a live crossing")
        print("\ntick -> order: closing kline frame onto the bot's socket -> order request onto the "
              "simulator's socket")  # fmt: skip
        every = ours + cold + base
        writes = sorted(s.close_write_ns for s in every if s.close_write_ns is not None)
        print(f"({placement})")
        print(f"Both ends are the sender's clock when its socket write returned: loopback TCP had put "
              f"the bytes on the receiver's socket by then in {delivered} of {LOOPBACK_SENDS} sends "
              f"checked with FIONREAD. Order requests sent in one write: "
              f"{sum(s.one_write for s in every)} of {len(every)}; closing frames: {len(writes)} of "
              f"{len(every)}, the simulator's write taking {_pct(writes, 0.5):.0f} µs at the median, "
              f"{_pct(writes, 0.99):.0f} µs at p99 (a start taken before it would add that).")  # fmt: skip
        print(f"{'µs':28} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9} {'samples':>8}")
        for label, span in (
            ("", "total_ns"),
            ("... to the simulator reading the request (its scheduling counted too):", "read_ns"),
            ("... to the simulator's order handler (its parsing and routing counted too):", "handled_ns"),
            ("from the bot's feed handed the frame to the simulator's read (the span before 2026-12-05):",
             "feed_read_ns"),
        ):  # fmt: skip
            if label:
                print(label)
            _report("ours (one commit, hot close)", ours, span=span)
            _report("ours without hot close", cold, span=span)
            _report("baseline (four commits)", base, span=span)
        d50, d99 = _without_disk_stalls(ours)
        print(
            "ours with no commit's fsync above its median (the disk's stalls taken out): "
            f"p50 {d50:.0f}, p99 {d99:.0f}"
        )
        _slowest("ours", ours)
        mine = _breakdown("ours", ours)
        _breakdown("ours without hot close", cold)
        _breakdown("the baseline", base)
        p50 = statistics.median(s.total_ns for s in ours) / 1000
        p99 = _pct([s.total_ns for s in ours], 0.99)
        b50 = statistics.median(s.total_ns for s in base) / 1000
        b99 = _pct([s.total_ns for s in base], 0.99)
        c50 = statistics.median(s.total_ns for s in cold) / 1000
        c99 = _pct([s.total_ns for s in cold], 0.99)
        f50 = statistics.median(s.feed_read_ns for s in ours) / 1000
        f99 = _pct([s.feed_read_ns for s in ours], 0.99)
        risk = mine.get("risk", 0.0)
        print(f"\nrisk gate: {risk:.0f} µs of ours' {p50:.0f} µs median ({100 * risk / p50:.0f} %)")
        print(
            f"tick_to_order p50_us={p50:.0f} p99_us={p99:.0f} baseline_p50_us={b50:.0f} "
            f"baseline_p99_us={b99:.0f} ratio={b50 / p50:.2f} samples={len(ours)} risk_p50_us={risk:.0f} "
            f"cold_p50_us={c50:.0f} cold_p99_us={c99:.0f} feed_read_p50_us={f50:.0f} "
            f"feed_read_p99_us={f99:.0f} disk_median_p50_us={d50:.0f} disk_median_p99_us={d99:.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench.tick_to_order", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--samples", type=int, default=200, help="orders per path (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rotating rounds per path (default 3)")
    parser.add_argument("--speed", type=float, default=12.0, help="replayed candles per second (default 12)")
    parser.add_argument(
        "--levels", type=int, default=200,
        help="the simulated book's levels per side (default 200; see the module docstring)",
    )  # fmt: skip
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false",
        help="leave the CPUs to the scheduler (default: the bot on one CPU, simulator and Redis on another)",
    )  # fmt: skip
    parser.add_argument(
        "--progress-frames", type=int, default=8,
        help="in-progress kline frames per replayed candle (default 8; see the module docstring)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one bot may take")
    parser.add_argument("--dir", default=None, help="where the SQLite files go (default: the temp dir)")
    awake.run(main(parser.parse_args()))
