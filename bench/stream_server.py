"""A lean Binance-protocol server for the ingest benchmark: it must never be the bottleneck.

Frames are generated before the clock starts (`bench.stream_gen`) and written to the socket as
pre-built websocket frames in batches, with backpressure (`drain`), so the consumer under test sets
the pace. It speaks just enough of Binance for both consumers: `GET /api/v3/exchangeInfo`,
`/api/v3/depth`, `/api/v3/time` (HTTP/1.1 keep-alive), combined streams (`/stream?streams=`) for our
feed, and raw `/ws` with a `SUBSCRIBE` message for ccxt.pro. Pings are answered with pongs.

Each connection gets: one diff, a pause until the client has fetched its depth snapshot (so neither
client's buffer overflows while its snapshot is in flight), `--flood` diffs as fast as the client
reads, then `--paced` diffs at `--rate` per second whose `E` field carries the send time in
microseconds of the shared monotonic clock (after a 3 s pause that lets the flood drain), from
which consumers measure feed->book latency.

Usage: python -m bench.stream_server --port P --flood N --paced M [--rate 1000] [--seed 7]
Prints `ready <port>` once listening. Not a simulator: no faults, no matching, no validation.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import sys
import time
from pathlib import Path

from bench.stream_gen import encode, generate

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
EXCHANGE_INFO = (
    Path(__file__).resolve().parent.parent / "tests/data/binance/exchangeInfo_2021-10-12_trimmed.json"
)
STREAM = "btcusdt@depth@100ms"


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    mask = await reader.readexactly(4) if b1 & 0x80 else b""
    data = await reader.readexactly(n)
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return b0 & 0x0F, data


class BenchServer:
    def __init__(self, flood: int, paced: int, rate: float, seed: int, pause_s: float = 3.0) -> None:
        self.pause_s = pause_s
        stream = generate(1 + flood + paced, seed=seed)
        self.snapshot = json.dumps(stream.snapshot, separators=(",", ":")).encode()
        info = json.loads(EXCHANGE_INFO.read_text())["response"]
        self.exchange_info = json.dumps(info, separators=(",", ":")).encode()
        self.rate = rate
        self.n_flood = flood
        self.update_ids = [int(d["u"]) for d in stream.diffs]  # type: ignore[call-overload]
        # Pre-built frames per flavour: combined-stream for our feed, raw for ccxt.pro.
        self.frames: dict[bool, list[bytes]] = {}
        self.paced_parts: dict[bool, list[tuple[bytes, bytes]]] = {}
        for combined in (True, False):
            payloads = [encode(d, STREAM if combined else None) for d in stream.diffs]
            self.frames[combined] = [ws_frame(p) for p in payloads[: 1 + flood]]
            parts = []
            for p in payloads[1 + flood :]:
                head, _, rest = p.partition(b'"E":')
                parts.append((head + b'"E":', rest[rest.index(b",") :]))
            self.paced_parts[combined] = parts
        self.snapshot_served = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if headers.get("upgrade", "").lower() == "websocket":
                    await self.websocket(reader, writer, target, headers)
                    return
                await self.rest(writer, target)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def rest(self, writer: asyncio.StreamWriter, target: str) -> None:
        path = target.split("?", 1)[0]
        status, body = "200 OK", b"{}"
        if path.endswith("/exchangeInfo"):
            body = self.exchange_info
        elif path.endswith("/depth"):
            body = self.snapshot
            self.snapshot_served.set()
        elif path.endswith("/time"):
            body = json.dumps({"serverTime": int(time.time() * 1000)}).encode()
        else:
            status, body = "404 Not Found", b'{"code":-1,"msg":"not here"}'
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def websocket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str,
                        headers: dict[str, str]) -> None:  # fmt: skip
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + GUID).digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip
        combined = target.startswith("/stream")
        if not combined:  # ccxt.pro: wait for its SUBSCRIBE and acknowledge it like Binance
            while True:
                opcode, data = await read_frame(reader)
                if opcode == 0x1:
                    req = json.loads(data)
                    writer.write(ws_frame(json.dumps({"result": None, "id": req.get("id")}).encode()))
                    break
        closed = asyncio.Event()
        pump = asyncio.create_task(answer_pings(reader, writer, closed))
        writer.transport.set_write_buffer_limits(high=1 << 20)
        try:
            frames = self.frames[combined]
            writer.write(frames[0])
            await writer.drain()
            await asyncio.wait_for(self.snapshot_served.wait(), 30)
            for i in range(1, len(frames), 128):
                writer.write(b"".join(frames[i : i + 128]))
                await writer.drain()
            # Let the client drain what is still in flight before timing latency: a paced frame
            # queued behind flood frames would measure the backlog, not the pipeline.
            await asyncio.sleep(self.pause_s)
            loop = asyncio.get_running_loop()
            next_at = loop.time()
            for head, tail in self.paced_parts[combined]:
                next_at += 1 / self.rate
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                payload = head + str(time.monotonic_ns() // 1000).encode() + tail
                writer.write(ws_frame(payload))
                await writer.drain()
            await closed.wait()
        finally:
            pump.cancel()


async def answer_pings(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closed: asyncio.Event
) -> None:
    """Answer the client's pings and its close frame (the server side of a websocket our streams
    need); `closed` is set when the client is gone."""
    try:
        while True:
            opcode, data = await read_frame(reader)
            if opcode == 0x9:
                writer.write(ws_frame(data, 0xA))
            elif opcode == 0x8:
                writer.write(ws_frame(data[:2], 0x8))
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        closed.set()


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--flood", type=int, required=True)
    ap.add_argument("--paced", type=int, required=True)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pause", type=float, default=3.0, help="seconds between flood and paced phases")
    a = ap.parse_args(argv)
    server = BenchServer(a.flood, a.paced, a.rate, a.seed, a.pause)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", a.port)
    ids = server.update_ids
    # The consumers need only these marks: last id of the flood, last id of the stream.
    every_1000 = " ".join(str(i) for i in ids[1 : a.flood : 1000])
    print(f"ready {a.port} {ids[a.flood]} {ids[-1]} {every_1000}", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
