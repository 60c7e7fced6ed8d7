"""Footprint benchmark: one bot's steady-state CPU and memory at Binance's real BTCUSDT rates.

    python -m bench.footprint            # 60 s measured window after warm-up (~1.5 min in all)
    python -m bench.footprint --quick    # 20 s window (~35 s in all)
    python -m bench.footprint --check    # exit 1 if the bot is over budget (CPU < 5 %, RSS < 100 MiB)
    python -m bench.footprint --tickers-per-s 100 --bot-set store_flush_ms=1000   # what-ifs
    python -m bench.footprint --bots 8 --quick             # a scaling run: 8 bots on the same stream
    python -m bench.footprint --bots 8 --quick --scale 10  # ... at 10x BTCUSDT's depth and trade rates
    python -m bench.footprint --quick --bot-python /tmp/bot-venv/bin/python --bot-env PYTHONOPTIMIZE=2
                                         # bots on another venv, with the image's environment

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
  simulator with TRADEFLEET_REST_URL / TRADEFLEET_WS_URL, 1-minute interval; with `--mode testnet`
  a testnet bot instead, trading on the simulator's signed order API and user data stream
  (TRADEFLEET_WS_API_URL, the simulator's default account as credentials): its trading client loaded;
- the floor: a bare websocket client (`--baseline-client URL`, the same aiohttp client and settings
  as the bot's feed) subscribed to the same combined stream, that only receives frames.

After the bot reports ready and a warm-up, both processes are sampled with psutil once a second
over the window: CPU % of one core (process CPU time over wall time), peak and mean RSS, fds and
threads; the bot's `/metrics` is scraped at both ends for message rates and for the p50/p99 of the
`parse`, `book_apply` and `candle_update` latency histograms (computed from bucket deltas like
PromQL's `histogram_quantile`). The machine is shared, so absolute figures move between runs;
compare bot and floor within one run.

Memory is read three ways from /proc/PID/smaps_rollup: RSS (what `ps` shows; shared library pages
counted in full in every process), PSS (shared pages split between the processes sharing them: the
sum over processes is what they take together) and USS (pages of this process alone). With `--bots N`
the bots start one after another, each waited for until ready, and the PSS sum over the bots started
so far is read 2 s after each is ready; its slope is the marginal memory of one more bot. CPU is the
mean over every bot in the window. From those two figures: how many bots fit a 2-core/24 GiB node,
by CPU (both cores fully busy: no reserve for the system) and by memory (the whole 24 GiB). Last line,
machine-readable (keys are added over time, never renamed):

    footprint bot_cpu_pct=<x> bot_rss_mib=<x> baseline_cpu_pct=<x> baseline_rss_mib=<x> msgs_per_s=<x>
      p99_book_apply_us=<x> bots=<n> bot_rss_ready_mib=<x> bot_pss_mib=<x> marginal_mib=<x>
      node_bots_by_cpu=<n> node_bots_by_mem=<n>
"""

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


async def _serve_sim(port: int, trades_per_s: float, tickers_per_s: float, seed: int,
                     depth_per_s: float = 10.0) -> None:  # fmt: skip
    from tradefleet_sim.exchange import SimExchange
    from tradefleet_sim.options import SimOptions
    from tradefleet_sim.server import SimServer

    opts = SimOptions(
        symbols=("BTCUSDT",),
        kline_interval="1m",
        speed=1 / 60,  # real time: one 1-minute candle per minute
        progress_frames=29,  # a kline frame every 2 s, like Binance's kline stream
        depth_rate=depth_per_s,
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


def _smaps_mib(pid: int) -> dict[str, float]:
    """RSS, PSS (shared pages split between the processes sharing them) and USS (this process's
    alone) from /proc/PID/smaps_rollup, in MiB; {} where there is no such file (not Linux)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    out[parts[0].rstrip(":")] = int(parts[1]) / 1024
    except OSError:
        return {}
    return {"rss": out.get("Rss", 0.0), "pss": out.get("Pss", 0.0),
            "uss": out.get("Private_Clean", 0.0) + out.get("Private_Dirty", 0.0)}  # fmt: skip


def measure(
    window_s: float,
    warmup_s: float,
    trades_per_s: float,
    tickers_per_s: float,
    seed: int,
    bot_env_extra: dict[str, str],
    bots: int = 1,
    depth_per_s: float = 10.0,
    mode: str = "paper",
    bot_python: str = sys.executable,
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
             "--depth-per-s", str(depth_per_s), "--seed", str(seed)], env, logs["sim"]))  # fmt: skip
        ready = _wait_line(sim, "tradefleet-sim ready", 60)
        rest_url = ready.split("rest=")[1].split()[0]
        ws_url = ready.split("ws=")[1].split()[0]
        bot_procs: list[subprocess.Popen[str]] = []
        https: list[str] = []
        at_ready: list[dict[str, float]] = []  # bot 1's memory at ready, then the sums over bots 1..k
        for i in range(bots):
            http_port = free_port()
            config = {
                "name": f"footprint-{i}" if bots > 1 else "footprint", "mode": mode, "interval": "1m",
                "rest_url": rest_url, "ws_url": ws_url, "store_url": f"sqlite:///{tmp}/bot-{i}.sqlite",
                "http_host": "127.0.0.1", "http_port": http_port,
            }  # fmt: skip
            if mode != "paper":
                from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

                config["ws_api_url"] = f"{ws_url.rstrip('/')}/ws-api/v3"
                bot_env_extra = {"TRADEFLEET_API_KEY": DEFAULT_API_KEY,
                                 "TRADEFLEET_API_SECRET": DEFAULT_API_SECRET, **bot_env_extra}  # fmt: skip
            bot_env = botproc.bot_env(config, PYTHONPATH=env["PYTHONPATH"], **bot_env_extra)
            # Opened before the bot starts, so it is closed after the bot stops (the stack unwinds LIFO).
            bot_stdout = stack.enter_context(open(Path(tmp) / f"bot-{i}.out", "w"))
            bot = stack.enter_context(_process(
                [bot_python, "-m", "tradefleet.app.cli", "bot"], bot_env, logs["bot"]))  # fmt: skip
            assert bot.stdout is not None
            # The bot logs JSON lines to stdout: copy them off the pipe so it never blocks on a full pipe.
            threading.Thread(target=_copy, args=(bot.stdout, bot_stdout), daemon=True).start()
            http = f"http://127.0.0.1:{http_port}"
            _wait_ready(http, bot, 120)
            bot_procs.append(bot)
            https.append(http)
            time.sleep(2.0)  # the first frames after ready are handled; the figure is "at ready", settled
            mems = [_smaps_mib(b.pid) for b in bot_procs]
            at_ready.append({k: sum(m.get(k, 0.0) for m in mems) for k in ("rss", "pss", "uss")})
        http = https[0]
        bot = bot_procs[0]
        stream_url = _stream_url(ws_url)
        base_args = [sys.executable, "-m", "bench.footprint", "--baseline-client", stream_url]
        base = stack.enter_context(_process(base_args, env, logs["base"]))
        _wait_line(base, "baseline connected", 30)
        time.sleep(warmup_s)  # steady state: caches warm, the first candle closes flushed, allocators settled

        procs = [Sampled("bot", bot.pid), Sampled("baseline", base.pid), Sampled("simulator", sim.pid)]
        procs += [Sampled(f"bot-{i}", b.pid) for i, b in enumerate(bot_procs) if i > 0]
        handles = {p.name: psutil.Process(p.pid) for p in procs}
        log_lines0 = _count_lines(Path(tmp) / "bot-0.out")
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
        end_mems = {p.name: _smaps_mib(p.pid) for p in procs}
        log_lines = _count_lines(Path(tmp) / "bot-0.out") - log_lines0
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
        "bots": bots,
        "at_ready": at_ready,
        "end_mem": end_mems,
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
    ready = r["at_ready"]
    end = r["end_mem"]
    if ready:
        r0, eb, ef = ready[0], end["bot"], end["baseline"]
        lines.append(
            f"bot at ready: rss {r0['rss']:.1f} MiB, pss {r0['pss']:.1f}, uss {r0['uss']:.1f}; after the "
            f"window: rss {eb.get('rss', 0):.1f}, pss {eb.get('pss', 0):.1f}, uss {eb.get('uss', 0):.1f} "
            f"(floor: rss {ef.get('rss', 0):.1f}, pss {ef.get('pss', 0):.1f})"
        )
    fleet = fleet_figures(r)
    if r["bots"] > 1:
        pss_sums = [round(x["pss"], 1) for x in ready]
        lines.append(
            f"{r['bots']} bots: cpu mean {fleet['cpu_mean_pct']:.2f} % (max {fleet['cpu_max_pct']:.2f}), "
            f"rss mean {fleet['rss_mean_mib']:.1f} MiB; pss sum at ready as bots start {pss_sums} MiB: "
            f"marginal {fleet['marginal_mib']:.1f} MiB a bot"
        )
    lines.append(
        f"a 2-core/24 GiB node at these rates: {fleet['node_bots_by_cpu']} bots by CPU (both cores busy), "
        f"{fleet['node_bots_by_mem']} by memory ({fleet['marginal_mib']:.1f} MiB a bot)"
    )
    p99 = r["latency_us"]["book_apply"][1]
    lines.append(
        f"footprint bot_cpu_pct={bot.cpu_pct:.2f} bot_rss_mib={bot.rss_peak_mib:.1f} "
        f"baseline_cpu_pct={base.cpu_pct:.2f} baseline_rss_mib={base.rss_peak_mib:.1f} "
        f"msgs_per_s={total:.1f} p99_book_apply_us={'nan' if p99 is None else f'{p99:.1f}'} "
        f"bots={r['bots']} bot_rss_ready_mib={ready[0]['rss'] if ready else float('nan'):.1f} "
        f"bot_pss_mib={end['bot'].get('pss', float('nan')):.1f} marginal_mib={fleet['marginal_mib']:.1f} "
        f"node_bots_by_cpu={fleet['node_bots_by_cpu']} node_bots_by_mem={fleet['node_bots_by_mem']}"
    )
    return "\n".join(lines)


NODE_CORES = 2
NODE_MIB = 24 * 1024


def fleet_figures(r: dict[str, Any]) -> dict[str, Any]:
    """Per-bot CPU over every bot of the run, and memory a bot adds: with several bots the slope of
    the PSS sum at ready (PSS splits shared pages between the processes sharing them, so the sum is
    what the bots take together), with one bot its PSS after the window. Then what fits a node."""
    bots = [p for p in r["procs"] if p.name == "bot" or p.name.startswith("bot-")]
    cpus = [p.cpu_pct for p in bots]
    ready = r["at_ready"]
    if len(ready) > 1:
        marginal = (ready[-1]["pss"] - ready[0]["pss"]) / (len(ready) - 1)
    else:
        marginal = r["end_mem"].get("bot", {}).get("pss", float("nan"))
    cpu_mean = sum(cpus) / len(cpus)
    return {
        "cpu_mean_pct": cpu_mean,
        "cpu_max_pct": max(cpus),
        "rss_mean_mib": sum(p.rss_mean_mib for p in bots) / len(bots),
        "marginal_mib": marginal,
        "node_bots_by_cpu": int(NODE_CORES * 100 / cpu_mean) if cpu_mean > 0 else 0,
        "node_bots_by_mem": int(NODE_MIB / marginal) if marginal > 0 else 0,
    }


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
    p.add_argument(
        "--bots", type=int, default=1, help="bots on the same stream (a scaling run: marginal memory)"
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply BTCUSDT's depth and trade rates (10: 10x)"
    )
    p.add_argument("--depth-per-s", type=float, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--mode",
        choices=("paper", "testnet"),
        default="paper",
        help="the bot's mode; testnet trades on the simulator's signed API (its trading client loaded)",
    )
    p.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    p.add_argument("--check", action="store_true", help="exit 1 when the bot is over the CPU or RSS budget")
    p.add_argument(
        "--bot-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="bot configuration override, e.g. store_flush_ms=1000 (as TRADEFLEET_KEY)",
    )
    p.add_argument(
        "--bot-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the bots only, e.g. PYTHONOPTIMIZE=2 as in the image",
    )
    p.add_argument(
        "--bot-python",
        default=sys.executable,
        metavar="PATH",
        help="the interpreter that runs the bots (default: this one), e.g. a venv made from "
        'requirements/bot.lock as the image\'s (README "Memory")',
    )
    p.add_argument("--serve-sim", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--baseline-client", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_sim is not None:
        asyncio.run(_serve_sim(args.serve_sim, args.trades_per_s, args.tickers_per_s, args.seed,
                               args.depth_per_s or 10.0))  # fmt: skip
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
    for item in args.bot_env:
        key, sep, value = item.partition("=")
        if not sep or key.startswith("TRADEFLEET_"):
            p.error(f"--bot-env {item!r}: expected NAME=VALUE, not a TRADEFLEET_ key (--bot-set)")
        extra[key] = value
    window = args.window if args.window is not None else 20.0 if args.quick else 60.0
    warmup = args.warmup if args.warmup is not None else 8.0 if args.quick else 15.0
    if args.bots < 1 or args.scale <= 0:
        p.error("--bots must be at least 1 and --scale positive")
    trades, tickers = args.trades_per_s * args.scale, args.tickers_per_s * args.scale
    result = measure(
        window,
        warmup,
        trades,
        tickers,
        args.seed,
        extra,
        bots=args.bots,
        depth_per_s=10.0 * args.scale,
        mode=args.mode,
        bot_python=args.bot_python,
    )
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
