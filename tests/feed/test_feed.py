"""The shared feed loop over real sockets: reconnects with backoff, survives malformed frames, stale
streams, serverShutdown and its own planned reconnect, and reports each (re)connect."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from tests.conftest import free_port
from tests.feed.wsserver import ScriptedServer, wait_until
from tradefleet.adapters import feed as feed_mod
from tradefleet.adapters.binance import BinanceSpot
from tradefleet.adapters.feed import Feed, backoff_delay
from tradefleet.domain.market import DepthDiff, MarketEvent, StreamStatus
from tradefleet.metrics import BotMetrics


def depth_frame(u: int) -> str:
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": u, "u": u, "b": [["100.00", "1.0"]], "a": []}
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": data})


class Recorder:
    def __init__(self) -> None:
        self.events: list[MarketEvent] = []

    def __call__(self, event: MarketEvent) -> None:
        self.events.append(event)

    def statuses(self) -> list[tuple[str, str]]:
        return [(e.kind, e.detail) for e in self.events if isinstance(e, StreamStatus)]

    def diffs(self) -> list[int]:
        return [e.final_update_id for e in self.events if isinstance(e, DepthDiff)]


@contextlib.asynccontextmanager
async def running(feed: Feed) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(feed.run())
    try:
        yield task
    finally:
        await feed.stop()
        await asyncio.wait_for(task, 20)


def make_feed(url: str, rec: Recorder, metrics: BotMetrics, **kw: float) -> Feed:
    kw.setdefault("stale_after_s", 30.0)
    kw.setdefault("reconnect_max_s", 0.2)
    kw.setdefault("reconnect_base_s", 0.05)
    return Feed(BinanceSpot(), url, rec, metrics, **kw)  # type: ignore[arg-type]


def reconnects(metrics: BotMetrics, reason: str) -> float:
    return metrics.registry.get_sample_value("tradefleet_reconnects_total", {"reason": reason}) or 0.0


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    lows = [backoff_delay(a, base_s=0.5, cap_s=30, rand=lambda: 0.0) for a in range(10)]
    highs = [backoff_delay(a, base_s=0.5, cap_s=30, rand=lambda: 1.0) for a in range(10)]
    assert lows[:4] == [0.25, 0.5, 1.0, 2.0]
    assert highs[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(highs) == 30 and min(lows[6:]) == 15  # capped, but never instant
    assert backoff_delay(10_000, base_s=0.5, cap_s=30, rand=lambda: 0.5) <= 30


async def test_reconnects_after_dropped_connection_and_reports_each_connect(metrics: BotMetrics) -> None:
    rec = Recorder()
    async with ScriptedServer() as server:
        feed = make_feed(server.url, rec, metrics)
        async with running(feed):
            ws = await server.next_connection()
            await ws.send(depth_frame(1))
            await wait_until(lambda: rec.diffs() == [1], what="first diff")
            assert feed.connected and metrics.registry.get_sample_value("tradefleet_stream_connected") == 1
            ws.transport.abort()  # no close handshake, like a dead network path
            ws2 = await server.next_connection()
            await ws2.send(depth_frame(2))
            await wait_until(lambda: rec.diffs() == [1, 2], what="diff after reconnect")
    kinds = [k for k, _ in rec.statuses()]
    assert kinds[:3] == ["connected", "disconnected", "connected"]
    assert reconnects(metrics, "closed") == 1
    assert metrics.registry.get_sample_value("tradefleet_messages_total", {"stream": "depth"}) == 2


async def test_malformed_frames_are_counted_and_skipped_without_dropping_connection(
    metrics: BotMetrics,
) -> None:
    rec = Recorder()
    async with ScriptedServer() as server:
        feed = make_feed(server.url, rec, metrics)
        async with running(feed):
            ws = await server.next_connection()
            good = depth_frame(7)
            for bad in (
                "{not json",
                good[: len(good) // 2],
                '{"stream":"btcusdt@depth@100ms","data":{"U":"x"}}',
            ):
                await ws.send(bad)
            await ws.send(good)
            await wait_until(lambda: rec.diffs() == [7], what="the good frame after three bad ones")
            assert feed.connections == 1 and feed.connected
    assert metrics.registry.get_sample_value("tradefleet_malformed_frames_total") == 3
    assert metrics.registry.get_sample_value("tradefleet_messages_total", {"stream": "invalid"}) == 3


async def test_stale_stream_is_declared_dead_and_reconnected(metrics: BotMetrics) -> None:
    rec = Recorder()
    async with ScriptedServer() as server:
        feed = make_feed(server.url, rec, metrics, stale_after_s=0.3)
        async with running(feed):
            await server.next_connection()  # accepts, then stays silent (pings still answered)
            ws2 = await server.next_connection()
            await ws2.send(depth_frame(3))
            await wait_until(lambda: rec.diffs() == [3], what="diff on the new connection")
    assert ("disconnected", "stale") in rec.statuses()
    assert metrics.registry.get_sample_value("tradefleet_stale_stream_total") >= 1
    assert reconnects(metrics, "stale") >= 1


async def test_server_shutdown_is_forwarded_and_reconnects_at_once(metrics: BotMetrics) -> None:
    rec = Recorder()
    async with ScriptedServer() as server:
        # A long backoff would make this test hang: serverShutdown must not wait for it.
        feed = make_feed(server.url, rec, metrics, reconnect_base_s=60, reconnect_max_s=60)
        async with running(feed):
            ws = await server.next_connection()
            await ws.send('{"e":"serverShutdown","E":1770123456789}')
            ws2 = await server.next_connection()
            await ws2.send(depth_frame(9))
            await wait_until(lambda: rec.diffs() == [9], what="diff after shutdown reconnect")
    kinds = [k for k, _ in rec.statuses()]
    assert kinds[:4] == ["connected", "server_shutdown", "disconnected", "connected"]
    assert reconnects(metrics, "server_shutdown") == 1


async def test_reconnects_on_its_own_terms_before_max_connection_age(metrics: BotMetrics) -> None:
    rec = Recorder()
    async with ScriptedServer() as server:
        feed = make_feed(server.url, rec, metrics, max_connection_age_s=0.3, reconnect_base_s=60)

        async def keep_sending(ws) -> None:
            with contextlib.suppress(Exception):
                for u in range(1, 10_000):
                    await ws.send(depth_frame(u))
                    await asyncio.sleep(0.02)

        async with running(feed):
            ws = await server.next_connection()
            sender = asyncio.create_task(keep_sending(ws))
            await server.next_connection()
            sender.cancel()
    assert reconnects(metrics, "max_age") >= 1
    assert ("disconnected", "max_age") in rec.statuses()


async def test_retries_refused_connections_with_backoff_until_exchange_is_back(metrics: BotMetrics) -> None:
    rec = Recorder()
    port = free_port()
    feed = make_feed(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@depth@100ms", rec, metrics)
    async with running(feed):
        await wait_until(lambda: reconnects(metrics, "connect_failed") >= 2, what="two failed attempts")
        assert not feed.connected and rec.statuses() == []  # never connected: nothing to report
        async with ScriptedServer(port) as server:
            ws = await server.next_connection()
            await ws.send(depth_frame(5))
            await wait_until(lambda: rec.diffs() == [5], what="diff once the exchange is back")
    assert rec.statuses()[0] == ("connected", "")


async def test_consumer_exception_does_not_cost_the_connection(metrics: BotMetrics) -> None:
    seen: list[int] = []

    def flaky(event: MarketEvent) -> None:
        if isinstance(event, DepthDiff):
            seen.append(event.final_update_id)
            if event.final_update_id == 1:
                raise RuntimeError("consumer bug")

    async with ScriptedServer() as server:
        feed = Feed(BinanceSpot(), server.url, flaky, metrics, stale_after_s=30)
        async with running(feed):
            ws = await server.next_connection()
            await ws.send(depth_frame(1))
            await ws.send(depth_frame(2))
            await wait_until(lambda: seen == [1, 2], what="both diffs")
            assert feed.connections == 1


@pytest.mark.parametrize("url", ["not a url", "http://127.0.0.1:1/x"])
async def test_invalid_stream_url_fails_loudly(url: str, metrics: BotMetrics) -> None:
    from tradefleet.errors import ConfigError

    feed = make_feed(url, Recorder(), metrics)
    with pytest.raises(ConfigError):
        await asyncio.wait_for(feed.run(), 20)


async def test_stop_during_backoff_returns_promptly_and_leaves_gauge_down(metrics: BotMetrics) -> None:
    feed = make_feed(f"ws://127.0.0.1:{free_port()}/stream?streams=x@depth", Recorder(), metrics,
                     reconnect_base_s=60, reconnect_max_s=60)  # fmt: skip
    task = asyncio.create_task(feed.run())
    await wait_until(lambda: reconnects(metrics, "connect_failed") >= 1, what="first failed attempt")
    await feed.stop()  # the loop is now sleeping a 30-60 s backoff: stop must cut it short
    await asyncio.wait_for(task, 20)
    assert not feed.connected
    assert (metrics.registry.get_sample_value("tradefleet_stream_connected") or 0) == 0


def _raw_text_frame(payload: bytes) -> bytes:
    """A server-to-client websocket text frame (unmasked), to put many frames on the wire at once."""
    n = len(payload)
    header = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
    return header + payload


@pytest.mark.parametrize("busy", [False, True], ids=["order_path_idle", "order_path_busy"])
async def test_while_the_order_path_is_busy_other_tasks_run_between_frames_that_arrived_together(
    metrics: BotMetrics, busy: bool
) -> None:
    """A burst already in the client's buffer is handled in one go, without a yield; while
    `yield_while` says the order path has work, the feed yields after every frame, so a task waiting
    on its own reply (the lease check, the risk reserve) runs between frames, not after the burst."""
    seen: list[int] = []
    probe: list[int] = []

    def consumer(event: MarketEvent) -> None:
        if isinstance(event, DepthDiff):
            seen.append(event.final_update_id)
            if event.final_update_id == 1:  # a signal: schedule "the order path's next step"
                asyncio.get_running_loop().call_soon(lambda: probe.append(len(seen)))

    async with ScriptedServer() as server:
        feed = Feed(BinanceSpot(), server.url, consumer, metrics, stale_after_s=30, yield_while=lambda: busy)
        async with running(feed):
            ws = await server.next_connection()
            ws.transport.write(b"".join(_raw_text_frame(depth_frame(u).encode()) for u in range(1, 51)))
            await wait_until(lambda: len(seen) == 50, what="the burst")
    assert len(probe) == 1
    if busy:
        assert probe == [1]  # ran right after the frame that scheduled it
    else:
        assert probe[0] > 1  # waited for (at least part of) the burst


async def test_after_a_signals_frame_the_feed_holds_the_rest_of_the_burst_until_the_order_path_is_calm(
    metrics: BotMetrics,
) -> None:
    """With `calm` (the order manager's "no request is about to leave"), the frame that made a signal
    is the last one handled until calm returns: the order path's steps run with no frame between them,
    and the burst is handled after, in order, none lost."""
    seen: list[int] = []
    steps: list[tuple[str, int]] = []
    calm = asyncio.Event()
    paths: list[asyncio.Task[None]] = []

    async def order_path() -> None:
        for step in ("reserve", "commit", "confirm"):  # each one loop turn or more
            await asyncio.sleep(0)
            steps.append((step, len(seen)))
        calm.set()  # the request has left

    def consumer(event: MarketEvent) -> None:
        if isinstance(event, DepthDiff):
            seen.append(event.final_update_id)
            if event.final_update_id == 1:  # a signal: handed to the order path's own task
                paths.append(asyncio.get_running_loop().create_task(order_path()))

    async def wait_calm() -> None:
        await calm.wait()

    async with ScriptedServer() as server:
        feed = Feed(BinanceSpot(), server.url, consumer, metrics, stale_after_s=30,
                    yield_while=lambda: bool(paths) and not calm.is_set(), calm=wait_calm)  # fmt: skip
        async with running(feed):
            ws = await server.next_connection()
            ws.transport.write(b"".join(_raw_text_frame(depth_frame(u).encode()) for u in range(1, 51)))
            await wait_until(lambda: len(seen) == 50, what="the burst")
            await paths[0]
    assert steps == [("reserve", 1), ("commit", 1), ("confirm", 1)]  # no frame between the steps
    assert seen == list(range(1, 51))


async def test_an_order_path_that_never_calms_holds_the_feed_only_briefly(
    metrics: BotMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stuck order path (a store outage, retries) must not stop the market data: after CALM_MAX_S
    the feed goes on, one frame per loop turn."""
    monkeypatch.setattr(feed_mod, "CALM_MAX_S", 0.0)
    seen: list[int] = []

    def consumer(event: MarketEvent) -> None:
        if isinstance(event, DepthDiff):
            seen.append(event.final_update_id)

    async def never() -> None:
        await asyncio.Event().wait()

    async with ScriptedServer() as server:
        feed = Feed(BinanceSpot(), server.url, consumer, metrics, stale_after_s=30,
                    yield_while=lambda: True, calm=never)  # fmt: skip
        async with running(feed):
            ws = await server.next_connection()
            ws.transport.write(b"".join(_raw_text_frame(depth_frame(u).encode()) for u in range(1, 21)))
            await wait_until(
                lambda: len(seen) == 20, what="the burst, despite an order path that never calms"
            )
    assert seen == list(range(1, 21))
