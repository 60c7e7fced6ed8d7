"""Hot-path micro-benchmark: one bot's per-frame work, in process, on realistic frames.

    python -m bench.hotpath            # ~10 s
    python -m bench.hotpath --quick    # ~2 s
    python -m bench.hotpath --json     # the figures as one JSON object (for before/after records)

What runs is the bot's real code, nothing stubbed on the path: `BinanceSpot.parse` on the raw
bytes, then `BotEngine.handle` (BookKeeper -> BookSync/OrderBook, the price sample into the real
`BufferedStore` queue, trades, klines -> candle -> incremental SMA -> crossover). Only the edges a
frame never touches synchronously are replaced: the REST snapshot and the warm-up history are
handed to the engine as the events the background fetches would post, and the store's writer task
does not run (its queue is emptied between frames, outside the timed region, as the writer would).

Two workloads:
- `generated`: a BTCUSDT-like book of 1,000 levels per side from the simulator's generator, ~20
  changed levels per side per diff (Binance's depth@100ms for BTCUSDT), and per diff 4 trades,
  1 bookTicker, a kline progress frame every 20 diffs (Binance pushes klines every ~2 s) and a
  closed 1m kline every 600 diffs (one minute of diffs);
- `capture`: the real recorded Binance frames in `sim/tradefleet_sim/data/capture_*` (both
  sessions, every symbol, each through its own engine from its recorded REST snapshot).

Reported per stream: µs per message for parse and for engine.handle (median of per-frame times,
and mean), and allocations measured in a separate pass under tracemalloc (a traced run is several
times slower, so its times are not used): mean transient bytes per message (peak above the
starting point while one frame is handled) and bytes still held after the run. The "mix" line is the
cost of one second of BTCUSDT at the real rates (10 diffs, 40 trades, 10 tickers, 0.5 klines)
as a percentage of one core, from the mean times.
"""

from __future__ import annotations

import argparse
import array
import functools
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from tradefleet.adapters.binance import BinanceSpot
from tradefleet.config import BotConfig
from tradefleet.domain.market import DepthSnapshot, StreamStatus
from tradefleet.domain.models import Candle
from tradefleet.engine.book_keeper import BookKeeper, SnapshotReady
from tradefleet.engine.pipeline import BotEngine
from tradefleet.engine.strategy import HistoryReady
from tradefleet.metrics import BotMetrics
from tradefleet.ports import SymbolRules
from tradefleet.store import open_store
from tradefleet.store.buffered import BufferedStore

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "sim" / "tradefleet_sim" / "data"
MINUTE_MS = 60_000
# One second of BTCUSDT on Binance (2024-2025 typical): depth@100ms, tens of trades, a ticker per
# top change (capped here at the diff rate, as our simulator sends it), klines every ~2 s.
REAL_RATES = {"depth": 10.0, "trade": 40.0, "book_ticker": 10.0, "kline": 0.5}

_encode = msgspec.json.Encoder().encode


class _NoRest:
    """The REST edge: never reached synchronously; the bench posts the fetch results itself."""

    async def fetch_depth_snapshot(self, market_id: str, limit: int) -> DepthSnapshot:
        raise RuntimeError("not used in the hot-path benchmark")

    async def fetch_candles(self, symbol: str, interval: str, since_ms: int, until_ms: int) -> list[Candle]:
        raise RuntimeError("not used in the hot-path benchmark")

    async def fetch_symbol_rules(self, symbol: str) -> SymbolRules:
        raise RuntimeError("not used in the hot-path benchmark")

    async def close(self) -> None:
        return None


def _no_spawn(coro: Coroutine[Any, Any, None]) -> None:
    coro.close()  # the fetch results are posted by the bench instead


@dataclass
class Rig:
    """One bot's engine, wired as `BotRuntime` wires it, minus the background tasks."""

    market_id: str
    engine: BotEngine
    keeper: BookKeeper
    store: BufferedStore
    parse: Callable[[bytes], object]

    @classmethod
    def build(cls, market_id: str, symbol: str, tmp: Path) -> Rig:
        config = BotConfig.from_mapping(
            {"name": "bench", "symbol": symbol, "interval": "1m", "store_url": f"sqlite:///{tmp}/bench.db"}
        )
        metrics = BotMetrics()
        store = BufferedStore.from_config(open_store(config.store_url), config, metrics)
        holder: list[BotEngine] = []
        keeper = BookKeeper(
            market_id=market_id,
            rest=_NoRest(),
            depth_limit=1000,
            metrics=metrics,
            post=lambda e: holder[0].handle(e),  # noqa: PLW0108 (bound after construction)
            spawn=_no_spawn,
        )
        engine = BotEngine(config, metrics, book=keeper, rest=_NoRest(), sink=store, spawn=_no_spawn)
        holder.append(engine)
        engine.handle(StreamStatus("connected"))
        return cls(market_id, engine, keeper, store, BinanceSpot().parse)

    def snapshot(self, last_update_id: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        snap = DepthSnapshot(self.market_id, last_update_id, bids, asks)
        self.engine.handle(SnapshotReady(self.market_id, self.keeper._generation, snap))

    def history(self, candles: list[Candle], until: int) -> None:
        since = candles[0].open_time if candles else until
        self.engine.handle(HistoryReady("warmup", since, until, candles))

    def drain(self) -> None:
        """What the store's writer task does between frames (not timed)."""
        self.store._prices.clear()
        self.store._candles.clear()


# -- workloads ------------------------------------------------------------------------------------


@dataclass
class Workload:
    name: str
    rigs: list[Rig]
    frames: list[tuple[int, str, bytes]]  # (rig index, stream kind, raw frame)
    setup: list[Callable[[], None]] = field(default_factory=list)


def _frame(stream: str, data: dict[str, Any]) -> bytes:
    return _encode({"stream": stream, "data": data})


def _wire(d: Decimal) -> str:
    return f"{d:.8f}"


def generated(n_diffs: int, tmp: Path, seed: int = 7) -> Workload:
    from tradefleet_sim.book import Book
    from tradefleet_sim.generator import BookGenerator
    from tradefleet_sim.rules import START_PRICES, generated_rules

    sym = "BTCUSDT"
    rules = generated_rules(sym)
    rng = random.Random(seed)
    gen = BookGenerator(rules.tick_size, rules.step_size, rng)
    book = Book()
    bids0, asks0 = gen.seed(START_PRICES[sym])
    book.apply(bids0, asks0)
    update_id = 1_000_000
    snap_bids = [(_wire(p), _wire(q)) for p, q in bids0]
    snap_asks = [(_wire(p), _wire(q)) for p, q in asks0]
    rig = Rig.build(sym, "BTC/USDT", tmp)
    t0 = 1_750_000_000_000 // MINUTE_MS * MINUTE_MS
    history = [
        _candle(t0 - (260 - i) * MINUTE_MS, Decimal(92000 + 40 * ((i * 7919) % 13 - 6))) for i in range(260)
    ]
    frames: list[tuple[int, str, bytes]] = []
    now = t0
    trade_id = 1
    candle_open = t0
    o = h = lo = c = START_PRICES[sym]
    for i in range(n_diffs):
        now += 100
        b, a = gen.next_diff(book)
        book.apply(b, a)
        first = update_id + 1
        update_id += len(b) + len(a)
        frames.append((0, "depth", _frame("btcusdt@depth@100ms", {
            "e": "depthUpdate", "E": now, "s": sym, "U": first, "u": update_id,
            "b": [[_wire(p), _wire(q)] for p, q in b], "a": [[_wire(p), _wire(q)] for p, q in a],
        })))  # fmt: skip
        bb, ba = book.bids.best(), book.asks.best()
        assert bb is not None and ba is not None
        frames.append((0, "book_ticker", _frame("btcusdt@bookTicker", {
            "u": update_id, "s": sym, "b": _wire(bb[0]), "B": _wire(bb[1]),
            "a": _wire(ba[0]), "A": _wire(ba[1]),
        })))  # fmt: skip
        c = bb[0]
        h, lo = max(h, c), min(lo, c)
        for _ in range(4):
            trade_id += 1
            frames.append((0, "trade", _frame("btcusdt@trade", {
                "e": "trade", "E": now, "s": sym, "t": trade_id, "p": _wire(c), "q": "0.00120000",
                "T": now, "m": rng.random() < 0.5, "M": True,
            })))  # fmt: skip
        closed = now - candle_open >= MINUTE_MS
        if closed or i % 20 == 19:
            frames.append((0, "kline", _frame("btcusdt@kline_1m", {
                "e": "kline", "E": now, "s": sym, "k": {
                    "t": candle_open, "T": candle_open + MINUTE_MS - 1, "s": sym, "i": "1m", "f": 1, "L": 2,
                    "o": _wire(o), "c": _wire(c), "h": _wire(h), "l": _wire(lo), "v": "12.50000000",
                    "n": 100, "x": closed, "q": "1000000.00000000", "V": "6.2", "Q": "500000.0", "B": "0",
                },
            })))  # fmt: skip
        if closed:
            candle_open += MINUTE_MS
            o = h = lo = c
    # The snapshot lines up with the first diff; the history ends right before the first candle.
    setup = [
        lambda: rig.engine.handle(rig.parse(frames[0][2])),  # buffered: triggers the (posted) fetch
        lambda: rig.snapshot(1_000_000, snap_bids, snap_asks),
        lambda: rig.engine.handle(rig.parse(_first_kline(frames))),
        lambda: rig.history(history, t0),
    ]
    return Workload("generated", [rig], frames[1:], setup)


def _first_kline(frames: list[tuple[int, str, bytes]]) -> bytes:
    return next(f for _, kind, f in frames if kind == "kline")


def _candle(open_time: int, close: Decimal) -> Candle:
    return Candle("BTC/USDT", "1m", open_time, open_time + MINUTE_MS - 1, close, close, close, close,
                  Decimal(1), True, 10)  # fmt: skip


def captured(tmp: Path) -> Workload:
    """Every symbol of both recorded sessions, each through its own engine."""
    rigs: list[Rig] = []
    frames: list[tuple[int, str, bytes]] = []
    setup: list[Callable[[], None]] = []
    for path in sorted(DATA.glob("capture_*_ws.jsonl")):
        day = path.name.removeprefix("capture_").removesuffix("_ws.jsonl")
        snaps = json.loads((DATA / f"capture_{day}_rest_depth.json").read_text())
        index: dict[str, int] = {}
        synced: set[str] = set()
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "_meta" in rec:
                continue
            msg = rec["msg"]
            sym = msg["stream"].split("@", 1)[0].upper()
            snap = snaps.get(sym, {}).get("response")
            if snap is None:
                continue
            data = msg["data"]
            depth = data.get("e") == "depthUpdate"
            if (depth or "@bookTicker" in msg["stream"]) and int(data["u"]) <= int(snap["lastUpdateId"]):
                continue  # before the snapshot, as a client that starts from it never sees
            if sym not in index:
                index[sym] = len(rigs)
                rigs.append(Rig.build(sym, _unified(sym), tmp))
            if depth and sym not in synced:
                synced.add(sym)
                rig = rigs[index[sym]]
                last = int(snap["lastUpdateId"])
                bids = [(p, q) for p, q in snap["bids"]]
                asks = [(p, q) for p, q in snap["asks"]]
                first = _encode(msg)
                setup.append(functools.partial(_buffer_first, rig, first))
                setup.append(functools.partial(rig.snapshot, last, bids, asks))
                continue
            kind = _kind(msg["stream"])
            frames.append((index[sym], kind, _encode(msg)))
    return Workload("capture", rigs, frames, setup)


def _buffer_first(rig: Rig, frame: bytes) -> None:
    rig.engine.handle(rig.parse(frame))


def _unified(market_id: str) -> str:
    for quote in ("USDT", "BUSD", "BTC", "ETH", "BNB", "EUR"):
        if market_id.endswith(quote):
            return f"{market_id.removesuffix(quote)}/{quote}"
    raise ValueError(f"no known quote asset in {market_id}")


def _kind(stream: str) -> str:
    name = stream.partition("@")[2]
    if name.startswith("depth"):
        return "depth"
    if name == "bookTicker":
        return "book_ticker"
    if name.startswith("kline"):
        return "kline"
    return "trade"


# -- measurement ----------------------------------------------------------------------------------


@dataclass
class Stats:
    parse_ns: dict[str, list[int]] = field(default_factory=dict)
    handle_ns: dict[str, list[int]] = field(default_factory=dict)
    transient: dict[str, list[int]] = field(default_factory=dict)
    retained_bytes: int = 0


def _timed(work: Workload, stats: Stats) -> None:
    for step in work.setup:
        step()
    perf = time.perf_counter_ns
    rigs = work.rigs
    for i, kind, raw in work.frames:
        rig = rigs[i]
        t0 = perf()
        event = rig.parse(raw)
        t1 = perf()
        rig.engine.handle(event)
        t2 = perf()
        stats.parse_ns.setdefault(kind, []).append(t1 - t0)
        stats.handle_ns.setdefault(kind, []).append(t2 - t1)
        if kind == "depth":
            rig.drain()
    _check(work)


def _traced(work: Workload, stats: Stats) -> None:
    for step in work.setup:
        step()
    rigs = work.rigs
    # Raw machine integers, allocated before tracing starts: the record must not count itself.
    peaks = array.array("q", bytes(8 * len(work.frames)))
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for n, (i, kind, raw) in enumerate(work.frames):
        rig = rigs[i]
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        rig.engine.handle(rig.parse(raw))
        peaks[n] = tracemalloc.get_traced_memory()[1] - before
        if kind == "depth":
            rig.drain()
    gc.collect()
    stats.retained_bytes += tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    for n, (_, kind, _) in enumerate(work.frames):
        stats.transient.setdefault(kind, []).append(peaks[n])
    _check(work)


def _check(work: Workload) -> None:
    """The run is only worth reporting if every book stayed in sync (no gap, no crossed book)."""
    for rig in work.rigs:
        m = rig.engine.metrics.counters()
        if not rig.keeper.in_sync or m["sequence_gaps"] or m["malformed_frames"]:
            raise SystemExit(f"{work.name}/{rig.market_id}: book lost sync during the benchmark: {m}")


def _us(ns: list[int]) -> tuple[float, float]:
    return statistics.median(ns) / 1000, statistics.fmean(ns) / 1000


def run(quick: bool) -> dict[str, Any]:
    import tempfile

    n_diffs = 1200 if quick else 6000
    repeat = 2 if quick else 5
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        makers: list[Callable[[], Workload]] = [
            functools.partial(generated, n_diffs, Path(tmp)),
            functools.partial(captured, Path(tmp)),
        ]
        for make in makers:
            stats = Stats()
            name = ""
            for _ in range(repeat):
                work = make()
                name = work.name
                _timed(work, stats)
            _traced(make(), stats)
            rows: dict[str, Any] = {}
            for kind in sorted(stats.handle_ns):
                p_med, p_mean = _us(stats.parse_ns[kind])
                h_med, h_mean = _us(stats.handle_ns[kind])
                rows[kind] = {
                    "n": len(stats.handle_ns[kind]) // repeat,
                    "parse_us_p50": round(p_med, 2),
                    "handle_us_p50": round(h_med, 2),
                    "total_us_mean": round(p_mean + h_mean, 2),
                    "alloc_bytes_per_msg": round(statistics.fmean(stats.transient[kind])),
                }
            mix = sum(REAL_RATES[k] * rows[k]["total_us_mean"] for k in REAL_RATES if k in rows)
            out[name] = {"streams": rows, "mix_cpu_pct": round(mix / 1e6 * 100, 4),
                         "retained_bytes": stats.retained_bytes}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer frames and repeats (~2 s)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args(argv)
    started = time.perf_counter()
    result = run(args.quick)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{'workload':10} {'stream':12} {'n':>6} {'parse p50':>10} {'handle p50':>11} {'total mean':>11} "
          f"{'alloc B/msg':>12}")  # fmt: skip
    for name, res in result.items():
        for kind, r in res["streams"].items():
            print(f"{name:10} {kind:12} {r['n']:>6} {r['parse_us_p50']:>8.2f}us {r['handle_us_p50']:>9.2f}us "
                  f"{r['total_us_mean']:>9.2f}us {r['alloc_bytes_per_msg']:>12}")  # fmt: skip
        print(f"{name:10} one second of BTCUSDT at real rates costs {res['mix_cpu_pct']:.3f}% of a core; "
              f"{res['retained_bytes']} bytes retained after the run")  # fmt: skip
    gen = result["generated"]["streams"]
    print(
        f"hotpath depth_us={gen['depth']['total_us_mean']} trade_us={gen['trade']['total_us_mean']} "
        f"kline_us={gen['kline']['total_us_mean']} mix_cpu_pct={result['generated']['mix_cpu_pct']} "
        f"depth_alloc_b={gen['depth']['alloc_bytes_per_msg']} ({time.perf_counter() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
