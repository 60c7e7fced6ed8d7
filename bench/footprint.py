"""Footprint benchmark: one bot's steady-state CPU and memory at Binance's real BTCUSDT rates.

    python -m bench.footprint            # 60 s measured window after warm-up (~1.5 min in all)
    python -m bench.footprint --quick    # 20 s window (~35 s in all)
    python -m bench.footprint --check    # exit 1 if the bot is over budget (CPU < 5 %, RSS < 100 MiB)
    python -m bench.footprint --tickers-per-s 100 --bot-set store_flush_ms=1000   # what-ifs

Three processes, all started here:
- the simulator (`tradefleet_sim`'s SimExchange + SimServer, in a child process started with
  `python -m bench.footprint --serve-sim`): a generated BTCUSDT book of 1,000 levels per side,
  depth diffs every 100 ms with ~20 changed levels per side (Binance's `depth@100ms`), trades at
  `--trades-per-s` (40 by default; BTCUSDT trades tens of times a second), the bookTicker the
  simulator derives from its book, and the real BTCUSDT daily candles replayed as 1-minute klines
  in real time, a kline frame every 2 s as Binance pushes them. `tradefleet sim` itself cannot be
  used here: its generator sends at most one trade per diff (≤ 10/s) and its CLI does not set
  even that, so this child adds a trade pump next to the generator, through the market's own
  `publish_trade` (and, with `--tickers-per-s`, extra bookTicker frames through
  `publish_book_ticker`); everything else is the simulator unchanged;
- the bot: `tradefleet bot` in paper mode, SQLite store in a temporary directory, pointed at the
  simulator with TRADEFLEET_REST_URL / TRADEFLEET_WS_URL, 1-minute interval;
- the floor: a bare websocket client (`--baseline-client URL`, the same aiohttp client and settings
  as the bot's feed) subscribed to the same combined stream, that only receives frames.

After the bot reports ready and a warm-up, both processes are sampled with psutil once a second
over the window: CPU % of one core (process CPU time over wall time), peak and mean RSS, fds and
threads; the bot's `/metrics` is scraped at both ends for message rates and for the p50/p99 of the
`parse`, `book_apply` and `candle_update` latency histograms (computed from bucket deltas like
PromQL's `histogram_quantile`). The machine is shared, so absolute figures move between runs;
compare bot and floor within one run. Last line, machine-readable:

    footprint bot_cpu_pct=<x> bot_rss_mib=<x> baseline_cpu_pct=<x> baseline_rss_mib=<x> msgs_per_s=<x> p99_book_apply_us=<x>
"""  # noqa: E501

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
BUDGET_CPU_PCT = 5.0
BUDGET_RSS_MIB = 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- child 1: the simulator with a realistic trade rate ---------------------------------------------


async def _serve_sim(port: int, trades_per_s: float, tickers_per_s: float, seed: int) -> None:
    from tradefleet_sim.exchange import SimExchange
    from tradefleet_sim.options import SimOptions
    from tradefleet_sim.server import SimServer

    opts = SimOptions(
        symbols=("BTCUSDT",),
        kline_interval="1m",
        speed=1 / 60,  # real time: one 1-minute candle per minute
        progress_frames=29,  # a kline frame every 2 s, like Binance's kline stream
        depth_rate=10.0,
        levels_per_side=1000,
        changes_per_side=20,
        trade_probability=0.0,  # the pump below sends the trades
        seed=seed,
    )
    exchange = SimExchange(opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with SimServer(exchange, port=port) as sim:
        pump = loop.create_task(_trade_pump(exchange, trades_per_s, tickers_per_s, seed))
        print(f"tradefleet-sim ready rest={sim.rest_url} ws={sim.ws_url}", flush=True)
        await stop.wait()
        pump.cancel()


async def _trade_pump(exchange: Any, trades_per_s: float, tickers_per_s: float, seed: int) -> None:
    """Trades at the touch in irregular bursts (~100 ms apart), at `trades_per_s` on average, and
    `tickers_per_s` extra bookTicker frames (the current top, re-sent) on top of the simulator's."""
    market = exchange.markets["BTCUSDT"]
    gen = exchange.generators["BTCUSDT"]
    rng = random.Random(seed + 1)
    loop = asyncio.get_running_loop()
    last = loop.time()
    owed = 0.0
    tickers_owed = 0.0
    while True:
        await asyncio.sleep(0.1 * rng.uniform(0.5, 1.5))  # irregular bursts, exact mean rate
        now = loop.time()
        owed += trades_per_s * (now - last)
        tickers_owed += tickers_per_s * (now - last)
        last = now
        while owed >= 1.0:
            owed -= 1.0
            maker_bid = rng.random() < 0.5
            top = market.best_bid() if maker_bid else market.best_ask()
            if top is not None:
                market.publish_trade(top[0], min(top[1], gen.qty(400.0)), buyer_is_maker=maker_bid)
        while tickers_owed >= 1.0:
            tickers_owed -= 1.0
            market.publish_book_ticker(force=True)


# -- child 2: the floor -----------------------------------------------------------------------------


async def _baseline_client(url: str) -> None:
    import aiohttp

    frames = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def receive() -> None:
        nonlocal frames
        # The feed's own client and settings (tradefleet.adapters.feed): the floor is what receiving
        # costs the bot, so it must not use a slower client than the bot does.
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.ws_connect(url, compress=0, max_msg_size=2**22, decode_text=False, heartbeat=20.0,
                               autoping=True) as ws,
        ):  # fmt: skip
            print("baseline connected", flush=True)
            while True:
                msg = await ws.receive()
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                frames += 1

    task = loop.create_task(receive())
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    print(f"baseline frames={frames}", flush=True)


# -- the orchestrator -------------------------------------------------------------------------------


@dataclass
class Sampled:
    name: str
    pid: int
    cpu0: float = 0.0
    cpu1: float = 0.0
    t0: float = 0.0
    t1: float = 0.0
    rss: list[int] = field(default_factory=list)
    fds: int = 0
    threads: int = 0

    @property
    def cpu_pct(self) -> float:
        return 100.0 * (self.cpu1 - self.cpu0) / max(1e-9, self.t1 - self.t0)

    @property
    def rss_peak_mib(self) -> float:
        return max(self.rss) / MIB if self.rss else 0.0

    @property
    def rss_mean_mib(self) -> float:
        return sum(self.rss) / len(self.rss) / MIB if self.rss else 0.0


def _cpu_seconds(proc: Any) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: IO[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"child exited before printing {prefix!r} (rc={proc.poll()})")
        if line.startswith(prefix):
            return line.strip()
    raise SystemExit(f"no {prefix!r} within {timeout} s")


def _get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def _wait_ready(http: str, bot: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if bot.poll() is not None:
            raise SystemExit(f"the bot exited (rc={bot.returncode}) before it was ready")
        with contextlib.suppress(OSError):
            status, last = _get(f"{http}/readyz", timeout=5)
            if status == 200:
                return
        time.sleep(0.5)  # polling an HTTP probe: there is no event to wait on across processes
    raise SystemExit(f"the bot was not ready within {timeout} s: {last[:500]}")


def _scrape(http: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    _, text = _get(f"{http}/metrics")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = float(s.value)
    return out


def _delta(a: dict[str, Any], b: dict[str, Any], name: str, **labels: str) -> float:
    want = set(labels.items())
    total = 0.0
    for key, value in b.get(name, {}).items():
        if want <= set(key):
            total += value - a.get(name, {}).get(key, 0.0)
    return total


def _quantile(
    a: dict[str, Any],
    b: dict[str, Any],
    op: str,
    q: float,
    name: str = "tradefleet_operation_latency_seconds",
) -> float | None:
    """histogram_quantile over the window's bucket deltas, in microseconds (`op` "" = no label)."""
    name = f"{name}_bucket"
    buckets: list[tuple[float, float]] = []
    for key, value in b.get(name, {}).items():
        labels = dict(key)
        if op and labels.get("operation") != op:
            continue
        buckets.append((float(labels["le"]), value - a.get(name, {}).get(key, 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le * 1e6
            return (prev_le + (le - prev_le) * (rank - prev_n) / max(1e-12, n - prev_n)) * 1e6
        prev_le, prev_n = le, n
    return None


def measure(
    window_s: float,
    warmup_s: float,
    trades_per_s: float,
    tickers_per_s: float,
    seed: int,
    bot_env_extra: dict[str, str],
) -> dict[str, Any]:
    import psutil
    from tests.obs import botproc  # here, like psutil: the baseline client imports this module too

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="tf-footprint-") as tmp, contextlib.ExitStack() as stack:
        logs = {n: stack.enter_context(open(Path(tmp) / f"{n}.log", "w")) for n in ("sim", "bot", "base")}
        sim_port = free_port()
        sim = stack.enter_context(_process(
            [sys.executable, "-m", "bench.footprint", "--serve-sim", str(sim_port),
             "--trades-per-s", str(trades_per_s), "--tickers-per-s", str(tickers_per_s),
             "--seed", str(seed)], env, logs["sim"]))  # fmt: skip
        ready = _wait_line(sim, "tradefleet-sim ready", 60)
        rest_url = ready.split("rest=")[1].split()[0]
        ws_url = ready.split("ws=")[1].split()[0]
        http_port = free_port()
        config = {
            "name": "footprint", "mode": "paper", "interval": "1m", "rest_url": rest_url, "ws_url": ws_url,
            "store_url": f"sqlite:///{tmp}/bot.sqlite", "http_host": "127.0.0.1", "http_port": http_port,
        }  # fmt: skip
        bot_env = botproc.bot_env(config, PYTHONPATH=env["PYTHONPATH"], **bot_env_extra)
        bot_stdout = stack.enter_context(open(Path(tmp) / "bot.out", "w"))
        bot = stack.enter_context(_process(
            [sys.executable, "-m", "tradefleet.app.cli", "bot"], bot_env, logs["bot"]))  # fmt: skip
        assert bot.stdout is not None
        # The bot logs JSON lines to stdout: copy them off the pipe so it never blocks on a full pipe.
        copier = threading.Thread(target=_copy, args=(bot.stdout, bot_stdout), daemon=True)
        copier.start()
        http = f"http://127.0.0.1:{http_port}"
        _wait_ready(http, bot, 120)
        stream_url = _stream_url(ws_url)
        base_args = [sys.executable, "-m", "bench.footprint", "--baseline-client", stream_url]
        base = stack.enter_context(_process(base_args, env, logs["base"]))
        _wait_line(base, "baseline connected", 30)
        time.sleep(warmup_s)  # steady state: caches warm, the first candle closes flushed, allocators settled

        procs = [Sampled("bot", bot.pid), Sampled("baseline", base.pid), Sampled("simulator", sim.pid)]
        handles = {p.name: psutil.Process(p.pid) for p in procs}
        log_lines0 = _count_lines(Path(tmp) / "bot.out")
        m0 = _scrape(http)
        for p in procs:
            p.cpu0, p.t0 = _cpu_seconds(handles[p.name]), time.monotonic()
        end = time.monotonic() + window_s
        while time.monotonic() < end:
            for p in procs:
                h = handles[p.name]
                p.rss.append(int(h.memory_info().rss))
                p.fds = max(p.fds, int(h.num_fds()))
                p.threads = max(p.threads, int(h.num_threads()))
            time.sleep(1.0)  # the sampling period itself
        for p in procs:
            p.cpu1, p.t1 = _cpu_seconds(handles[p.name]), time.monotonic()
        m1 = _scrape(http)
        log_lines = _count_lines(Path(tmp) / "bot.out") - log_lines0
        _, state_text = _get(f"{rest_url}/sim/state")
        base.send_signal(signal.SIGTERM)
        base_frames = int(_wait_line(base, "baseline frames=", 30).split("=")[1])

    window = procs[0].t1 - procs[0].t0
    msgs = {
        s: _delta(m0, m1, "tradefleet_messages_total", stream=s) / window
        for s in ("depth", "trade", "kline", "book_ticker")
    }
    counters = {
        name: _delta(m0, m1, f"tradefleet_{name}_total")
        for name in (
            "sequence_gaps",
            "resyncs",
            "reconnects",
            "malformed_frames",
            "store_dropped",
            "store_write_failures",
            "store_enqueued",
        )
    }
    return {
        "window_s": round(window, 1),
        "procs": procs,
        "msgs_per_s": msgs,
        "baseline_frames": base_frames,
        "latency_us": {
            op: (_quantile(m0, m1, op, 0.5), _quantile(m0, m1, op, 0.99))
            for op in ("parse", "book_apply", "candle_update", "store_write")
        },
        "counters": counters,
        "loop_delay_us": (
            _quantile(m0, m1, "", 0.5, "tradefleet_event_loop_delay_seconds"),
            _quantile(m0, m1, "", 0.99, "tradefleet_event_loop_delay_seconds"),
        ),
        "bot_log_lines": log_lines,
        "sim_state": json.loads(state_text) if state_text.startswith("{") else {},
    }


def _copy(src: IO[str], dst: IO[str]) -> None:
    for line in src:
        dst.write(line)
        dst.flush()


def _count_lines(path: Path) -> int:
    with path.open() as f:
        return sum(1 for _ in f)


def _stream_url(ws_url: str) -> str:
    from tradefleet.adapters.binance import BinanceSpot

    return BinanceSpot().stream_url(ws_url, "BTCUSDT", "1m")


def _us(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} us"


def report(r: dict[str, Any]) -> str:
    procs: list[Sampled] = r["procs"]
    bot, base = procs[0], procs[1]
    lines = [f"window {r['window_s']} s, sampled once a second (CPU % of one core; RSS in MiB)", ""]
    lines.append(f"{'process':10} {'cpu %':>7} {'rss peak':>9} {'rss mean':>9} {'fds':>5} {'threads':>8}")
    for p in procs:
        lines.append(f"{p.name:10} {p.cpu_pct:7.2f} {p.rss_peak_mib:9.1f} {p.rss_mean_mib:9.1f} "
                     f"{p.fds:5d} {p.threads:8d}")  # fmt: skip
    lines.append(f"bot / floor: cpu x{bot.cpu_pct / max(base.cpu_pct, 1e-9):.1f}, "
                 f"rss x{bot.rss_peak_mib / max(base.rss_peak_mib, 1e-9):.1f}")  # fmt: skip
    total = sum(r["msgs_per_s"].values())
    rates = ", ".join(f"{k} {v:.1f}/s" for k, v in r["msgs_per_s"].items())
    lines.append(f"bot messages: {total:.1f}/s ({rates}); floor received {r['baseline_frames']} frames "
                 f"in all")  # fmt: skip
    for op, (p50, p99) in r["latency_us"].items():
        lines.append(f"latency {op:14} p50 {_us(p50):>10}  p99 {_us(p99):>10}")
    p50, p99 = r["loop_delay_us"]
    lines.append(f"event loop delay (monitor ticks) p50 {_us(p50):>10}  p99 {_us(p99):>10}")
    lines.append(f"in the window: {r['counters']}, {r['bot_log_lines']} log lines")
    ok_cpu = bot.cpu_pct < BUDGET_CPU_PCT
    ok_rss = bot.rss_peak_mib < BUDGET_RSS_MIB
    lines.append(f"budget: cpu < {BUDGET_CPU_PCT}% {'OK' if ok_cpu else 'OVER'}, "
                 f"rss < {BUDGET_RSS_MIB:.0f} MiB {'OK' if ok_rss else 'OVER'}")  # fmt: skip
    p99 = r["latency_us"]["book_apply"][1]
    lines.append(
        f"footprint bot_cpu_pct={bot.cpu_pct:.2f} bot_rss_mib={bot.rss_peak_mib:.1f} "
        f"baseline_cpu_pct={base.cpu_pct:.2f} baseline_rss_mib={base.rss_peak_mib:.1f} "
        f"msgs_per_s={total:.1f} p99_book_apply_us={'nan' if p99 is None else f'{p99:.1f}'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20 s window instead of 60 s")
    p.add_argument("--window", type=float, help="measured seconds (default 60, 20 with --quick)")
    p.add_argument("--warmup", type=float, help="seconds between ready and measuring (default 15, 8)")
    p.add_argument("--trades-per-s", type=float, default=40.0, help="BTCUSDT trades per second")
    p.add_argument(
        "--tickers-per-s",
        type=float,
        default=0.0,
        help="extra bookTicker frames per second (the bot subscribes but ignores them)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    p.add_argument("--check", action="store_true", help="exit 1 when the bot is over the CPU or RSS budget")
    p.add_argument(
        "--bot-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bot configuration override, e.g. store_flush_ms=1000 (as TRADEFLEET_KEY)",
    )
    p.add_argument("--serve-sim", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--baseline-client", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_sim is not None:
        asyncio.run(_serve_sim(args.serve_sim, args.trades_per_s, args.tickers_per_s, args.seed))
        return 0
    if args.baseline_client:
        asyncio.run(_baseline_client(args.baseline_client))
        return 0
    extra = {}
    for item in args.bot_set:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--bot-set {item!r}: expected KEY=VALUE")
        extra[f"TRADEFLEET_{key.strip().upper()}"] = value
    window = args.window if args.window is not None else 20.0 if args.quick else 60.0
    warmup = args.warmup if args.warmup is not None else 8.0 if args.quick else 15.0
    result = measure(window, warmup, args.trades_per_s, args.tickers_per_s, args.seed, extra)
    if args.json:  # before the report: the report's last line stays the last line
        raw = {**result, "procs": [q.__dict__ | {"cpu_pct": q.cpu_pct} for q in result["procs"]]}
        raw.pop("sim_state", None)
        print(json.dumps(raw, default=str))
    print(report(result))
    bot = result["procs"][0]
    over = bot.cpu_pct >= BUDGET_CPU_PCT or bot.rss_peak_mib >= BUDGET_RSS_MIB
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
