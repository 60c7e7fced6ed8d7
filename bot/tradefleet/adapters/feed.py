"""The one connect/reconnect loop that owns the market-data websocket, for every venue.

Why it exists: a bot must keep receiving through drops, stalls, exchange restarts and Binance's
24-hour connection limit, and it must say so each time, because after any reconnect the order book
has to be rebuilt (it is never trusted across a gap in the stream). Venue adapters only build the
URL and parse frames; this loop does everything else:

- exponential backoff with jitter between attempts (reset once a connection delivered a frame);
- a watchdog that declares the stream stale after `stale_after_s` without a frame, and one that
  reconnects on our terms before `max_connection_age_s` (Binance cuts connections at 24 h);
- `serverShutdown` from the exchange: forward it, then reconnect at once;
- malformed frames are counted and skipped; the connection stays up;
- `StreamStatus("connected")` after each (re)connect, `StreamStatus("disconnected", reason)` after
  each loss, so the engine rebuilds the book.

The websocket client is aiohttp's, not `websockets`' (the design card allows "a faster client, if
the benchmark says so"): `python -m bench.ingest` receives the same flood with both bare clients in
the same run, and aiohttp's (C frame reader) took 1.3 CPU µs per frame against 4.8 (688k vs 206k
msg/s). Switching took feed+book from 29.6 to 23.6 CPU µs per ~40-level diff (33.5k -> 42.2k
msg/s; ccxt.pro 13.8k in that run). Backoff, watchdogs, shutdown and status events are the same
loop as before; a stall is cut by shutting the socket down (`get_extra_info("socket")`).

What it refuses to do: interpret events, queue them, or await the consumer. `on_event` is called
synchronously, in frame order, and must not block. It never logs frame contents beyond a short
prefix of a malformed frame (market data carries no secrets, but a log is no place for payloads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable

import aiohttp
from yarl import URL

from tradefleet.adapters.http_session import client_session
from tradefleet.domain.market import BookTicker, DepthDiff, KlineEvent, MarketEvent, StreamStatus, Trade
from tradefleet.domain.native_book import ParsedDiff
from tradefleet.errors import ConfigError, MalformedFrame
from tradefleet.logs import log_event
from tradefleet.metrics import BotMetrics
from tradefleet.ports import VenueAdapter
from tradefleet.tasks import stop_task

log = logging.getLogger("tradefleet.feed")

_WebSocket = aiohttp.ClientWebSocketResponse[bool]

CALM_MAX_S = 0.005
"""The longest the feed holds back the frames after a signal's for its order request to leave (the
path takes ~1-3 ms); after that, one frame per loop turn until the order path is done."""
SAMPLE_EVERY = 16  # latency histograms see one frame in 16 (a power of two: the test is a bit mask)

_STREAM_LABELS: dict[type, str] = {
    DepthDiff: "depth",
    BookTicker: "book_ticker",
    Trade: "trade",
    KlineEvent: "kline",
    StreamStatus: "status",
}
if ParsedDiff is not None:
    _STREAM_LABELS[ParsedDiff] = "depth"  # the native parser's depth diff


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """Equal-jitter exponential backoff: half the window fixed, half random, so a fleet of bots that
    lost the exchange together does not reconnect together, and no retry comes back instantly."""
    window: float = min(cap_s, base_s * 2.0 ** min(attempt, 30))
    return window / 2 + rand() * window / 2


class Feed:
    """Receive frames from `url`, parse them with `adapter`, hand every event to `on_event`."""

    def __init__(
        self,
        adapter: VenueAdapter,
        url: str,
        on_event: Callable[[MarketEvent], None],
        metrics: BotMetrics,
        *,
        stale_after_s: float = 10.0,
        reconnect_max_s: float = 30.0,
        max_connection_age_s: float = 23.5 * 3600,
        reconnect_base_s: float = 0.5,
        open_timeout_s: float = 10.0,
        rand: Callable[[], float] = random.random,
        yield_while: Callable[[], bool] | None = None,
        calm: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.adapter = adapter
        self.url = url
        self.on_event = on_event
        self.metrics = metrics
        self.stale_after_s = stale_after_s
        self.reconnect_max_s = reconnect_max_s
        self.max_connection_age_s = max_connection_age_s
        self.reconnect_base_s = reconnect_base_s
        self.open_timeout_s = open_timeout_s
        self._rand = rand
        # While this says True (a signal is on its way to becoming an order), the receive loop yields
        # to the event loop after every frame. Frames already buffered are otherwise handled in one
        # go, without a yield: a burst after a candle close kept the order path's Redis replies
        # waiting behind it (the lease check took ~2 ms instead of ~0.4 in bench.tick_to_order).
        self.yield_while = yield_while
        # And with `calm` (the order manager's "no request is about to leave"), the frame that made a
        # signal is the last one handled until the request has left (at most CALM_MAX_S): the rest of
        # the burst after a close waits in the socket's buffer instead of running between the order
        # path's steps (its Redis replies, the commit's end), one frame per turn (~0.3-0.5 ms a
        # signal, `bench.tick_to_order`'s "to_send" and "risk" segments).
        self.calm = calm
        self._ws: _WebSocket | None = None
        self._connected = False
        self._stopping = asyncio.Event()
        self._close_reason: str | None = None
        self.connections = 0  # successful connects so far (tests and status use it)
        self.malformed_seen = 0
        # Pre-bound metric children: the per-frame path must not look labels up.
        self._parse_latency = metrics.latency.labels("parse")
        self._msg_counters = {t: metrics.messages.labels(label) for t, label in _STREAM_LABELS.items()}
        self._tallies: dict[type, int] = dict.fromkeys(_STREAM_LABELS, 0)
        self._frames = 0  # frames received on any connection; the watchdog watches it move
        self._invalid_counter = metrics.messages.labels("invalid")

    @property
    def connected(self) -> bool:
        return self._connected

    async def stop(self) -> None:
        """Stop receiving; `run()` returns after the socket is closed."""
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            self._close_reason = "stopped"
            with contextlib.suppress(Exception):
                await ws.close()

    async def run(self) -> None:
        url = self._checked_url()
        attempt = 0
        # One HTTP session for the feed's lifetime: the connection pool is per session, and a
        # session is cheap to keep but not to build per reconnect.
        async with client_session() as session:  # never via an env proxy
            while not self._stopping.is_set():
                reason, delivered = await self._one_connection(session, url)
                if self._stopping.is_set():
                    break
                self.metrics.reconnects.labels(reason).inc()
                if delivered:
                    attempt = 0
                if reason in ("server_shutdown", "max_age"):
                    delay = 0.0  # planned: the exchange asked us to move, or we chose to; go now
                else:
                    delay = backoff_delay(attempt, base_s=self.reconnect_base_s, cap_s=self.reconnect_max_s,
                                          rand=self._rand)  # fmt: skip
                    attempt += 1
                log_event(log, "feed_reconnecting", reason=reason, delay_s=round(delay, 3), attempt=attempt)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()

    def _checked_url(self) -> URL:
        try:
            url = URL(self.url)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"market stream URL is invalid: {e}") from e
        if url.scheme not in ("ws", "wss") or not url.host:
            raise ConfigError(f"market stream URL must be ws:// or wss:// with a host, got {self.url!r}")
        return url

    async def _one_connection(self, session: aiohttp.ClientSession, url: URL) -> tuple[str, bool]:
        """Connect, receive until the connection ends; return (reason, whether any frame arrived)."""
        self._close_reason = None
        delivered = False
        try:
            async with asyncio.timeout(self.open_timeout_s):
                ws = await session.ws_connect(
                    url,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                    heartbeat=20.0,  # ping every 20 s; no pong within 10 s closes the connection
                    autoping=True,  # Binance pings every 20 s and cuts clients that do not pong
                    compress=0,  # CPU over bandwidth: inflating every frame costs more than it saves
                    max_msg_size=2**22,
                    decode_text=False,  # bytes: msgspec decodes UTF-8 itself
                )
            async with ws:
                self._ws = ws
                if self._stopping.is_set():  # stop() came while we were still connecting
                    self._close_reason = "stopped"
                    return self._close_reason, False
                self._on_connected()
                # Up to 5% early, at random: a fleet started together must not reconnect together.
                max_age = self.max_connection_age_s * (1 - 0.05 * self._rand())
                watchdog = asyncio.create_task(self._watchdog(ws, time.monotonic(), max_age))
                try:
                    delivered = await self._receive(ws)
                finally:
                    self._flush_tallies()
                    await stop_task(watchdog)
        except aiohttp.InvalidURL as e:
            raise ConfigError(f"market stream URL is invalid: {e}") from e
        except (OSError, TimeoutError, aiohttp.ClientError) as e:
            if not self._connected:
                self._close_reason = "connect_failed"
            elif self._close_reason is None:
                self._close_reason = "error"
            log_event(log, "feed_connection_error", logging.WARNING, error=f"{type(e).__name__}: {e}")
        except Exception:  # a bug in our own code: log it, reconnect, keep the bot alive
            self._close_reason = self._close_reason or "error"
            log.exception("feed failed", extra={"event": "feed_error"})
        finally:
            self._ws = None
            if self._connected:
                self._connected = False
                self.metrics.connected.set(0)
                reason = self._close_reason or "closed"
                log_event(log, "feed_disconnected", logging.WARNING, reason=reason)
                self._emit(StreamStatus("disconnected", reason))
        return self._close_reason or "closed", delivered

    def _on_connected(self) -> None:
        self._connected = True
        self.connections += 1
        self.metrics.connected.set(1)
        log_event(log, "feed_connected", connections=self.connections)
        self._emit(StreamStatus("connected"))

    async def _receive(self, ws: _WebSocket) -> bool:
        # The per-frame path is the hot path of the whole bot: locals instead of attribute
        # lookups, message counts tallied locally and flushed to Prometheus by the watchdog tick,
        # and latency histograms fed one frame in SAMPLE_EVERY (a Prometheus observe costs about
        # a microsecond; a 1-in-16 sample keeps the distribution and drops the cost).
        parse = self.adapter.parse
        on_event = self.on_event
        tallies = self._tallies
        parse_latency = self._parse_latency.observe
        feed_lag = self.metrics.feed_lag.observe
        perf = time.perf_counter
        wall = time.time
        delivered = False
        mask = SAMPLE_EVERY - 1
        receive = ws.receive
        text, binary = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        urgent = self.yield_while
        calm = self.calm
        waited = False  # waited for calm once in this busy stretch: afterwards one frame per turn
        while True:
            msg = await receive()  # pings, pongs and the close handshake are answered inside
            if msg.type is not text and msg.type is not binary:
                if msg.type is aiohttp.WSMsgType.ERROR:
                    self._close_reason = self._close_reason or "error"
                    log_event(log, "feed_connection_error", logging.WARNING, error=repr(msg.data)[:200])
                return delivered  # CLOSE / CLOSING / CLOSED: the connection is over
            frame: bytes = msg.data
            self._frames += 1
            delivered = True
            sample = not (self._frames & mask)
            t0 = perf() if sample else 0.0
            try:
                event = parse(frame)
            except MalformedFrame as e:
                self._malformed(frame, e)
                continue
            if sample:
                parse_latency(perf() - t0)
            if event is None:
                continue
            tallies[type(event)] += 1
            if isinstance(event, StreamStatus):
                if event.kind == "server_shutdown":
                    self._close_reason = "server_shutdown"
                    log_event(log, "feed_server_shutdown", logging.WARNING)
                    self._emit(event)
                    await ws.close()
                    return delivered
            elif sample and not isinstance(event, BookTicker):
                lag = wall() - event.event_time / 1000
                feed_lag(lag if lag > 0 else 0.0)
            try:
                on_event(event)
            except Exception:  # a consumer bug must not cost us the connection
                log.exception("on_event failed", extra={"event": "feed_consumer_error"})
            if urgent is not None and urgent():
                if calm is not None and not waited:
                    waited = True
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(CALM_MAX_S):
                            await calm()
                else:
                    await asyncio.sleep(0)  # the order path first: one frame per loop turn meanwhile
            else:
                waited = False

    def _flush_tallies(self) -> None:
        for kind, n in self._tallies.items():
            if n:
                self._msg_counters[kind].inc(n)
                self._tallies[kind] = 0

    def _emit(self, event: MarketEvent, on_event: Callable[[MarketEvent], None] | None = None) -> None:
        try:
            (on_event or self.on_event)(event)
        except Exception:  # a consumer bug must not cost us the connection
            log.exception("on_event failed", extra={"event": "feed_consumer_error"})

    def _malformed(self, frame: bytes | str, error: MalformedFrame) -> None:
        self.malformed_seen += 1
        self.metrics.malformed.inc()
        self._invalid_counter.inc()
        n = self.malformed_seen
        if n <= 10 or n % 1000 == 0:  # enough to diagnose, never a log flood
            log_event(log, "feed_malformed_frame", logging.WARNING, count=n, error=str(error)[:200],
                      prefix=bytes(frame[:80]) if isinstance(frame, bytes) else frame[:80])  # fmt: skip

    async def _watchdog(self, ws: _WebSocket, opened_at: float, max_age: float) -> None:
        tick = max(0.01, min(1.0, self.stale_after_s / 4))
        seen, last_change = self._frames, opened_at
        while True:
            await asyncio.sleep(tick)
            self._flush_tallies()
            now = time.monotonic()
            if self._frames != seen:
                seen, last_change = self._frames, now
            if now - last_change > self.stale_after_s:
                self._close_reason = "stale"
                self.metrics.stale.inc()
                log_event(log, "feed_stale", logging.WARNING, silent_s=round(now - last_change, 1))
            elif now - opened_at > max_age:
                self._close_reason = "max_age"
                log_event(log, "feed_max_age", age_s=round(now - opened_at))
            else:
                continue
            # A stalled peer may never answer the closing handshake: do not wait for it. Shutting
            # the socket down ends the pending receive at once (EOF), through public API only.
            sock = ws.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return
