"""When order requests reach the simulator (`SimOptions.record_arrivals`): the moment a request's
bytes came out of its socket into this process, for `python -m bench.tick_to_order`."""

from __future__ import annotations

import asyncio
import time


class ArrivalStamps(asyncio.Protocol):
    """aiohttp's connection handler behind a protocol that notes when bytes last reached this process
    from the connection's socket (CLOCK_MONOTONIC ns, `last_ns`), and passes every callback on
    unchanged. With `SimOptions.record_arrivals` the plain-TCP listener uses it, so an order's arrival
    is the moment its request reached the simulator, not the moment aiohttp's parser, router and
    middlewares (~0.25 ms of this process's Python, cold) handed it to `rest.binance_edge`."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner
        self.last_ns: int | None = None

    @staticmethod
    def arrived_ns(transport: asyncio.BaseTransport | None) -> int | None:
        """When bytes last came in on `transport`, if its protocol is one of these (else None)."""
        proto = transport.get_protocol() if transport is not None else None
        return proto.last_ns if isinstance(proto, ArrivalStamps) else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.last_ns = time.monotonic_ns()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
