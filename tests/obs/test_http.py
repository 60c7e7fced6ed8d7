"""BotHttpServer on a real socket: health semantics, JSON shapes, and a stalled event loop."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tests.conftest import until
from tradefleet.metrics import BotMetrics
from tradefleet.web.http import BotHttpServer
from tradefleet.web.process_metrics import LoopMonitor


class State:
    """Stands in for the bot's own state (what its readiness/status callables read)."""

    def __init__(self) -> None:
        self.checks: dict[str, tuple[bool, str]] = {
            "stream": (True, "connected"),
            "book": (True, "in sync"),
            "store": (True, "reachable"),
        }
        self.status: dict[str, Any] = {
            "bot": "btc-usdt",
            "position": {"qty": Decimal("0.00150000"), "cost_quote": Decimal("100.1")},
        }


@pytest.fixture
async def served(metrics: BotMetrics) -> AsyncIterator[tuple[BotHttpServer, State]]:
    state = State()
    server = BotHttpServer(
        host="127.0.0.1",
        port=0,
        registry=metrics.registry,
        readiness=lambda: state.checks,
        status=lambda: state.status,
    )
    await server.start()
    yield server, state
    await server.stop()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def test_binds_a_free_port_when_asked_for_port_zero(served: tuple[BotHttpServer, State]) -> None:
    server, _ = served
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


async def test_readyz_names_the_failed_check_then_recovers(
    served: tuple[BotHttpServer, State], http: aiohttp.ClientSession
) -> None:
    server, state = served
    status, body = await get(http, f"{server.url}/readyz")
    assert (status, body["ok"], body["failed"]) == (200, True, [])

    state.checks["book"] = (False, "sequence gap: resyncing")
    status, body = await get(http, f"{server.url}/readyz")
    assert status == 503
    assert body["failed"] == ["book"]
    assert body["checks"]["book"] == {"ok": False, "detail": "sequence gap: resyncing"}
    assert body["checks"]["stream"]["ok"] is True

    state.checks["book"] = (True, "in sync")
    status, body = await get(http, f"{server.url}/readyz")
    assert (status, body["failed"]) == (200, [])


async def test_readyz_is_unready_when_the_check_itself_raises(
    metrics: BotMetrics, http: aiohttp.ClientSession
) -> None:
    def broken() -> dict[str, tuple[bool, str]]:
        raise RuntimeError("store handle closed")

    server = BotHttpServer(host="127.0.0.1", port=0, registry=metrics.registry, readiness=broken, status=dict)
    await server.start()
    try:
        status, body = await get(http, f"{server.url}/readyz")
    finally:
        await server.stop()
    assert status == 503
    assert body["failed"] == ["readiness"]
    assert "store handle closed" in body["checks"]["readiness"]["detail"]


async def test_status_renders_decimals_as_exact_strings(
    served: tuple[BotHttpServer, State], http: aiohttp.ClientSession
) -> None:
    server, _ = served
    status, body = await get(http, f"{server.url}/status")
    assert status == 200
    assert body["position"] == {"qty": "0.00150000", "cost_quote": "100.1"}


async def test_status_fails_loudly_when_it_cannot_be_rendered(
    served: tuple[BotHttpServer, State], http: aiohttp.ClientSession
) -> None:
    server, state = served
    state.status = {"bad": object()}
    status, body = await get(http, f"{server.url}/status")
    assert status == 500
    assert "not JSON serialisable" in body["error"]


async def test_metrics_serves_text_format_and_openmetrics_on_request(
    served: tuple[BotHttpServer, State], http: aiohttp.ClientSession, metrics: BotMetrics
) -> None:
    server, _ = served
    metrics.gaps.inc(3)
    async with http.get(f"{server.url}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    assert "tradefleet_sequence_gaps_total 3.0" in text
    accept = "application/openmetrics-text; version=1.0.0"
    async with http.get(f"{server.url}/metrics", headers={"Accept": accept}) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await r.text()).rstrip().endswith("# EOF")


async def test_unknown_paths_and_methods_are_refused_and_head_has_no_body(
    served: tuple[BotHttpServer, State], http: aiohttp.ClientSession
) -> None:
    server, _ = served
    status, body = await get(http, f"{server.url}/nope")
    assert status == 404 and "/livez /readyz /metrics /status" in body
    async with http.post(f"{server.url}/readyz", data=b"x") as r:
        assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"
    async with http.head(f"{server.url}/readyz") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
        assert await r.read() == b""
    status, body = await get(http, f"{server.url}/")  # the index names the endpoints
    assert status == 200 and body == "/livez /readyz /metrics /status\n"


async def test_metrics_are_gzipped_when_asked_and_many_requests_share_one_connection(
    served: tuple[BotHttpServer, State], http: aiohttp.ClientSession
) -> None:
    server, _ = served
    async with http.get(f"{server.url}/metrics", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.status == 200 and r.headers["Content-Encoding"] == "gzip"
        assert "tradefleet_sequence_gaps_total" in await r.text()  # aiohttp inflates it
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as one:
        for _ in range(20):  # keep-alive: twenty answers on one connection
            assert (await get(one, f"{server.url}/livez"))[0] == 200


async def test_stop_releases_the_port(metrics: BotMetrics, http: aiohttp.ClientSession) -> None:
    server = BotHttpServer(host="127.0.0.1", port=0, registry=metrics.registry, readiness=dict, status=dict)
    await server.start()
    port = server.port
    await server.stop()
    again = BotHttpServer(host="127.0.0.1", port=port, registry=metrics.registry, readiness=dict, status=dict)
    await again.start()
    try:
        assert (await get(http, f"{again.url}/livez"))[0] == 200
    finally:
        await again.stop()


async def test_livez_fails_after_the_loop_was_blocked_then_recovers(
    metrics: BotMetrics, http: aiohttp.ClientSession
) -> None:
    # A long interval keeps the late tick's verdict in place while the probe is served.
    monitor = LoopMonitor(metrics, interval=2.0, threshold=0.3)
    server = BotHttpServer(
        host="127.0.0.1", port=0, registry=metrics.registry, readiness=dict, status=dict,
        liveness=monitor.liveness,
    )  # fmt: skip
    await server.start()
    monitor.start()
    try:
        await until(lambda: monitor.ticks >= 1)
        assert (await get(http, f"{server.url}/livez"))[0] == 200
        ticks = monitor.ticks
        time.sleep(2.5)  # synchronous work hogging the loop: the monitor's timer fires ~0.5 s+ late
        await until(lambda: monitor.ticks > ticks)
        status, body = await get(http, f"{server.url}/livez")
        assert status == 503, body
        assert body["failed"] == ["event_loop"]
        assert "late" in body["checks"]["event_loop"]["detail"]
        assert metrics.registry.get_sample_value("tradefleet_event_loop_lag_seconds")  # > 0
        assert (metrics.registry.get_sample_value("tradefleet_event_loop_delay_seconds_count") or 0) >= 2
        await until(lambda: monitor.last_lag < 0.3)
        assert (await get(http, f"{server.url}/livez"))[0] == 200
    finally:
        await monitor.stop()
        await server.stop()


async def test_livez_fails_when_the_monitor_stops_ticking(
    metrics: BotMetrics, http: aiohttp.ClientSession
) -> None:
    now = [1000.0]
    monitor = LoopMonitor(metrics, interval=0.01, threshold=1.0, clock=lambda: now[0])
    server = BotHttpServer(
        host="127.0.0.1", port=0, registry=metrics.registry, readiness=dict, status=dict,
        liveness=monitor.liveness,
    )  # fmt: skip
    await server.start()
    monitor.start()
    try:
        await until(lambda: monitor.ticks >= 1)
        await monitor.stop()  # the task is gone: from now on nothing ticks
        assert (await get(http, f"{server.url}/livez"))[0] == 200
        now[0] += 1.5
        status, body = await get(http, f"{server.url}/livez")
        assert status == 503
        assert "no tick for 1.500s" in body["checks"]["event_loop"]["detail"]
    finally:
        await server.stop()


async def raw(server: BotHttpServer, data: bytes) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_requests_it_cannot_read_are_answered_and_the_connection_closed(
    served: tuple[BotHttpServer, State],
) -> None:
    server, _ = served
    assert (await raw(server, b"hello\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    assert (await raw(server, b"GET /livez HTTP/2.0\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    assert (await raw(server, b"GET /livez HTTP/1.1\r\nno colon\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    huge = b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    assert (await raw(server, huge)).startswith(b"HTTP/1.1 431 ")
    big_body = b"POST /livez HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
    assert (await raw(server, big_body)).startswith(b"HTTP/1.1 413 ")
    chunked = b"POST /livez HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    answer = await raw(server, chunked)  # answered, not read: the connection closes after it
    assert answer.startswith(b"HTTP/1.1 405 ") and answer.count(b"HTTP/1.1") == 1
    assert b"Connection: close" in answer


async def test_keep_alive_and_http_1_0_and_a_body_that_is_read_and_dropped(
    served: tuple[BotHttpServer, State],
) -> None:
    server, _ = served
    # HTTP/1.0 without keep-alive: one answer, then the server closes (raw() returns).
    one = await raw(server, b"GET /livez?verbose=1 HTTP/1.0\r\n\r\n")
    assert one.startswith(b"HTTP/1.1 200 ") and one.endswith(b'"checks":{}}')  # the query is ignored
    # Pipelined on one connection: a POST with a body (405, body dropped), a HEAD, then a GET that closes.
    answers = await raw(
        server,
        b"POST /readyz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        b"HEAD /readyz HTTP/1.1\r\n\r\n"
        b"GET /%6Civez HTTP/1.1\r\nConnection: close\r\n\r\n",  # percent-decoded: /livez
    )
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers) == [b"405", b"200", b"200"], answers


async def test_stop_closes_idle_connections_and_finishes_an_answer(metrics: BotMetrics) -> None:
    server = BotHttpServer(host="127.0.0.1", port=0, registry=metrics.registry, readiness=dict, status=dict)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /livez HTTP/1.1\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")  # keep-alive: the connection is now idle
    await asyncio.wait_for(server.stop(), 10)  # does not wait out the 75 s idle timeout
    rest = await asyncio.wait_for(reader.read(), 10)
    assert rest.endswith(b"}")  # the body, then EOF: the server closed the idle connection
    writer.close()
