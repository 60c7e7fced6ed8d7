"""Our HTTP/1.1 client (`adapters/http1.py`) under the signed Binance client, against real local
servers written here on asyncio streams: each test's server answers exactly as the case needs (chunked,
`Connection: close`, closing while idle, closing without answering, never answering, malformed heads,
TLS), and counts the connections and requests it saw, so "nothing was sent twice" is asserted on the
server's side of the socket.

Timeouts here are real time (the client's deadline is a loop timer); they are short and the tests
assert the error, never a duration.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from tests.orders.conftest import SIM_CREDENTIALS, bot_config, sim_orders, until
from tests.plugins.sim import TEST_DEFAULTS
from tradefleet import __version__
from tradefleet.adapters.binance_exec import BinanceExecution
from tradefleet.adapters.binance_signed import BinanceSignedRest, BinanceTransportError
from tradefleet.adapters.http1 import MAX_HEAD, Http1Client, Http1Error, retry_after_seconds
from tradefleet.domain.models import Order, OrderStatus, Side
from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.options import SimOptions
from tradefleet_sim.server import SimServer
from tradefleet_sim.tls import TlsFiles, self_signed, server_context

Respond = Callable[["Server", bytes, asyncio.StreamWriter], Awaitable[bool]]


def answer(body: bytes = b"{}", *, status: str = "200 OK", headers: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{headers}\r\n").encode() + body  # fmt: skip


async def json_ok(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(answer(b'{"n": %d}' % len(server.heads)))
    return True


class Server:
    """A real local HTTP server: reads request heads (our requests have no body) and lets `respond`
    write whatever the case needs; `respond` returns False to close the connection after it."""

    def __init__(self, respond: Respond, tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.tls = tls
        self.heads: list[bytes] = []
        self.connections = 0
        self.eofs = 0  # connections the client closed (EOF read where a request could start)
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.eofs += 1
                    return
                self.heads.append(head)
                if not await self.respond(self, head, writer):
                    return
                await writer.drain()
        finally:
            writer.close()


def rest(server: Server, **kw: object) -> BinanceSignedRest:
    return BinanceSignedRest(server.url, SIM_CREDENTIALS, **kw)  # type: ignore[arg-type]


async def test_sequential_requests_share_one_connection_and_carry_exactly_our_headers():
    async with Server(json_ok) as server:
        client = rest(server)
        try:
            for i in range(5):
                assert await client.request("POST" if i % 2 else "GET", "/api/v3/order", {"i": i}) == {
                    "n": i + 1
                }
        finally:
            await client.close()
        await until(lambda: server.eofs == 1, what="the client's close")
    assert server.connections == 1 and len(server.heads) == 5
    get, post = server.heads[0].decode(), server.heads[1].decode()
    lines = post.split("\r\n")
    assert lines[0].startswith("POST /api/v3/order?i=1&signature=") and lines[0].endswith(" HTTP/1.1")
    host = server.url.removeprefix("http://")
    assert lines[1:] == [f"Host: {host}", f"X-MBX-APIKEY: {SIM_CREDENTIALS.api_key}", f"User-Agent: tradefleet/{__version__}",
                         "Content-Length: 0", "Connection: keep-alive", "", ""]  # fmt: skip
    assert "Content-Length" not in get and get.startswith("GET /api/v3/order?i=0&signature=")


async def test_connect_opens_the_connection_the_first_request_then_uses():
    async with Server(json_ok) as server:
        client = rest(server)
        try:
            await client.connect()
            await until(lambda: server.connections == 1, what="the warm-up connection")
            assert server.heads == []
            assert await client.request("POST", "/api/v3/order", {"a": 1}) == {"n": 1}
        finally:
            await client.close()
    assert server.connections == 1


async def test_chunked_answer_with_extensions_and_trailers_then_the_connection_is_reused():
    async def chunked(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        writer.write(b'5;ext=1\r\n{"a":\r\n')
        await writer.drain()
        writer.write(b"A\r\n [1, 2, 3]\r\n1\r\n}\r\n0\r\nX-Trailer: yes\r\n\r\n")
        return True

    async with Server(chunked) as server:
        client = rest(server)
        try:
            assert await client.request("GET", "/x", {}) == {"a": [1, 2, 3]}
            assert await client.request("GET", "/x", {}) == {"a": [1, 2, 3]}
        finally:
            await client.close()
    assert server.connections == 1


@pytest.mark.parametrize("close_header", [True, False], ids=["connection_close", "body_until_close"])
async def test_an_answer_that_closes_the_connection_is_read_and_the_next_request_opens_a_new_one(
    close_header,
):
    async def closing(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        n = b'{"n": %d}' % len(server.heads)
        # without Content-Length the body runs until the server closes
        writer.write(
            answer(n, headers="Connection: close\r\n") if close_header else b"HTTP/1.1 200 OK\r\n\r\n" + n
        )
        return False

    async with Server(closing) as server:
        client = rest(server)
        try:
            assert await client.request("GET", "/x", {}) == {"n": 1}
            assert await client.request("POST", "/x", {}) == {"n": 2}
        finally:
            await client.close()
    assert server.connections == 2 and len(server.heads) == 2


async def test_interim_answers_are_skipped_and_an_http10_answer_is_not_kept_alive():
    async def interim_then_http10(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        n = b'{"n": %d}' % len(server.heads)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(n).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        return True  # the server would take another request; an HTTP/1.0 client must not send one

    async with Server(interim_then_http10) as server:
        client = rest(server)
        try:
            assert await client.request("GET", "/x", {}) == {"n": 1}
            assert await client.request("GET", "/x", {}) == {"n": 2}
        finally:
            await client.close()
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_replaced_without_resending_anything():
    async def answer_then_close(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(b'{"n": %d}' % len(server.heads)))  # keep-alive answer, then an idle close
        await writer.drain()
        return False

    async with Server(answer_then_close) as server:
        client = Http1Client(server.url, timeout_s=5)
        try:
            assert (await client.request("GET", "/a")).body == b'{"n": 1}'
            await until(lambda: client.idle_connections == 0, what="the client to see the idle close")
            assert (await client.request("POST", "/b")).body == b'{"n": 2}'
        finally:
            await client.close()
    assert server.connections == 2 and client.connections_opened == 2
    assert [h.split(b" ")[1] for h in server.heads] == [b"/a", b"/b"]  # each request once, none again


async def test_a_server_that_closes_after_reading_the_request_is_a_transport_error_sent_once():
    async def read_and_close(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with Server(read_and_close) as server:
        client = rest(server, timeout_ms=5000)
        try:
            with pytest.raises(BinanceTransportError, match="before any answer"):
                await client.request("POST", "/api/v3/order", {"newClientOrderId": "once"})
        finally:
            await client.close()
    assert len(server.heads) == 1 and server.connections == 1


async def test_an_answer_that_never_comes_times_out_and_the_client_closes_that_connection():
    async def silent(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        return True  # read the request, answer nothing, wait for the next one (or EOF)

    async with Server(silent) as server:
        client = rest(server, timeout_ms=200)
        try:
            with pytest.raises(BinanceTransportError, match="no answer within"):
                await client.request("POST", "/api/v3/order", {"a": 1})
            await until(lambda: server.eofs == 1, what="the timed-out connection to be closed")
        finally:
            await client.close()
    assert len(server.heads) == 1


async def test_a_late_answer_after_a_timeout_never_reaches_the_next_request():
    release = asyncio.Event()

    async def first_late(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        n = len(server.heads)
        if n == 1:
            await release.wait()  # the first answer comes only after the client gave up on it
        writer.write(answer(b'{"n": %d}' % n))
        return True

    async with Server(first_late) as server:
        client = rest(server, timeout_ms=1000)  # the first answer waits for the release: never in time
        try:
            with pytest.raises(BinanceTransportError, match="no answer within"):
                await client.request("POST", "/api/v3/order", {"a": 1})
            release.set()  # the late answer goes out on a connection the client has already closed
            await until(lambda: server.eofs == 1, what="the timed-out connection to be closed")
            client_slow_ok = rest(server, timeout_ms=5000)
            try:
                assert await client_slow_ok.request("GET", "/x", {}) == {"n": 2}
            finally:
                await client_slow_ok.close()
            assert await client.request("GET", "/x", {}) == {"n": 3}
        finally:
            await client.close()
    assert server.connections == 3 and len(server.heads) == 3


async def test_a_cancelled_request_drops_its_connection_so_its_answer_cannot_be_misread():
    gate = asyncio.Event()

    async def held(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        n = len(server.heads)
        if n == 1:
            await gate.wait()
        writer.write(answer(b'{"n": %d}' % n))
        return True

    async with Server(held) as server:
        client = rest(server)
        try:
            task = asyncio.create_task(client.request("POST", "/api/v3/order", {"a": 1}))
            await until(lambda: len(server.heads) == 1, what="the first request at the server")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gate.set()
            await until(lambda: server.eofs == 1, what="the cancelled request's connection to be closed")
            assert await client.request("GET", "/x", {}) == {"n": 2}
        finally:
            await client.close()
    assert server.connections == 2


_MALFORMED = {
    "status_line": (b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\n{}", "malformed status line"),
    "http2_status": (b"HTTP/2 200\r\nContent-Length: 2\r\n\r\n{}", "malformed status line"),
    "not_http": (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed status line"),
    "header_no_colon": (b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\n{}", "malformed header line"),
    "space_before_colon": (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}", "malformed header line"),
    "folded_header": (
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n continued\r\nContent-Length: 2\r\n\r\n{}",
        "malformed header line",
    ),
    "oversize_head": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n{}", "head over"),
    "two_lengths": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "conflicting Content-Length",
    ),
    "bad_length": (b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}", "malformed Content-Length"),
    "gzip_coding": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{}", "unsupported Transfer-Encoding"),
    "coding_and_length": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}",
        "both Transfer-Encoding and Content-Length",
    ),
    "bad_chunk_size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "malformed chunk size",
    ),
    "chunk_without_crlf": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
        "chunk not followed by CRLF",
    ),
    "cut_mid_body": (b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{}", "in the middle of the answer"),
    "switching_protocols": (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
}


@pytest.mark.parametrize("raw", list(_MALFORMED), ids=list(_MALFORMED))
async def test_a_malformed_answer_is_a_clear_transport_error_and_its_connection_is_dropped(raw):
    wire, expected = _MALFORMED[raw]

    async def malformed_then_ok(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        if len(server.heads) == 1:
            writer.write(wire)
            return False  # what the client reads next (if anything) is EOF
        writer.write(answer(b'{"ok": true}'))
        return True

    async with Server(malformed_then_ok) as server:
        client = rest(server, timeout_ms=5000)
        try:
            with pytest.raises(BinanceTransportError, match=expected):
                await client.request("GET", "/x", {})
            assert await client.request("GET", "/x", {}) == {"ok": True}
        finally:
            await client.close()
    assert server.connections == 2


async def test_a_body_over_the_limit_and_bytes_nobody_asked_for_drop_the_connection():
    async def oversize_then_extra(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        n = len(server.heads)
        if n == 1:
            writer.write(answer(b"x" * 2000))
            return True
        writer.write(answer(b'{"n": %d}' % n) + b"HTTP/1.1 200 OK\r\n")  # a second answer nobody asked for
        return True

    async with Server(oversize_then_extra) as server:
        client = Http1Client(server.url, timeout_s=5, max_body=1000)
        try:
            with pytest.raises(Http1Error, match="body over 1000 bytes"):
                await client.request("GET", "/big")
            assert (await client.request("GET", "/x")).body == b'{"n": 2}'
            assert (await client.request("GET", "/x")).body == b'{"n": 3}'
        finally:
            await client.close()
    assert server.connections == 3  # the oversize answer's and the out-of-step one's were both dropped


async def test_concurrent_requests_never_share_a_connection_and_each_gets_its_own_answer():
    """Eight requests at once on at most three connections: the server holds every answer until
    three requests are in, then answers each with its own id; a request arriving on a connection
    that already has one in flight would be interleaving."""
    in_flight: dict[int, int] = {}
    interleaved: list[bytes] = []
    three_in = asyncio.Event()

    async def echo_later(server: Server, head: bytes, writer: asyncio.StreamWriter) -> bool:
        key = id(writer)
        if in_flight.get(key):
            interleaved.append(head)
        in_flight[key] = 1
        if sum(in_flight.values()) >= 3:
            three_in.set()
        await three_in.wait()
        rid = head.split(b"?", 1)[1].split(b"&", 1)[0]  # id=<n>
        writer.write(answer(b'{"%s": 1}' % rid))
        in_flight[key] = 0
        return True

    async with Server(echo_later) as server:
        client = rest(server, max_connections=3)
        try:
            results = await asyncio.gather(*(client.request("GET", "/x", {"id": i}) for i in range(8)))
        finally:
            await client.close()
    assert results == [{f"id={i}": 1} for i in range(8)]
    assert interleaved == [] and server.connections == 3 and len(server.heads) == 8


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return self_signed(tmp_path / "tls")


async def test_tls_is_verified_with_a_trusted_ca_and_refused_without(tls_files):
    async with Server(json_ok, tls=server_context(tls_files)) as server:
        trusting = rest(server, tls=ssl.create_default_context(cafile=str(tls_files.cert)))
        default = rest(server)  # the system's CAs: the self-signed certificate is not among them
        try:
            assert await trusting.request("POST", "/api/v3/order", {"a": 1}) == {"n": 1}
            assert await trusting.request("GET", "/api/v3/order", {"a": 2}) == {"n": 2}
            with pytest.raises(
                BinanceTransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"
            ):
                await default.request("GET", "/api/v3/account", {})
        finally:
            await trusting.close()
            await default.close()
    # the trusted connection, reused; the refused one never finished its handshake, so sent nothing
    assert len(server.heads) == 2 and server.connections == 1


async def test_the_bot_trades_on_the_simulator_over_tls(tls_files):
    """The simulator's TLS listener (as cryptofeed's tests use it): the bot's execution signs, sends
    and reads the FULL answer over a verified TLS connection, and the order is there once."""
    server = SimServer(SimExchange(SimOptions.from_mapping(TEST_DEFAULTS)), port=0, tls=tls_files)
    await server.start()
    try:
        config = bot_config(server, rest_url=server.https_url)
        tls = ssl.create_default_context(cafile=str(tls_files.cert))
        client = BinanceSignedRest(server.https_url, SIM_CREDENTIALS, tls=tls)
        ex = BinanceExecution(config, SIM_CREDENTIALS, client=client, user_stream=False)
        try:
            await ex.prepare()  # the account request: proves the key and opens the connection
            order = Order("tftls1", "b", "binance", "BTC/USDT", Side.BUY, "MARKET", "s", OrderStatus.PENDING, 0, 0,
                          quote_amount=Decimal("60"))  # fmt: skip
            update = await ex.submit(order)
        finally:
            await ex.close()
        assert update.status is OrderStatus.FILLED and update.filled_qty > 0
        assert (await sim_orders(server))["accepted_per_client_id"] == {"tftls1": 1}
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("inf", None), ("nan", None), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)],
)  # fmt: skip
def test_retry_after_is_a_finite_number_of_seconds_or_nothing(value, seconds):
    assert retry_after_seconds(value) == seconds
