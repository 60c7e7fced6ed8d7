"""Fan-out of market-data frames to websocket clients, by stream name.

Why: every producer (generator, capture replay, kline replay, the trading module's fills) calls
`Hub.publish(stream, payload)` and never sees a socket. Each client has its own bounded FIFO
and one writer task, so frames reach one client in exactly the order they were published
(a depth diff published before a kline close is received before it), a slow client never
blocks the others, and faults (stall, drop, malformed frames, serverShutdown) act in one place.

What it refuses to do: reorder, coalesce or silently drop frames. A client whose queue
overflows is disconnected (as Binance does with slow consumers), never fed a stream with holes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

_ids = itertools.count(1)


class StampedFrame(str):
    """A frame whose write to its socket is timed (`Hub.publish(..., stamp=key)`): the writer notes
    in `Hub.sent_at[key]` the CLOCK_MONOTONIC ns just before it writes the frame and just after the
    write returned with nothing left in the transport's buffer (else None): over loopback TCP the
    frame's bytes are then on the client's socket (for `python -m bench.tick_to_order`: a closing
    kline frame's arrival at the bot). A plain frame costs the writer one type check."""

    key: str


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


class Client:
    """One websocket connection: its subscriptions, its queue, its writer task."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, *, combined: bool, queue_size: int
    ) -> None:
        self.id = next(_ids)
        self.ws = ws
        self.request = request
        self.combined = combined
        self.streams: list[str] = []  # subscription order, for LIST_SUBSCRIPTIONS
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.sent = 0
        self.overflowed = False
        self.closing = False
        self.writer: asyncio.Task[None] | None = None

    def frame(self, stream: str, raw: str) -> str:
        return f'{{"stream":"{stream}","data":{raw}}}' if self.combined else raw

    def offer(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed = True
            return False
        return True


class Hub:
    def __init__(self, *, queue_size: int, stalled_until: Callable[[], float]) -> None:
        self.queue_size = queue_size
        self.clients: dict[int, Client] = {}
        self.by_stream: dict[str, set[Client]] = {}
        self._stalled_until = stalled_until
        self.on_subscribe: list[Callable[[str], None]] = []
        self.published = 0
        self.slow_disconnects = 0
        # key -> CLOCK_MONOTONIC ns around the first write of a `StampedFrame` to a socket.
        self.sent_at: dict[str, tuple[int, int | None]] = {}

    # -- membership --------------------------------------------------------------------------
    def add(self, client: Client) -> None:
        self.clients[client.id] = client
        client.writer = asyncio.create_task(self._write(client), name=f"sim-ws-writer-{client.id}")

    async def remove(self, client: Client) -> None:
        self.clients.pop(client.id, None)
        for s in client.streams:
            self.by_stream.get(s, set()).discard(client)
        if client.writer is not None:
            client.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await client.writer

    def subscribe(self, client: Client, streams: Iterable[str]) -> None:
        for s in streams:
            if s not in client.streams:
                client.streams.append(s)
                self.by_stream.setdefault(s, set()).add(client)
            for hook in self.on_subscribe:
                hook(s)

    def unsubscribe(self, client: Client, streams: Iterable[str]) -> None:
        for s in streams:
            if s in client.streams:
                client.streams.remove(s)
                self.by_stream.get(s, set()).discard(client)

    def has_subscribers(self, stream: str) -> bool:
        return bool(self.by_stream.get(stream))

    # -- sending -----------------------------------------------------------------------------
    def publish(self, stream: str, payload: Any, *, stamp: str | None = None) -> int:
        """Queue `payload` for every subscriber of `stream`; returns how many got it. With `stamp`,
        the first subscriber's write of it is timed into `sent_at[stamp]` (`StampedFrame`)."""
        subs = self.by_stream.get(stream)
        if not subs:
            return 0
        raw = dumps(payload)
        n = 0
        for c in list(subs):
            text = c.frame(stream, raw)
            if stamp is not None:
                text = StampedFrame(text)
                text.key = stamp
            if c.offer(text):
                n += 1
            else:
                self._evict(c)
        self.published += 1
        return n

    def send_all(self, text_for: Callable[[Client], str | None]) -> int:
        """Queue one frame per client (malformed-frame faults, serverShutdown)."""
        n = 0
        for c in list(self.clients.values()):
            text = text_for(c)
            if text is not None and c.offer(text):
                n += 1
        return n

    def backlog(self) -> int:
        return max((c.queue.qsize() for c in self.clients.values()), default=0)

    def _evict(self, client: Client) -> None:
        if client.closing:
            return
        client.closing = True
        self.slow_disconnects += 1
        # A close handshake would queue behind the very backlog that got it evicted: cut it.
        transport = client.request.transport
        if transport is not None:
            transport.abort()

    async def _write(self, client: Client) -> None:
        try:
            while True:
                text = await client.queue.get()
                # Stall fault: the connection stays open and silent; frames wait, then flow.
                # A deadline that can be extended while we wait, so poll it rather than an Event.
                while (delay := self._stalled_until() - time.monotonic()) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(min(delay, 0.5))
                if client.ws.closed:
                    return
                if type(text) is StampedFrame:
                    await self._timed_send(client, text)
                else:
                    await client.ws.send_str(text)
                client.sent += 1
        except (ConnectionResetError, RuntimeError):
            return  # the peer went away; the reader side notices and cleans up

    async def _timed_send(self, client: Client, frame: StampedFrame) -> None:
        before = time.monotonic_ns()
        await client.ws.send_str(frame)
        after = time.monotonic_ns()
        transport = client.request.transport
        on_socket = transport is not None and not transport.get_write_buffer_size()
        self.sent_at.setdefault(frame.key, (before, after if on_socket else None))

    # -- faults ------------------------------------------------------------------------------
    def drop_all(self) -> int:
        """Cut every connection without a close handshake, like a network failure."""
        n = 0
        for c in list(self.clients.values()):
            transport = c.request.transport
            if transport is not None:
                transport.abort()
                n += 1
        return n

    async def close_all(self, code: int = 1001, message: bytes = b"server shutdown") -> int:
        """Close every connection with a close frame, all at once; a peer that does not answer
        the handshake within 2 s is cut, so shutting down never waits on a stuck client."""
        clients = list(self.clients.values())

        async def close(c: Client) -> None:
            c.closing = True
            try:
                async with asyncio.timeout(2.0):
                    await c.ws.close(code=code, message=message)
            except Exception:
                transport = c.request.transport
                if transport is not None:
                    transport.abort()

        await asyncio.gather(*(close(c) for c in clients))
        return len(clients)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "combined": c.combined,
                "streams": list(c.streams),
                "sent": c.sent,
                "queued": c.queue.qsize(),
            }
            for c in self.clients.values()
        ]
