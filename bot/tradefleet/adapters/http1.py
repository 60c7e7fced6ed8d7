"""A small HTTP/1.1 client for one base URL: keep-alive connections on asyncio protocols, nothing else.

Why it exists: the signed order request is on the tick -> order path (issue #17, goal 2), and
aiohttp's `ClientSession.request` machinery (request/response objects, its connector, its streams,
URL handling, trace hooks) cost about half a millisecond of Python per request. A Binance REST call
needs much less: a request line, a few fixed headers, no request body, and a JSON answer. Here the
request bytes are built directly and written in one `transport.write`, and the answer is parsed by a
protocol fed straight from the event loop.

What it does: keep-alive connections to one `http://` or `https://` origin (TLS with the default
verified context, so `SSL_CERT_FILE` and the system CAs decide trust, as for the bot's aiohttp
sessions), at most `max_connections` of them, one request at a time on each (never pipelined), idle
ones reused most-recently-used first. The answer: status line, headers, body by Content-Length,
chunked, or until the server closes; 1xx interim answers are skipped. One deadline covers waiting
for a connection, connecting (+ TLS), writing and reading.

What it refuses:
- to re-send anything: a request whose bytes were handed to a connection and got no complete answer
  is an `Http1Error`, whatever happened (dropped, timed out, closed by the server before a byte of
  answer). Only a connection already known closed (EOF seen while idle) is skipped, before anything
  is written on it. For an order, "no answer" may mean "placed": the caller decides (by querying).
- a malformed or oversized answer: a bad status line or header, conflicting lengths, a transfer
  coding other than chunked, a head over `MAX_HEAD` or a body over `max_body` is an `Http1Error` and
  the connection is dropped. So is a byte the server sends while no request is waiting.
- environment proxies (there is no proxy support at all), redirects, cookies, compression.
- to put the request target in an error: it carries the caller's query (a signature); errors name
  what happened, never what was asked.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

MAX_HEAD: Final = 64 * 1024  # status line + headers of one answer (incl. a chunked body's trailers)
MAX_HEADERS: Final = 100
MAX_BODY: Final = 16 * 1024 * 1024  # Binance's largest answers (account, 1000 trades) are < 1 MiB
_MAX_CHUNK_LINE: Final = 1024

_STATUS_RE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?")
_HEADER_RE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")
_CHUNK_SIZE_RE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")
_BAD_TARGET = re.compile(r"[^\x21-\x7e]")  # a request target is visible ASCII: no space, CR, LF
_BAD_VALUE = re.compile(r"[^\t\x20-\x7e]")


class Http1Error(Exception):
    """No complete, well-formed answer. Whether the request reached the server is unknown, unless
    the message says the connection could not be made."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names lower-cased; repeated headers joined with ", "
    body: bytes


def retry_after_seconds(value: str | None) -> float | None:
    """The seconds a `Retry-After` value asks for (never negative); None for none or for one that is
    not a finite number of seconds (an HTTP date is not honoured)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


@functools.cache
def default_tls_context() -> ssl.SSLContext:
    """The verified default context, made once per process (loading the CA bundle is not free)."""
    return ssl.create_default_context()


class _Parser:
    """One answer, fed in pieces. `feed` returns True once it is complete (`leftover` then holds any
    bytes after it, which on a connection with no request waiting means the server is out of step)."""

    __slots__ = ("_chunks", "_length", "_max_body", "_state", "buf", "headers", "keep_alive", "leftover",
                 "started", "status")  # fmt: skip

    def __init__(self, max_body: int) -> None:
        self.buf = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self._state = "head"  # head -> length | chunk_size | chunk_data | trailers | until_close -> done
        self._length = 0
        self._chunks = bytearray()
        self._max_body = max_body
        self.leftover = b""
        self.started = False  # a byte of answer came

    def feed(self, data: bytes) -> bool:
        self.started = True
        self.buf += data
        while True:
            state = self._state
            if state == "head":
                if not self._head():
                    return False
            elif state == "length":
                if len(self.buf) < self._length:
                    return False
                self._finish(self._length)
                return True
            elif state == "until_close":
                if len(self.buf) > self._max_body:
                    raise Http1Error(f"answer body over {self._max_body} bytes")
                return False
            elif not self._chunked():
                return False
            if self._state == "done":
                return True

    def eof(self) -> bool:
        """The server closed: True if that completes the answer (a body read until close)."""
        if self._state == "until_close":
            self._state = "done"
            self._chunks = self.buf
            self.buf = bytearray()
            return True
        return False

    @property
    def body(self) -> bytes:
        return bytes(self._chunks)

    def _finish(self, end: int) -> None:
        self._chunks = self.buf[:end]
        self.leftover = bytes(self.buf[end:])
        self.buf = bytearray()
        self._state = "done"

    def _head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                raise Http1Error(f"answer head over {MAX_HEAD} bytes")
            return False
        if end > MAX_HEAD:
            raise Http1Error(f"answer head over {MAX_HEAD} bytes")
        lines = bytes(self.buf[:end]).split(b"\r\n")
        del self.buf[: end + 4]
        m = _STATUS_RE.fullmatch(lines[0])
        if m is None:
            raise Http1Error(f"malformed status line {lines[0][:80]!r}")
        if len(lines) - 1 > MAX_HEADERS:
            raise Http1Error(f"answer has more than {MAX_HEADERS} headers")
        status = int(m.group(2))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            h = _HEADER_RE.fullmatch(line)
            if h is None:
                raise Http1Error(f"malformed header line {line[:80]!r}")
            name, value = h.group(1).decode("ascii").lower(), h.group(2).decode("latin-1")
            if name in headers:
                if name == "content-length" and headers[name] != value:
                    raise Http1Error("conflicting Content-Length headers")
                if name != "content-length":
                    headers[name] = f"{headers[name]}, {value}"
            else:
                headers[name] = value
        if 100 <= status < 200:
            if status == 101:
                raise Http1Error("unexpected 101 Switching Protocols")
            return True  # interim answer: the real one follows
        self.status, self.headers = status, headers
        connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        self.keep_alive = "close" not in connection and (m.group(1) == b"1" or "keep-alive" in connection)
        te, cl = headers.get("transfer-encoding"), headers.get("content-length")
        if te is not None:
            if cl is not None:
                raise Http1Error("answer has both Transfer-Encoding and Content-Length")
            if te.strip().lower() != "chunked":
                raise Http1Error(f"unsupported Transfer-Encoding {te[:40]!r}")
            self._state = "chunk_size"
        elif status in (204, 304):
            self._length, self._state = 0, "length"
        elif cl is not None:
            if not cl.isdigit() or not cl.isascii():
                raise Http1Error(f"malformed Content-Length {cl[:40]!r}")
            self._length = int(cl)
            if self._length > self._max_body:
                raise Http1Error(f"answer body over {self._max_body} bytes")
            self._state = "length"
        else:
            self._state, self.keep_alive = "until_close", False
        return True

    def _chunked(self) -> bool:
        """One step of a chunked body; False when more bytes are needed."""
        buf = self.buf
        if self._state == "chunk_size":
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_CHUNK_LINE:
                    raise Http1Error("chunk size line too long")
                return False
            m = _CHUNK_SIZE_RE.fullmatch(bytes(buf[:end]))
            if m is None:
                raise Http1Error(f"malformed chunk size line {bytes(buf[:end])[:40]!r}")
            del buf[: end + 2]
            self._length = int(m.group(1), 16)
            if len(self._chunks) + self._length > self._max_body:
                raise Http1Error(f"answer body over {self._max_body} bytes")
            self._state = "chunk_data" if self._length else "trailers"
            return True
        if self._state == "chunk_data":
            if len(buf) < self._length + 2:
                return False
            if buf[self._length : self._length + 2] != b"\r\n":
                raise Http1Error("chunk not followed by CRLF")
            self._chunks += buf[: self._length]
            del buf[: self._length + 2]
            self._state = "chunk_size"
            return True
        # trailers: header lines until an empty one; read and ignored
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise Http1Error(f"answer trailers over {MAX_HEAD} bytes")
            return False
        if end == 0:
            self.leftover = bytes(buf[2:])
            self.buf = bytearray()
            self._state = "done"
            return True
        if _HEADER_RE.fullmatch(bytes(buf[:end])) is None:
            raise Http1Error("malformed trailer line")
        del buf[: end + 2]
        return True


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request waits on it at a time."""

    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False  # EOF or loss seen: never written to again
        self._max_body = max_body
        self._waiter: asyncio.Future[Response] | None = None
        self._parser: _Parser | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or parser is None or waiter.done():
            self.abort()  # bytes nobody asked for: the server is out of step with us
            return
        try:
            done = parser.feed(data)
        except Http1Error as e:
            self._fail(e)
            return
        if done:
            if parser.leftover or not parser.keep_alive:
                self.abort()  # answered, but not reusable
            self._answer(parser)

    def eof_received(self) -> bool | None:
        self._lost("closed by the server")
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(f"lost ({type(exc).__name__}: {exc})" if exc is not None else "closed")

    # used by the client
    def send(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._parser = _Parser(self._max_body)
        self.transport.write(data)
        return self._waiter

    def done(self) -> None:
        """The request is over (answered or failed): the connection may take the next one."""
        self._waiter = None
        self._parser = None

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _answer(self, parser: _Parser) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(Response(parser.status, parser.headers, parser.body))

    def _fail(self, e: Exception) -> None:
        self.abort()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(e)

    def _lost(self, how: str) -> None:
        self.closed = True
        parser, waiter = self._parser, self._waiter
        if waiter is None or parser is None or waiter.done():
            return
        if parser.eof():
            self._answer(parser)
        elif parser.started:
            self._fail(Http1Error(f"connection {how} in the middle of the answer"))
        else:
            self._fail(Http1Error(f"connection {how} before any answer (the request may have been received)"))


class Http1Client:
    """Requests to one origin (`base_url`, its path a prefix of every target) on pooled keep-alive
    connections. `request` raises `Http1Error` (or `ValueError` for a target that is not visible
    ASCII); any answer, whatever its status, is returned."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 4,
        max_body: int = MAX_BODY,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base URL must be http:// or https://host, got {base_url!r}")
        if url.query or url.fragment or url.username or url.password:
            raise ValueError("base URL must have no query, fragment or credentials")
        if timeout_s <= 0 or max_connections < 1 or max_body < 0:
            raise ValueError("timeout_s must be positive, max_connections at least 1, max_body >= 0")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        if tls is not None and url.scheme != "https":
            raise ValueError("a TLS context needs an https:// base URL")
        self._tls = tls
        self._https = url.scheme == "https"
        self._prefix = url.path.rstrip("/")
        self._timeout_s = timeout_s
        self._max_body = max_body
        authority = f"[{self._host}]" if ":" in self._host else self._host
        if url.port is not None:
            authority = f"{authority}:{url.port}"
        fixed = {"Host": authority, **(headers or {})}
        for name, value in fixed.items():
            if _BAD_VALUE.search(name) or _BAD_VALUE.search(value) or ":" in name:
                raise ValueError(f"header {name!r} has characters a header cannot carry")
        self._fixed_headers = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._busy: set[_Connection] = set()
        self.connections_opened = 0

    @property
    def idle_connections(self) -> int:
        """Idle connections not known to be closed."""
        return sum(1 for c in self._idle if not c.closed)

    def encode(self, method: str, target: str) -> bytes:
        """The request's bytes: request line and headers, no body (`Content-Length: 0` for a method
        that may carry one)."""
        if not (method.isascii() and method.isalpha() and method.isupper()):
            raise ValueError(f"method must be an upper-case token, got {method[:20]!r}")
        if _BAD_TARGET.search(target) is not None or not target.startswith("/"):
            raise ValueError("request target must be an absolute path of visible ASCII characters")
        body_length = "" if method in ("GET", "HEAD") else "Content-Length: 0\r\n"
        return (f"{method} {self._prefix}{target} HTTP/1.1\r\n{self._fixed_headers}{body_length}"
                "Connection: keep-alive\r\n\r\n").encode("ascii")  # fmt: skip

    async def request(self, method: str, target: str) -> Response:
        return await self.send(self.encode(method, target))

    async def send(self, data: bytes) -> Response:
        """`request` for bytes `encode` made."""
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        await self._acquire(deadline)
        try:
            conn = self._take_idle() or await self._connect(deadline)
            return await self._exchange(conn, data, deadline)
        finally:
            self._slots.release()

    async def _acquire(self, deadline: float) -> None:
        """A slot (at most `max_connections` requests at once), waiting no later than `deadline`."""
        if not self._slots.locked():
            await self._slots.acquire()  # a slot is free: returns without suspending
            return
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise Http1Error(f"no connection free within {self._timeout_s} s") from None

    async def _exchange(self, conn: _Connection, data: bytes, deadline: float) -> Response:
        """Write the request on `conn` and wait for its answer; on anything but a complete answer the
        connection is dropped (its answer may still come: it must never reach the next request)."""
        self._busy.add(conn)
        answer = conn.send(data)
        timer = asyncio.get_running_loop().call_at(deadline, _expire, answer, self._timeout_s)
        try:
            response = await answer
        except BaseException:  # Http1Error, a timeout, or the caller's cancellation
            conn.abort()
            raise
        finally:
            timer.cancel()
            conn.done()
            self._busy.discard(conn)
        if not conn.closed:
            self._idle.append(conn)
        return response

    async def connect(self) -> None:
        """Open one keep-alive connection now (unless one is idle), so the next request does not pay
        for the TCP (and TLS) handshake."""
        if self.idle_connections:
            return
        deadline = asyncio.get_running_loop().time() + self._timeout_s
        await self._acquire(deadline)
        try:
            self._idle.append(await self._connect(deadline))
        finally:
            self._slots.release()

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.abort()  # the server closed it while idle: nothing was written on it
        return None

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = (self._tls or default_tls_context()) if self._https else None
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._max_body), self._host, self._port,
                    ssl=tls, server_hostname=self._host if tls is not None else None,
                )  # fmt: skip
        except TimeoutError:
            raise Http1Error(f"could not connect within {self._timeout_s} s") from None
        except ssl.SSLError as e:
            raise Http1Error(f"TLS handshake failed: {type(e).__name__}: {e}") from None
        except OSError as e:
            raise Http1Error(f"could not connect: {type(e).__name__}: {e}") from None
        self.connections_opened += 1
        return conn

    async def close(self) -> None:
        """Close every connection (a request in flight fails with `Http1Error`)."""
        for conn in [*self._idle, *self._busy]:
            conn.abort()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run connection_lost


def _expire(answer: asyncio.Future[Response], timeout_s: float) -> None:
    if not answer.done():
        answer.set_exception(Http1Error(f"no answer within {timeout_s} s"))
