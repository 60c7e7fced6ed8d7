"""The signed REST client's own cost: ours (`adapters/http1.py`) against the same signing on aiohttp.

`python -m bench.signed_client [--n 2000] [--rounds 3]`: each client sends N signed market-order
POSTs (a bot's real parameters) one after the other to a minimal HTTP server in this process (an
asyncio protocol that stamps when a request's head is complete and writes a fixed FULL-sized JSON
answer), on one keep-alive connection. The server costs the same for both, so the differences are the
clients'. The two alternate in rounds so both see the same machine load. Per request, medians:
- `sent`: from the call to the server holding the whole request (sign, build, write, and every
  loop turn the client takes before it writes): the client's share of tick -> order's `request`;
- `round trip`: the call until the decoded answer is back;
- `CPU`: the process CPU time of one round trip (client + the tiny server).
Then the same against the simulator as its own process (`tradefleet sim --record-order-arrivals`,
as `bench.tick_to_order` runs it; `--sim-orders`, 0 to skip): `to sim` is from the call to the
simulator's order handler, on the host's CLOCK_MONOTONIC — tick -> order's `request` segment without
the bot around it (orders alternate BUY/SELL; a refusal for balance still reaches the handler), one
every `--gap-ms` (20): the longer both processes sat idle, the slower the wake-up and the colder the
caches, for both clients.
Ends with one line: `signed_client sent_us=… rtt_us=… cpu_us=… to_sim_us=… aiohttp_sent_us=…
aiohttp_rtt_us=… aiohttp_cpu_us=… aiohttp_to_sim_us=… ratio_sent=… ratio_rtt=… ratio_to_sim=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.orders.conftest import SIM_CREDENTIALS

from bench.aiohttp_signed import AiohttpSignedRest
from bench.tick_to_order import Sim
from tradefleet.adapters.binance_signed import BinanceHttpError, BinanceSignedRest
from tradefleet.logs import now_ms

_FILL = (b'{"price":"43000.01000000","qty":"0.00232000","commission":"0.00000000","commissionAsset":"BNB",'
         b'"tradeId":1234567}')  # fmt: skip
_BODY = (b'{"symbol":"BTCUSDT","orderId":28,"orderListId":-1,"clientOrderId":"tf-bench","transactTime":1,'
         b'"price":"0.00000000","origQty":"0.00232000","executedQty":"0.00232000","cummulativeQuoteQty":'
         b'"99.76","status":"FILLED","timeInForce":"GTC","type":"MARKET","side":"BUY","fills":['
         + b",".join([_FILL] * 3) + b"]}")  # fmt: skip
_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: %d\r\n"
           b"Date: Sat, 05 Dec 2026 12:00:00 GMT\r\nServer: bench\r\n\r\n%s")  # fmt: skip
_ANSWER %= (len(_BODY), _BODY)


class _Server(asyncio.Protocol):
    arrived: list[int]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:  # our requests carry no body
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.arrived.append(time.perf_counter_ns())
            self.transport.write(_ANSWER)


async def _run(client: Any, arrived: list[int], n: int) -> dict[str, list[float]]:
    params: dict[str, str | int] = {
        "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "100",
        "newClientOrderId": "tf-bench-0000000001", "newOrderRespType": "FULL",
        "timestamp": 1_764_936_000_000, "recvWindow": 5000,
    }  # fmt: skip
    await client.request("POST", "/api/v3/order", params)  # connect outside the timings
    out: dict[str, list[float]] = {"sent": [], "rtt": [], "cpu": []}
    for _ in range(n):
        arrived.clear()
        cpu, start = time.process_time(), time.perf_counter_ns()
        await client.request("POST", "/api/v3/order", params)
        end = time.perf_counter_ns()
        out["cpu"].append((time.process_time() - cpu) * 1e6)
        out["sent"].append((arrived[0] - start) / 1000)
        out["rtt"].append((end - start) / 1000)
    await client.close()
    return out


async def _to_sim(
    url: str, arrivals: Callable[[], dict[str, int]], n: int, rounds: int, gap_s: float
) -> dict[str, float]:
    """Median µs from the call to the simulator's order handler, per client, alternating rounds."""
    got: dict[str, list[float]] = {"ours": [], "aiohttp": []}
    for r in range(rounds):
        for name, make in (("ours", BinanceSignedRest), ("aiohttp", AiohttpSignedRest)):
            client: Any = make(url, SIM_CREDENTIALS)
            await client.request("GET", "/api/v3/account", {"timestamp": now_ms()})  # connect first
            started: dict[str, int] = {}
            for i in range(n):
                cid = f"tf-bench-{name}-{r}-{i}"
                params: dict[str, str | int] = {
                    "symbol": "BTCUSDT", "side": "BUY" if i % 2 == 0 else "SELL", "type": "MARKET",
                    "quantity": "0.00100000", "newClientOrderId": cid, "newOrderRespType": "FULL",
                    "timestamp": now_ms(), "recvWindow": 5000,
                }  # fmt: skip
                started[cid] = time.monotonic_ns()
                with contextlib.suppress(BinanceHttpError):
                    await client.request("POST", "/api/v3/order", params)
                await asyncio.sleep(gap_s)  # as an order comes: to a simulator waiting in its loop
            await client.close()
            arrived = arrivals()
            got[name] += [(arrived[c] - t) / 1000 for c, t in started.items() if c in arrived]
    return {name: statistics.median(v) for name, v in got.items()}


async def main(n: int, rounds: int, sim_orders: int, gap_ms: float) -> None:
    arrived: list[int] = []

    def protocol() -> _Server:
        p = _Server()
        p.arrived = arrived
        return p

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    runs: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for name, make in (("ours", BinanceSignedRest), ("aiohttp", AiohttpSignedRest)):
            got = await _run(make(url, SIM_CREDENTIALS), arrived, n)
            for k, v in got.items():
                runs.setdefault(name, {}).setdefault(k, []).extend(v)
    server.close()
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in runs.items()}
    ours, peer = med["ours"], med["aiohttp"]
    if sim_orders > 0:
        with tempfile.TemporaryDirectory() as tmp:
            sim = Sim(Path(tmp), speed=12.0, levels=200)
            try:
                to_sim = await _to_sim(sim.url, sim.arrivals, sim_orders, rounds, gap_ms / 1000)
            finally:
                sim.stop()
        ours["to_sim"], peer["to_sim"] = to_sim["ours"], to_sim["aiohttp"]
    else:
        ours["to_sim"] = peer["to_sim"] = float("nan")
    print(f"{'':34} {'sent µs':>9} {'round trip µs':>14} {'CPU µs':>8} {'to sim µs':>10}")
    for label, r in (("ours (own HTTP/1.1)", ours), ("same signing on aiohttp", peer)):
        print(f"{label:34} {r['sent']:9.1f} {r['rtt']:14.1f} {r['cpu']:8.1f} {r['to_sim']:10.0f}")
    print(
        f"signed_client sent_us={ours['sent']:.1f} rtt_us={ours['rtt']:.1f} cpu_us={ours['cpu']:.1f} "
        f"to_sim_us={ours['to_sim']:.0f} aiohttp_sent_us={peer['sent']:.1f} aiohttp_rtt_us={peer['rtt']:.1f} "
        f"aiohttp_cpu_us={peer['cpu']:.1f} aiohttp_to_sim_us={peer['to_sim']:.0f} "
        f"ratio_sent={peer['sent'] / ours['sent']:.2f} ratio_rtt={peer['rtt'] / ours['rtt']:.2f} "
        f"ratio_to_sim={peer['to_sim'] / ours['to_sim']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench.signed_client", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=2000, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per client (default 3)")
    parser.add_argument(
        "--sim-orders", type=int, default=40, help="orders per client per round to the simulator"
    )
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between orders to the simulator")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds, args.sim_orders, args.gap_ms))
