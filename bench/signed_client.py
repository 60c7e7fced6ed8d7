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
Ends with one line: `signed_client sent_us=… rtt_us=… cpu_us=… aiohttp_sent_us=… aiohttp_rtt_us=…
aiohttp_cpu_us=… ratio_sent=… ratio_rtt=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from tests.orders.conftest import SIM_CREDENTIALS

from bench.aiohttp_signed import AiohttpSignedRest
from tradefleet.adapters.binance_signed import BinanceSignedRest

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


async def main(n: int, rounds: int) -> None:
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
    print(f"{'':34} {'sent µs':>9} {'round trip µs':>14} {'CPU µs':>8}")
    for label, r in (("ours (own HTTP/1.1)", ours), ("same signing on aiohttp", peer)):
        print(f"{label:34} {r['sent']:9.1f} {r['rtt']:14.1f} {r['cpu']:8.1f}")
    print(
        f"signed_client sent_us={ours['sent']:.1f} rtt_us={ours['rtt']:.1f} cpu_us={ours['cpu']:.1f} "
        f"aiohttp_sent_us={peer['sent']:.1f} aiohttp_rtt_us={peer['rtt']:.1f} "
        f"aiohttp_cpu_us={peer['cpu']:.1f} "
        f"ratio_sent={peer['sent'] / ours['sent']:.2f} ratio_rtt={peer['rtt'] / ours['rtt']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench.signed_client", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=2000, help="requests per client per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per client (default 3)")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
