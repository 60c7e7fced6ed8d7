"""The two consumers the ingest benchmark compares, each run in its own process so CPU and RSS are
its own: `ours` (tradefleet Feed + BinanceSpot parser + BookKeeper) and `ccxt` (ccxt.pro
`watch_order_book`, the usual way to hold a Binance book in Python).

Both see the same stream from `bench.stream_server`. Measured, identically for both:
- throughput: diffs applied per second between the book reaching diff #warmup and the last flood
  diff, and process CPU time per diff over the same window;
- latency: for each paced diff, monotonic clock now minus the server's send time (carried in `E`),
  taken right after the diff is in the book;
- peak RSS (ru_maxrss) at the end.

Two more sides measure the websocket client alone (`recv-websockets`, `recv-aiohttp`): they fetch
the snapshot (the server floods only after that), then receive the flood frames and drop them, so
the difference is the receive path's own cost (the feed's choice of client rests on it).

Usage: python -m bench.consumers {ours|ccxt|recv-websockets|recv-aiohttp} --base http://127.0.0.1:P \
           --flood N --paced M --marks "..."
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
from typing import Any


class Probe:
    """Follows the book's update id and records the two throughput marks and paced latencies."""

    def __init__(self, warm_u: int, flood_u: int, final_u: int) -> None:
        self.warm_u, self.flood_u, self.final_u = warm_u, flood_u, final_u
        self.marks: dict[str, tuple[float, float]] = {}
        self.latencies_us: list[int] = []
        self.done = asyncio.Event()
        # One comparison per update until something is due: the harness's own cost per message
        # counts against both sides, so it is kept to the minimum.
        self.next_u = warm_u

    def seen(self, update_id: int, event_time: int | None) -> None:
        if update_id >= self.next_u:
            self._due(update_id, event_time)

    def _due(self, update_id: int, event_time: int | None) -> None:
        if "warm" not in self.marks:
            self.marks["warm"] = (time.perf_counter(), time.process_time())
            self.next_u = self.flood_u
        if "flood" not in self.marks and update_id >= self.flood_u:
            self.marks["flood"] = (time.perf_counter(), time.process_time())
            self.next_u = self.flood_u + 1
        if update_id > self.flood_u and event_time is not None:
            self.latencies_us.append(time.monotonic_ns() // 1000 - event_time)
        if update_id >= self.final_u:
            self.done.set()


async def run_ours(base: str, probe: Probe, native: bool | None = None) -> None:
    """Our feed + parser + book keeper; `native` None is what a bot runs (native when installed)."""
    from bench.min_rest import MinimalRest
    from tradefleet.adapters.binance import BinanceSpot
    from tradefleet.adapters.feed import Feed
    from tradefleet.domain.market import DepthDiff
    from tradefleet.domain.native_book import ParsedDiff
    from tradefleet.engine.book_keeper import BookKeeper
    from tradefleet.metrics import BotMetrics

    metrics = BotMetrics()
    rest = MinimalRest(base)
    diff_types = (DepthDiff, ParsedDiff)

    def handle(event: Any) -> None:
        keeper.handle(event)
        if type(event) in diff_types and keeper.in_sync:
            probe.seen(keeper.last_update_id, event.event_time)

    keeper = BookKeeper(market_id="BTCUSDT", rest=rest, depth_limit=1000, metrics=metrics, post=handle,
                        native=native)  # fmt: skip
    adapter = BinanceSpot(native=native)
    url = adapter.stream_url(base.replace("http://", "ws://"), "BTCUSDT", "1m")
    feed = Feed(adapter, url, handle, metrics, stale_after_s=30)  # type: ignore[arg-type]
    settle_gc()
    task = asyncio.create_task(feed.run())
    await asyncio.wait_for(probe.done.wait(), 600)
    await feed.stop()
    await task
    await rest.close()


async def run_ccxt(base: str, probe: Probe) -> None:
    from bench.ccxt_client import make_binance

    ex = make_binance(rest_url=base, ws_url=base.replace("http://", "ws://"), pro=True)
    settle_gc()
    try:
        last = 0
        while not probe.done.is_set():
            ob = await ex.watch_order_book("BTC/USDT")
            nonce = ob["nonce"]
            if nonce != last:
                last = nonce
                probe.seen(nonce, ob["timestamp"])
    finally:
        await ex.close()


async def run_floor(base: str, probe: Probe) -> None:
    """The parse-only floor: the bot's websocket client (aiohttp) and orjson's parse of every frame,
    no validation, no book. Nothing that keeps a book can be cheaper than this."""
    import aiohttp
    import orjson

    url = base.replace("http://", "ws://") + "/stream?streams=btcusdt@depth@100ms"
    loads = orjson.loads
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/v3/depth?symbol=BTCUSDT&limit=1000") as r:
            await r.read()  # the server floods only after a snapshot was served
        async with session.ws_connect(url, compress=0, max_msg_size=2**22, decode_text=False) as ws:
            settle_gc()
            while not probe.done.is_set():
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"unexpected {msg.type}")
                data = loads(msg.data)["data"]
                probe.seen(data["u"], data["E"])


async def run_cryptofeed(base: str, probe: Probe) -> None:
    """cryptofeed's own Binance feed (its websocket client, its parser, its C `order_book` with
    Decimals), pointed at the bench server instead of the exchange."""
    import cryptofeed.feed
    from cryptofeed import FeedHandler
    from cryptofeed.connection import RestEndpoint, WebsocketEndpoint, WSAsyncConn
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Binance

    ws = base.replace("http://", "ws://")

    class PlainWS(WSAsyncConn):  # type: ignore[misc]
        """cryptofeed insists on wss://; the bench server is plain ws:// on loopback."""

        def __init__(self, address: str, *args: Any, **kwargs: Any) -> None:
            super().__init__("wss://" + address.removeprefix("ws://"), *args, **kwargs)
            self.address = address

    cryptofeed.feed.WSAsyncConn = PlainWS

    class LocalBinance(Binance):  # type: ignore[misc]
        websocket_endpoints = [WebsocketEndpoint(ws, sandbox=ws, options={"compression": None})]
        rest_endpoints = [RestEndpoint(base, sandbox=base, routes=Binance.rest_endpoints[0].routes)]

    async def book(ob: Any, receipt_ts: float) -> None:
        probe.seen(int(ob.sequence_number), int(ob.timestamp * 1000) if ob.timestamp else None)

    fh = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
    fh.add_feed(LocalBinance(symbols=["BTC-USDT"], channels=[L2_BOOK], callbacks={L2_BOOK: book},
                             max_depth=0))  # fmt: skip
    settle_gc()
    fh.run(start_loop=False)
    await asyncio.wait_for(probe.done.wait(), 600)
    await asyncio.sleep(0)


async def run_recv(base: str, probe: Probe, client: str, frames: int, warmup: int) -> None:
    """Receive `frames` frames with a bare client; the probe's marks are frame counts."""
    import aiohttp

    url = base.replace("http://", "ws://") + "/stream?streams=btcusdt@depth@100ms"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/v3/depth?symbol=BTCUSDT&limit=1000") as r:
            await r.read()  # the server floods only after a snapshot was served
        if client == "aiohttp":
            async with session.ws_connect(url, compress=0, max_msg_size=2**22, decode_text=False) as ws:
                for n in range(1, frames + 1):
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"unexpected {msg.type}")
                    probe.seen(n, None)
            return
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=2**22, proxy=None) as conn:
        for n in range(1, frames + 1):
            await conn.recv(decode=False)
            probe.seen(n, None)


GC_MODE = "default"
SIDES = ("ours", "ours-pure", "ccxt", "cryptofeed", "floor", "recv-websockets", "recv-aiohttp")


def settle_gc() -> None:
    """Called once a consumer is set up (everything imported), right before it starts receiving."""
    if GC_MODE == "freeze":
        gc.collect()
        gc.freeze()
    elif GC_MODE == "off":
        gc.disable()


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return float(s[min(len(s) - 1, int(q * len(s)))])


async def main(argv: list[str]) -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("side", choices=SIDES)
    ap.add_argument("--base", required=True)
    ap.add_argument("--flood", type=int, required=True)
    ap.add_argument("--paced", type=int, required=True)
    ap.add_argument("--marks", required=True, help="the server's ready line: flood_u final_u u@1,u@1001,...")
    ap.add_argument("--warmup", type=int, default=1000, help="diffs applied before the clock starts")
    ap.add_argument("--gc", choices=("default", "freeze", "off"), default="default",
                    help="freeze: gc.freeze() once set up (start-up objects never rescanned)")  # fmt: skip
    a = ap.parse_args(argv)
    global GC_MODE
    GC_MODE = a.gc
    flood_u, final_u, *every_1000 = (int(x) for x in a.marks.split())
    if a.side.startswith("recv-"):
        frames = 1 + a.flood  # the first diff, then the flood; marks count frames
        probe = Probe(warm_u=a.warmup + 1, flood_u=frames, final_u=frames)
        await run_recv(a.base, probe, a.side.removeprefix("recv-"), frames, a.warmup)
    else:
        probe = Probe(warm_u=every_1000[a.warmup // 1000], flood_u=flood_u, final_u=final_u)
        if a.side == "ours":
            await run_ours(a.base, probe)
        elif a.side == "ours-pure":
            await run_ours(a.base, probe, native=False)
        elif a.side == "ccxt":
            await run_ccxt(a.base, probe)
        elif a.side == "floor":
            await run_floor(a.base, probe)
        else:
            await run_cryptofeed(a.base, probe)
    (t0, c0), (t1, c1) = probe.marks["warm"], probe.marks["flood"]
    n = a.flood - a.warmup
    lat = probe.latencies_us
    return {
        "side": a.side,
        "msgs": n,
        "msgs_per_s": n / (t1 - t0),
        "cpu_us_per_msg": (c1 - c0) / n * 1e6,
        "paced_samples": len(lat),
        "p50_us": percentile(lat, 0.50),
        "p99_us": percentile(lat, 0.99),
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
