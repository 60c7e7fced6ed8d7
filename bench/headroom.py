"""Headroom benchmark: a real `tradefleet bot` fed a Binance-shaped stream at stepped rates, far above
BTCUSDT's, to find where it first falls behind.

    python -m bench.headroom                          # steps 600 .. 24,000 msg/s, 30 s each
    python -m bench.headroom --rate 6000 --minutes 10 # one rate held for 10 minutes (issue #17's goal)
    python -m bench.headroom --rates 3000,6000 --step-seconds 60 --bot-set price_sample_ms=100

Two processes besides this one:
- the stream server (`python -m bench.headroom --serve PORT`): just enough of Binance for a bot —
  `GET /api/v3/exchangeInfo`, `/depth` (the generated book as it stands), `/time`, `/klines` (a
  deterministic 1-minute history), and the combined stream `/stream?streams=…` carrying depth diffs
  (`bench.stream_gen`'s random-walk book: ~20 bid and 20 ask level changes per diff, contiguous
  update ids), trades, bookTicker and 1-minute klines in BTCUSDT's proportions (per second at real
  rates: 10 diffs, 40 trades, 10 bookTickers, 0.5 klines — about 60 messages), scaled to the rate
  asked for by `POST /bench/rate?r=N`. It writes what is owed every 5 ms and never queues more than
  one second of backlog: when the bot reads slower than the rate, the socket pushes back and the
  server counts what it could not send, so `sent/s` below the target is the bot falling behind;
- the bot: `tradefleet bot` in paper mode, SQLite store in a temporary directory, its defaults
  otherwise (every book update stored as a price sample), 1-minute candles, SMA 50/200.

Each step holds one rate; once a second the bot's `/metrics` is scraped (messages handled, the
`tradefleet_event_loop_delay_seconds` histogram of its loop monitor, `tradefleet_store_buffered`) and
its CPU read with psutil. Per step: messages sent and handled per second, CPU % of one core, loop
delay p50/p99 (bucket deltas over the step, interpolated like PromQL's `histogram_quantile`; the
monitor ticks every 0.5 s), the store queue (max, and its growth: the mean of the step's last
quarter minus the mean of its first). A step falls behind when the bot handled < 97 % of what was
sent, or the server sent < 97 % of the rate while waiting on the bot's socket (its send buffer full:
the bot reads too slowly) for 5 % of the step or more, or the store queue grew by more than one
flush's worth (`store_batch_max`). A server short of the rate without waiting on the socket is short
of CPU itself, and the step says so. The machine is shared: the load average is printed with each
step. Last line, machine-readable:

    headroom rate=<highest rate sent in full and kept up with> first_behind=<rate or none>
      loop_p99_ms=<at that rate> store_growth=<…> first_loop_p99_over_5ms=<rate> floor_loop_p99_ms=<…>
      cpu_pct=<…> load=<…> server_short_from=<first rate the server could not send in full, or none>

(one line). The loop delay of a loaded machine is mostly the scheduler's: a floor process in the same
run (`--floor-loop`: an idle asyncio loop with the same 0.5 s monitor) measures how late any loop on
this machine wakes, and each step prints it next to the bot's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.footprint import (
    _copy,
    _delta,
    _get,
    _process,
    _quantile,
    _scrape,
    _wait_line,
    _wait_ready,
    free_port,
)
from bench.stream_gen import DiffGenerator
from bench.stream_server import EXCHANGE_INFO, GUID, answer_pings, ws_frame

ROOT = Path(__file__).resolve().parent.parent
MINUTE_MS = 60_000
# Messages per second at BTCUSDT's real rates (bench.footprint's mix):
# depth@100ms, @trade, @bookTicker, @kline_1m.
REAL_MIX = {"depth": 10.0, "trade": 40.0, "book_ticker": 10.0, "kline": 0.5}
REAL_RATE = sum(REAL_MIX.values())
DEFAULT_RATES = (600, 1500, 3000, 6000, 9000, 12000, 18000, 24000)
KEPT_UP = 0.97  # handled / sent (or sent / target) below this is falling behind
SOCKET_BLOCKED = 0.05  # the server waiting on the bot's socket this share of the step: the bot is slow


# -- the stream server ------------------------------------------------------------------------------


def _price(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}000000"


def _history_candle(open_time: int) -> list[Any]:
    """One closed 1-minute REST kline row, the same for the same minute on every request."""
    rng = random.Random(open_time)
    mid = 30_000_00 + rng.randint(-2000, 2000)
    o, c = mid + rng.randint(-300, 300), mid + rng.randint(-300, 300)
    h, low = max(o, c) + rng.randint(0, 200), min(o, c) - rng.randint(0, 200)
    return [
        open_time,
        _price(o),
        _price(h),
        _price(low),
        _price(c),
        "12.50000000",
        open_time + MINUTE_MS - 1,
        "375000.00000000",
        100,
        "6.0",
        "180000.0",
        "0",
    ]


class StreamServer:
    def __init__(self, seed: int) -> None:
        self.gen = DiffGenerator(seed=seed)
        self.rng = random.Random(seed + 1)
        info = json.loads(EXCHANGE_INFO.read_text())["response"]
        self.exchange_info = json.dumps(info, separators=(",", ":")).encode()
        self.rate = 0.0
        self.sent = 0
        self.skipped = 0  # owed but not sent: more than a second behind
        self.drain_s = 0.0  # time spent waiting for the socket to take more: the bot reading too slowly
        self.trade_id = 1
        self.candle: list[int] | None = None  # open_time, open, high, low, close (cents)
        self.connections = 0

    # HTTP/1.1, keep-alive; a websocket upgrade on /stream.
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if int(headers.get("content-length", "0")):
                    await reader.readexactly(int(headers["content-length"]))
                if headers.get("upgrade", "").lower() == "websocket":
                    await self.websocket(reader, writer, headers)
                    return
                status, body = self.rest(method, target)
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    def rest(self, method: str, target: str) -> tuple[str, bytes]:
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/bench/rate" and method == "POST":
            self.rate = float(q["r"])
            return "200 OK", b"{}"
        if path == "/bench/state":
            state = {
                "sent": self.sent,
                "skipped": self.skipped,
                "drain_s": self.drain_s,
                "rate": self.rate,
                "connections": self.connections,
            }
            return "200 OK", json.dumps(state).encode()
        if path.endswith("/exchangeInfo"):
            return "200 OK", self.exchange_info
        if path.endswith("/depth"):
            return "200 OK", json.dumps(
                self.gen.snapshot(int(q.get("limit", 1000))), separators=(",", ":")
            ).encode()
        if path.endswith("/time"):
            return "200 OK", json.dumps({"serverTime": int(time.time() * 1000)}).encode()
        if path.endswith("/klines"):
            now = int(time.time() * 1000)
            current = now - now % MINUTE_MS
            start = int(q.get("startTime", current - 1000 * MINUTE_MS))
            start += -start % MINUTE_MS
            end = min(int(q.get("endTime", now)), current - 1)  # closed candles only
            limit = min(int(q.get("limit", 500)), 1000)
            rows = [_history_candle(t) for t in range(start, end + 1, MINUTE_MS)][:limit]
            return "200 OK", json.dumps(rows, separators=(",", ":")).encode()
        return "404 Not Found", b'{"code":-1,"msg":"not here"}'

    async def websocket(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> None:
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.connections += 1
        closed = asyncio.Event()
        pings = asyncio.create_task(answer_pings(reader, writer, closed))
        try:
            await self._pump(writer, closed)
        finally:
            pings.cancel()

    async def _pump(self, writer: asyncio.StreamWriter, closed: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        owed = dict.fromkeys(REAL_MIX, 0.0)
        last = loop.time()
        while not closed.is_set():
            await asyncio.sleep(0.005)
            now = loop.time()
            scale = self.rate / REAL_RATE
            for kind, per_s in REAL_MIX.items():
                owed[kind] += per_s * scale * (now - last)
                cap = max(1.0, per_s * scale)  # at most a second of backlog
                if owed[kind] > cap:
                    self.skipped += int(owed[kind] - cap)
                    owed[kind] = cap
            last = now
            frames: list[bytes] = []
            now_ms = int(time.time() * 1000)
            while owed["depth"] >= 1:
                owed["depth"] -= 1
                frames.append(self._frame("btcusdt@depth@100ms", self.gen.next(now_ms)))
            b, bq, a, aq = self.gen.top()  # once per tick: a max() over the book is not free
            while owed["book_ticker"] >= 1:
                owed["book_ticker"] -= 1
                frames.append(
                    self._frame(
                        "btcusdt@bookTicker",
                        {"u": self.gen.last_id, "s": "BTCUSDT", "b": b, "B": bq, "a": a, "A": aq},
                    )
                )
            while owed["trade"] >= 1:
                owed["trade"] -= 1
                frames.append(self._trade(now_ms, b, a))
            if owed["kline"] >= 1 or (self.candle is not None and now_ms >= self.candle[0] + MINUTE_MS):
                owed["kline"] = max(0.0, owed["kline"] - 1)
                frames.extend(self._klines(now_ms))
            if frames:
                writer.write(b"".join(frames))
                self.sent += len(frames)
                before = loop.time()
                await writer.drain()  # the bot's reading pace is the backpressure
                self.drain_s += loop.time() - before

    def _frame(self, stream: str, data: dict[str, object]) -> bytes:
        return ws_frame(json.dumps({"stream": stream, "data": data}, separators=(",", ":")).encode())

    def _trade(self, now_ms: int, bid: str, ask: str) -> bytes:
        self.trade_id += 1
        buyer_maker = self.rng.random() < 0.5  # a sell hits the bid, a buy lifts the ask
        qty = f"{self.rng.randint(1, 50_000) / 100_000:.8f}"
        return self._frame(
            "btcusdt@trade",
            {
                "e": "trade",
                "E": now_ms,
                "s": "BTCUSDT",
                "t": self.trade_id,
                "p": bid if buyer_maker else ask,
                "q": qty,
                "T": now_ms,
                "m": buyer_maker,
                "M": True,
            },
        )

    def _klines(self, now_ms: int) -> list[bytes]:
        """The current 1-minute candle; at a minute boundary the closing frame of the last one first."""
        out = []
        mid = self.gen.mid
        minute = now_ms - now_ms % MINUTE_MS
        if self.candle is not None and self.candle[0] < minute:
            out.append(self._kline_frame(now_ms, closed=True))
            self.candle = None
        if self.candle is None:
            self.candle = [minute, mid, mid, mid, mid]
        c = self.candle
        c[2], c[3], c[4] = max(c[2], mid), min(c[3], mid), mid
        out.append(self._kline_frame(now_ms, closed=False))
        return out

    def _kline_frame(self, now_ms: int, *, closed: bool) -> bytes:
        t, o, h, low, c = self.candle  # type: ignore[misc]
        k = {
            "t": t,
            "T": t + MINUTE_MS - 1,
            "s": "BTCUSDT",
            "i": "1m",
            "f": 1,
            "L": 2,
            "o": _price(o),
            "c": _price(c),
            "h": _price(h),
            "l": _price(low),
            "v": "12.50000000",
            "n": 100,
            "x": closed,
            "q": "375000.00000000",
            "V": "6.0",
            "Q": "180000.0",
            "B": "0",
        }
        return self._frame("btcusdt@kline_1m", {"e": "kline", "E": now_ms, "s": "BTCUSDT", "k": k})


async def _serve(port: int, seed: int) -> None:
    server = StreamServer(seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", port)
    print(f"headroom-server ready http://127.0.0.1:{port}", flush=True)
    async with srv:
        await stop.wait()


# -- the floor: an idle event loop's delay on this machine ------------------------------------------


async def _floor_loop(interval: float = 0.5) -> None:
    """The bot's LoopMonitor method on an idle loop: sleep `interval`, print how late the wake-up was."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval)
        now = loop.time()
        print(f"lag {time.monotonic():.6f} {max(0.0, now - before - interval):.6f}", flush=True)


def _collect_lags(proc: Any, into: list[tuple[float, float]]) -> None:
    for line in proc.stdout:
        if line.startswith("lag "):
            _, at, lag = line.split()
            into.append((float(at), float(lag)))


def _p99(lags: list[float]) -> float | None:
    if not lags:
        return None
    ordered = sorted(lags)
    return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


# -- the orchestrator -------------------------------------------------------------------------------


@dataclass
class Step:
    rate: float
    seconds: float
    sent_per_s: float = 0.0
    skipped: int = 0
    handled_per_s: float = 0.0
    cpu_pct: float = 0.0
    loop_p50_ms: float | None = None
    loop_p99_ms: float | None = None
    loop_over_5ms: float = 0.0  # share of monitor ticks later than 5 ms
    queue: list[float] = field(default_factory=list)
    load: float = 0.0
    batch_max: int = 500
    floor_p99_ms: float | None = None  # an idle loop's p99 on this machine in the same window
    blocked: float = 0.0  # share of the step the server waited on the bot's socket

    @property
    def queue_growth(self) -> float:
        q = self.queue
        if len(q) < 4:
            return 0.0
        n = max(1, len(q) // 4)
        return sum(q[-n:]) / n - sum(q[:n]) / n

    @property
    def kept_up(self) -> bool:
        """The bot handled what it was sent, and what it was sent was the rate, or the server fell
        short on its own (it did not wait on the bot's socket: the machine did not give it the CPU)."""
        if self.handled_per_s < KEPT_UP * self.sent_per_s:
            return False
        return self.sent_per_s >= KEPT_UP * self.rate or self.blocked < SOCKET_BLOCKED

    @property
    def server_limited(self) -> bool:
        return self.sent_per_s < KEPT_UP * self.rate and self.blocked < SOCKET_BLOCKED

    @property
    def queue_grew(self) -> bool:
        return self.queue_growth > self.batch_max

    @property
    def behind(self) -> bool:
        return not self.kept_up or self.queue_grew

    def line(self) -> str:
        def ms(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        return (
            f"rate {self.rate:7.0f}/s  sent {self.sent_per_s:8.1f}/s  handled {self.handled_per_s:8.1f}/s  "
            f"cpu {self.cpu_pct:5.1f}%  loop p50 {ms(self.loop_p50_ms)} p99 {ms(self.loop_p99_ms)} ms "
            f"(>5ms {100 * self.loop_over_5ms:.1f}%; idle loop p99 {ms(self.floor_p99_ms)})  "
            f"store queue max {max(self.queue, default=0):.0f} "
            f"growth {self.queue_growth:+.0f}  load {self.load:.1f}"
            f"  socket blocked {100 * self.blocked:.0f}%"
            f"{'  BEHIND' if self.behind else ''}{'  (server short of CPU)' if self.server_limited else ''}"
        )


def _share_over(m0: dict[str, Any], m1: dict[str, Any], le: float) -> float:
    name = "tradefleet_event_loop_delay_seconds_bucket"
    total = below = 0.0
    for key, value in m1.get(name, {}).items():
        bound = float(dict(key)["le"])
        n = value - m0.get(name, {}).get(key, 0.0)
        if bound == float("inf"):
            total = n
        elif bound == le:
            below = n
    return 0.0 if total <= 0 else 1.0 - below / total


def _handled(m: dict[str, Any]) -> float:
    return sum(
        v
        for k, v in m.get("tradefleet_messages_total", {}).items()
        if dict(k).get("stream") in ("depth", "trade", "book_ticker", "kline")
    )


def _queued(m: dict[str, Any]) -> float:
    return sum(m.get("tradefleet_store_buffered", {}).values())


def _post(url: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).read()


def run(
    rates: list[float],
    seconds: float,
    warmup: float,
    seed: int,
    bot_extra: dict[str, str],
    stop_after_behind: int,
    progress_every: float,
) -> list[Step]:
    import psutil

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="tf-headroom-") as tmp, contextlib.ExitStack() as stack:
        logs = {n: stack.enter_context(open(Path(tmp) / f"{n}.log", "w")) for n in ("server", "bot")}
        port = free_port()
        server = stack.enter_context(
            _process(
                [sys.executable, "-m", "bench.headroom", "--serve", str(port), "--seed", str(seed)],
                env,
                logs["server"],
            )
        )
        base = _wait_line(server, "headroom-server ready", 60).split()[-1]
        ws = base.replace("http://", "ws://")
        http_port = free_port()
        bot_env = {
            **env,
            "TRADEFLEET_NAME": "headroom",
            "TRADEFLEET_MODE": "paper",
            "TRADEFLEET_INTERVAL": "1m",
            "TRADEFLEET_REST_URL": base,
            "TRADEFLEET_WS_URL": ws,
            "TRADEFLEET_STORE_URL": f"sqlite:///{tmp}/bot.sqlite",
            "TRADEFLEET_HTTP_HOST": "127.0.0.1",
            "TRADEFLEET_HTTP_PORT": str(http_port),
        }
        bot_env.pop("REDIS_URL", None)
        bot_env.update(bot_extra)
        batch_max = int(bot_env.get("TRADEFLEET_STORE_BATCH_MAX", "500"))
        _post(f"{base}/bench/rate?r={rates[0]}")
        bot_out = stack.enter_context(open(Path(tmp) / "bot.out", "w"))  # closed after the bot stops
        bot = stack.enter_context(
            _process([sys.executable, "-m", "tradefleet.app.cli", "bot"], bot_env, logs["bot"])
        )
        assert bot.stdout is not None
        threading.Thread(target=_copy, args=(bot.stdout, bot_out), daemon=True).start()
        http = f"http://127.0.0.1:{http_port}"
        _wait_ready(http, bot, 180)
        floor = stack.enter_context(
            _process([sys.executable, "-m", "bench.headroom", "--floor-loop"], env, logs["server"])
        )
        floor_lags: list[tuple[float, float]] = []
        threading.Thread(target=_collect_lags, args=(floor, floor_lags), daemon=True).start()
        time.sleep(warmup)
        proc = psutil.Process(bot.pid)
        behind = 0
        for rate in rates:
            _post(f"{base}/bench/rate?r={rate}")
            time.sleep(2.0)  # the new rate reaches the bot; the step measures the steady part
            step = Step(rate, seconds, batch_max=batch_max)
            s0 = json.loads(_get(f"{base}/bench/state")[1])
            m0 = _scrape(http)
            c0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
            last_progress = t0
            end = t0 + seconds
            while time.monotonic() < end:
                time.sleep(1.0)  # the sampling period
                if bot.poll() is not None:
                    raise SystemExit(f"the bot exited (rc={bot.returncode}) at {rate} msg/s")
                m = _scrape(http)
                step.queue.append(_queued(m))
                if progress_every and time.monotonic() - last_progress >= progress_every:
                    last_progress = time.monotonic()
                    p99 = _quantile(m0, m, "", 0.99, "tradefleet_event_loop_delay_seconds")
                    elapsed = time.monotonic() - t0
                    handled = (_handled(m) - _handled(m0)) / elapsed
                    p99_text = "n/a" if p99 is None else f"{p99 / 1000:.2f}"
                    print(f"  {elapsed:5.0f} s: handled {handled:.0f}/s, loop p99 {p99_text} ms, "
                          f"store queue {step.queue[-1]:.0f}, load {os.getloadavg()[0]:.1f}",
                          flush=True)  # fmt: skip
            m1 = _scrape(http)
            window = time.monotonic() - t0
            step.cpu_pct = 100.0 * (sum(proc.cpu_times()[:2]) - c0) / window
            s1 = json.loads(_get(f"{base}/bench/state")[1])
            step.sent_per_s = (s1["sent"] - s0["sent"]) / window
            step.skipped = s1["skipped"] - s0["skipped"]
            step.blocked = (s1["drain_s"] - s0["drain_s"]) / window
            step.handled_per_s = (_handled(m1) - _handled(m0)) / window
            p50 = _quantile(m0, m1, "", 0.5, "tradefleet_event_loop_delay_seconds")
            p99 = _quantile(m0, m1, "", 0.99, "tradefleet_event_loop_delay_seconds")
            step.loop_p50_ms = None if p50 is None else p50 / 1000
            step.loop_p99_ms = None if p99 is None else p99 / 1000
            step.loop_over_5ms = _share_over(m0, m1, 0.005)
            t1 = time.monotonic()
            step.floor_p99_ms = _p99([lag for at, lag in list(floor_lags) if t0 <= at <= t1])
            step.load = os.getloadavg()[0]
            steps.append(step)
            print(step.line(), flush=True)
            counters = {
                n: _delta(m0, m1, f"tradefleet_{n}_total")
                for n in ("sequence_gaps", "resyncs", "reconnects", "malformed_frames", "store_dropped")
            }
            if any(counters.values()):
                print(f"  in the step: {counters}", flush=True)
            behind = behind + 1 if step.behind else 0
            if stop_after_behind and behind >= stop_after_behind:
                break
    return steps


def summary(steps: list[Step]) -> str:
    kept = [s for s in steps if not s.behind and not s.server_limited]  # the full rate reached the bot
    first_behind = next((s for s in steps if s.behind), None)
    best = max(kept, key=lambda s: s.rate) if kept else None
    ref = best or steps[-1]
    first_slow_loop = next((s for s in steps if (s.loop_p99_ms or 0) > 5.0), None)
    first_short = next((s for s in steps if s.server_limited), None)

    def r(s: Step | None) -> str:
        return "none" if s is None else f"{s.rate:.0f}"

    return (
        f"headroom rate={r(best)} first_behind={r(first_behind)} "
        f"loop_p99_ms={'nan' if ref.loop_p99_ms is None else f'{ref.loop_p99_ms:.2f}'} "
        f"store_growth={ref.queue_growth:.0f} first_loop_p99_over_5ms={r(first_slow_loop)} "
        f"floor_loop_p99_ms={'nan' if ref.floor_p99_ms is None else f'{ref.floor_p99_ms:.2f}'} "
        f"cpu_pct={ref.cpu_pct:.1f} load={ref.load:.1f} server_short_from={r(first_short)}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.headroom", description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", help=f"comma-separated msg/s (default {','.join(map(str, DEFAULT_RATES))})")
    p.add_argument("--rate", type=float, help="one rate only (with --minutes)")
    p.add_argument("--minutes", type=float, help="how long to hold --rate (default: --step-seconds)")
    p.add_argument("--step-seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=10.0, help="seconds at the first rate after ready")
    p.add_argument(
        "--keep-going", action="store_true", help="run every rate, even after falling behind twice"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--bot-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bot configuration override, e.g. price_sample_ms=100 (as TRADEFLEET_KEY)",
    )
    p.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--floor-loop", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.floor_loop:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_floor_loop())
        return 0
    if args.serve is not None:
        asyncio.run(_serve(args.serve, args.seed))
        return 0
    if args.rate is not None and args.rates:
        p.error("--rate and --rates are exclusive")
    try:
        rates = (
            [args.rate]
            if args.rate is not None
            else (
                [float(x) for x in args.rates.split(",")] if args.rates else [float(x) for x in DEFAULT_RATES]
            )
        )
    except ValueError:
        p.error(f"--rates must be numbers separated by commas, got {args.rates!r}")
    if any(r <= 0 for r in rates):
        p.error("rates must be positive")
    seconds = args.minutes * 60 if args.minutes is not None else args.step_seconds
    if seconds <= 0:
        p.error("the step must last a positive time")
    extra = {}
    for item in args.bot_set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--bot-set {item!r}: expected KEY=VALUE")
        extra[f"TRADEFLEET_{key.strip().upper()}"] = value
    print(
        f"headroom: {len(rates)} step(s) of {seconds:.0f} s; BTCUSDT's real rate is ~{REAL_RATE:.0f} msg/s; "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    steps = run(
        rates,
        seconds,
        args.warmup,
        args.seed,
        extra,
        0 if args.keep_going else 2,
        progress_every=60.0 if seconds >= 120 else 0.0,
    )
    print(summary(steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
