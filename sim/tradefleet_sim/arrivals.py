"""When order requests reach the simulator (`SimOptions.record_arrivals`): the moment a request's
bytes came out of its socket into this process, for `python -m bench.tick_to_order`."""

from __future__ import annotations

import asyncio
import time


class ArrivalStamps(asyncio.Protocol):
    """aiohttp's connection handler behind a protocol that notes, per connection, when bytes last
    reached this process from its socket (CLOCK_MONOTONIC ns, `arrived_ns`), and passes every
    callback on unchanged. With `SimOptions.record_arrivals` the plain-TCP listener uses it, so an
    order's arrival is the moment its request reached the simulator, not the moment aiohttp's parser,
    router and middlewares (~0.4 ms of this process's Python, cold) handed it to `rest.binance_edge`."""

    stamps: dict[object, int] = {}
    """transport -> the last `data_received`'s reading; a connection's entry goes with it."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None

    @classmethod
    def arrived_ns(cls, transport: object) -> int | None:
        return cls.stamps.get(transport)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.stamps[self.transport] = time.monotonic_ns()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stamps.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
