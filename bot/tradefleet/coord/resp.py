"""A small RESP2 client for the order path's two Redis calls (the lease's confirmation, the fleet
reserve): one dedicated connection, an asyncio Protocol, the request written before `call` returns.

Why not redis-py for these two: on loopback Redis answers in tens of µs, and redis-py's asyncio client
spent ~500-700 µs around each (pool, locks, `wait_for` timeouts, its parser, several loop turns). And
a coroutine only starts at the next loop iteration: the order manager needs the confirmation already
on the wire when it starts the order's commit (which blocks the loop in fsync), so the two overlap.
`call()` encodes and writes the command synchronously (one `transport.write`) and returns a Future;
replies resolve the pending futures in order, so several calls may be pipelined. Everything else
(renewals, polls, the CLI) stays on redis-py: this is not a general client.

Rules:
- URLs as `redis_client.connect` reads them (redis-py's own parser): `redis://`, `rediss://` (TLS,
  `ssl_cert_reqs`/`ssl_ca_certs`/`ssl_certfile`/`ssl_keyfile`/`ssl_check_hostname`), `unix://`;
  username/password (AUTH) and db (SELECT) from the URL. Other query options (redis-py pool tuning)
  are ignored, since this client has none of them; an unknown `ssl_*` option is an error.
- Errors are redis-py's classes, which the callers already catch: a Redis error reply raises
  `ReplyError` (a `RedisError`); a lost connection, a connect that fails or a malformed reply raise
  `RespConnectionError` (a `redis.ConnectionError`); a call not answered in its timeout raises
  `RespTimeoutError` (a `redis.TimeoutError`). A lost connection or a timeout fails *every* pending
  call (the reply stream can no longer be matched) and drops the connection; the next call connects
  again (that call waits for the connect: its request leaves once connected, its timeout counts from
  the call).
- Scripts go as EVALSHA; a NOSCRIPT reply (the server restarted or `SCRIPT FLUSH`) re-sends that call
  as EVAL, which the caller never sees. Only NOSCRIPT: any other error is the caller's. (The EVAL
  goes after whatever was pipelined behind the EVALSHA: fine for callers that wait for each answer,
  as these do; a caller that needs strict order across pipelined scripts must not rely on it.)
- No retries: one attempt per call, as everywhere in `coord` (the callers' loops are the retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tradefleet.coord import redis_client

__all__ = [
    "ReplyError",
    "RespClient",
    "RespConnectionError",
    "RespParser",
    "RespTimeoutError",
    "Script",
    "encode_command",
]

Arg = str | bytes | int
READ_READY_MAX = 65536
"""Bytes `RespClient.read_ready` reads at most at once (the loop reads the rest)."""


class ReplyError(redis_client.RedisError):
    """Redis answered with an error (`-ERR ...`, `-NOSCRIPT ...`, `-WRONGPASS ...`)."""


class RespConnectionError(redis_client.RedisConnectionError):
    """No connection, the connection was lost, or the server sent something that is not RESP2."""


class RespTimeoutError(redis_client.RedisTimeoutError):
    """No reply within the call's timeout."""


def _arg(a: Arg) -> bytes:
    if isinstance(a, bytes):
        return a
    if isinstance(a, str):
        return a.encode()
    if isinstance(a, int) and not isinstance(a, bool):
        return str(a).encode()
    raise TypeError(f"a Redis argument must be str, bytes or int, not {type(a).__name__}: {a!r}")


def encode_command(args: Sequence[Arg]) -> bytes:
    """One command as a RESP2 array of bulk strings."""
    if not args:
        raise ValueError("a Redis command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = _arg(a)
        parts.append(b"$%d\r\n" % len(b))
        parts.append(b)
        parts.append(b"\r\n")
    return b"".join(parts)


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


class RespParser:
    """Incremental RESP2 reply parser: `feed` bytes as they arrive, `gets` complete replies.

    Replies: simple strings and bulk strings as `str` (UTF-8), integers as `int`, arrays as `list`,
    nil as None, error replies as `ReplyError` values (not raised: the caller decides whose they are).
    A reply split anywhere across reads is held until it is whole. Bytes that are not RESP2 raise
    `RespConnectionError` (the stream cannot be resynchronised: the caller drops the connection)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def gets(self) -> list[Any]:
        """Every complete reply in the buffer, in order (empty when none is complete yet)."""
        out: list[Any] = []
        while self._pos < len(self._buf):
            try:
                value, end = self._parse(self._pos)
            except _Incomplete:
                break
            out.append(value)
            self._pos = end
        return out

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        return bytes(self._buf[pos:end]), end + 2

    def _int(self, raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError:
            raise RespConnectionError(f"malformed RESP integer {raw[:40]!r}") from None

    def _parse(self, pos: int) -> tuple[Any, int]:
        if pos >= len(self._buf):
            raise _Incomplete
        kind = self._buf[pos]
        line, nxt = self._line(pos + 1)
        if kind == 0x2B:  # '+'
            return line.decode(), nxt
        if kind == 0x3A:  # ':'
            return self._int(line), nxt
        if kind == 0x24:  # '$'
            n = self._int(line)
            if n == -1:
                return None, nxt
            if n < 0:
                raise RespConnectionError(f"malformed RESP bulk length {n}")
            end = nxt + n
            if end + 2 > len(self._buf):
                raise _Incomplete
            if self._buf[end : end + 2] != b"\r\n":
                raise RespConnectionError("a RESP bulk string without its CRLF")
            return bytes(self._buf[nxt:end]).decode(), end + 2
        if kind == 0x2A:  # '*'
            n = self._int(line)
            if n == -1:
                return None, nxt
            if n < 0:
                raise RespConnectionError(f"malformed RESP array length {n}")
            items: list[Any] = []
            for _ in range(n):
                item, nxt = self._parse(nxt)
                items.append(item)
            return items, nxt
        if kind == 0x2D:  # '-'
            return ReplyError(line.decode(errors="replace")), nxt
        raise RespConnectionError(f"not a RESP2 reply: type byte {bytes([kind])!r}")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script and its SHA1 (what EVALSHA names it by)."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


Settle = Callable[[Any], Any]


class _Call:
    """One request waiting for its reply: the caller's future, its timer, for EVALSHA the EVAL to send
    instead on NOSCRIPT, and the caller's `settle` (see `RespClient.evalsha`)."""

    __slots__ = ("fallback", "future", "settle", "timer")

    def __init__(self, future: asyncio.Future[Any], fallback: bytes | None, settle: Settle | None) -> None:
        self.future = future
        self.fallback = fallback
        self.settle = settle
        self.timer: asyncio.TimerHandle | None = None

    def resolve(self, outcome: Any) -> None:
        """The reply, or the exception that ends the call, into the future (through `settle`, which
        runs even when the caller cancelled: what Redis said still counts)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.settle is not None:
            try:
                outcome = self.settle(outcome)
            except Exception as e:
                outcome = e
        if self.future.done():
            return  # the caller gave up on it (cancelled); its reply is read all the same
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


# Redis's own words when EVALSHA names a script it does not have (a script's own `error_reply` may
# start with NOSCRIPT too: that one ran, and must not run again).
_NOSCRIPT = "NOSCRIPT No matching script"


class _Protocol(asyncio.Protocol):
    def __init__(self, client: RespClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = RespParser()
        self.pending: deque[_Call] = deque()
        self.closed = False
        self.fd: int | None = None
        """The socket's descriptor for `RespClient.read_ready` (plain TCP or unix; None with TLS)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            self.fd = sock.fileno()

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        try:
            replies = self.parser.gets()
        except RespConnectionError as e:
            self.fail(e)
            return
        for reply in replies:
            if not self.pending:
                self.fail(RespConnectionError(f"a reply nobody asked for: {reply!r:.80}"))
                return
            call = self.pending.popleft()
            if (
                call.fallback is not None
                and isinstance(reply, ReplyError)
                and str(reply).startswith(_NOSCRIPT)
                and not self.closed
            ):
                # The server does not know the script (restarted, SCRIPT FLUSH): send it whole.
                assert self.transport is not None
                self.transport.write(call.fallback)
                call.fallback = None
                self.pending.append(call)
                continue
            call.resolve(reply)

    def eof_received(self) -> bool:
        return False  # close: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"connection to Redis lost: {exc!r}" if exc else "connection closed by Redis"
        self.fail(RespConnectionError(reason))

    def fail(self, error: Exception) -> None:
        """Fail every pending call and drop the connection (its replies can no longer be matched)."""
        self.closed = True
        if self.client._proto is self:
            self.client._proto = None
        pending, self.pending = self.pending, deque()
        for call in pending:
            call.resolve(error)
        if self.transport is not None:
            self.transport.abort()


_SSL_OPTIONS = {"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}


@dataclass(frozen=True, slots=True)
class _Target:
    host: str | None
    port: int
    path: str | None
    username: str | None
    password: str | None
    db: int
    tls: ssl.SSLContext | None


def _target(url: str) -> _Target:
    """Where `url` points, read by redis-py's own URL parser (the one `redis_client.connect` uses)."""
    kw = redis_client.parse_url(url)
    tls: ssl.SSLContext | None = None
    unknown = sorted(k for k in kw if k.startswith("ssl") and k not in _SSL_OPTIONS)
    if unknown:
        raise ValueError(f"{url!r}: TLS options {unknown} are not supported by the order path's Redis client")
    if redis_client.is_tls(kw.get("connection_class")):
        tls = ssl.create_default_context(cafile=kw.get("ssl_ca_certs"))
        reqs = str(kw.get("ssl_cert_reqs", "required")).lower()
        modes = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
        if reqs not in modes:
            raise ValueError(f"{url!r}: ssl_cert_reqs must be none, optional or required, not {reqs!r}")
        check = kw.get("ssl_check_hostname", reqs != "none")
        tls.check_hostname = bool(check) and reqs != "none"
        tls.verify_mode = modes[reqs]
        if kw.get("ssl_certfile"):
            tls.load_cert_chain(kw["ssl_certfile"], kw.get("ssl_keyfile"))
    return _Target(
        host=kw.get("host"),
        port=int(kw.get("port", 6379)),
        path=kw.get("path"),
        username=kw.get("username"),
        password=kw.get("password"),
        db=int(kw.get("db", 0) or 0),
        tls=tls,
    )


class RespClient:
    """One connection to Redis for a few hot calls; see the module docstring."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s}")
        self.url = url
        self.timeout_s = timeout_s
        self._target = _target(url)
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    @property
    def connected(self) -> bool:
        return self._live() is not None

    async def connect(self) -> None:
        """Connect now (a bot does this as it starts, so its first order does not pay for it)."""
        if self._live() is None:
            await asyncio.shield(self._start_connect())

    async def close(self) -> None:
        """Drop the connection; pending calls fail. A later call connects again."""
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        proto = self._proto
        if proto is not None:
            proto.fail(RespConnectionError("client closed"))

    def call(self, *args: Arg, timeout_s: float | None = None) -> asyncio.Future[Any]:
        """Send one command; its reply (or error) is the future's. Written before this returns when
        connected; otherwise sent as soon as the connection (started here) is made."""
        return self._send(encode_command(args), None, timeout_s, None)

    def evalsha(
        self,
        script: Script,
        keys: Sequence[Arg],
        args: Sequence[Arg],
        *,
        timeout_s: float | None = None,
        settle: Settle | None = None,
    ) -> asyncio.Future[Any]:
        """Run `script` (EVALSHA, EVAL again on NOSCRIPT).

        `settle`, when given, is called with the outcome as soon as it is known (inside the read of the
        reply, with no loop turn in between): the reply, or the exception that ends the call (an error
        reply, a lost connection, a timeout). What it returns is the future's result (an exception
        returned or raised is its exception). It runs even if the future was cancelled meanwhile."""
        tail = (len(keys), *keys, *args)
        request = encode_command(("EVALSHA", script.sha, *tail))
        return self._send(request, encode_command(("EVAL", script.source, *tail)), timeout_s, settle)

    def read_ready(self) -> None:
        """Read the replies already waiting in the socket now, resolving their futures at once,
        instead of at the loop's next turn (two turns before the caller resumes). The order path
        calls this after the commit that blocked the loop while the replies arrived
        (`OrderManager._act`): ~0.15 ms of a ~1.6 ms tick -> order, measured with
        `bench.tick_to_order`. Nothing to read, a TLS connection, or a read that fails or finds the
        connection closed: nothing done here; the loop's own read finds it as always."""
        proto = self._live()
        if proto is None or proto.fd is None or not proto.pending:
            return
        try:
            data = os.read(proto.fd, READ_READY_MAX)
        except OSError:  # BlockingIOError: nothing yet; anything else is the transport's to report
            return
        if data:
            proto.data_received(data)

    # --- inside --------------------------------------------------------------------------------

    def _live(self) -> _Protocol | None:
        p = self._proto
        if p is None or p.closed or p.transport is None or p.transport.is_closing():
            return None
        return p

    def _send(
        self, request: bytes, fallback: bytes | None, timeout_s: float | None, settle: Settle | None
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), fallback, settle)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        proto = self._live()
        if proto is not None:
            assert proto.transport is not None
            proto.transport.write(request)
            proto.pending.append(call)
            call.timer = loop.call_later(timeout, self._timed_out, call, timeout)
            return call.future
        call.timer = loop.call_later(timeout, self._timed_out, call, timeout)
        # Done callbacks run in the order they were added: calls made while connecting leave in order.
        self._start_connect().add_done_callback(lambda t: self._send_when_connected(t, call, request))
        return call.future

    def _start_connect(self) -> asyncio.Task[_Protocol]:
        """The connect under way, or a new one: every call made meanwhile waits for the same one."""
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._open(), name="resp-connect")
        return self._connecting

    def _send_when_connected(self, task: asyncio.Task[_Protocol], call: _Call, request: bytes) -> None:
        if task.cancelled():
            error: BaseException | None = RespConnectionError("client closed while connecting")
        else:
            error = task.exception()  # read even when the call gave up: no "never retrieved" warning
        if call.future.done():
            return  # timed out or cancelled while connecting: never sent
        proto = None if error is not None else task.result()
        if proto is not None and proto is self._live():
            assert proto.transport is not None
            proto.transport.write(request)
            proto.pending.append(call)
            return
        call.resolve(error or RespConnectionError("connection to Redis lost"))

    def _timed_out(self, call: _Call, timeout: float) -> None:
        call.timer = None
        error = RespTimeoutError(f"no reply from Redis within {timeout * 1000:.0f} ms")
        proto = self._proto
        if proto is not None and call in proto.pending:
            proto.fail(error)  # (even if its caller gave up) the replies behind it can no longer be matched
        elif not call.future.done():
            call.resolve(error)  # still connecting: this call alone gives up

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        t = self._target
        try:
            async with asyncio.timeout(self.timeout_s):
                if t.path is not None:
                    _, proto = await loop.create_unix_connection(lambda: _Protocol(self), t.path)
                else:
                    host = t.host or "localhost"
                    sni = host if t.tls else None
                    transport, proto = await loop.create_connection(
                        lambda: _Protocol(self), host, t.port, ssl=t.tls, server_hostname=sni
                    )
                    _keepalive(transport.get_extra_info("socket"))
                try:
                    handshake: list[asyncio.Future[Any]] = []
                    if t.password is not None:
                        auth = ("AUTH", t.username, t.password) if t.username else ("AUTH", t.password)
                        handshake.append(_direct(proto, encode_command(auth)))
                    if t.db:
                        handshake.append(_direct(proto, encode_command(("SELECT", t.db))))
                    for reply in handshake:
                        await reply
                except BaseException:
                    proto.fail(RespConnectionError("handshake failed"))
                    raise
        except TimeoutError:
            raise RespTimeoutError(f"connect to Redis took over {self.timeout_s * 1000:.0f} ms") from None
        except OSError as e:
            raise RespConnectionError(f"connect to Redis failed: {e}") from e
        finally:
            if self._connecting is asyncio.current_task():
                self._connecting = None
        self._proto = proto
        return proto


def _keepalive(sock: socket.socket | None) -> None:
    """Orders may be hours apart: a connection a middlebox dropped meanwhile is found out by the
    kernel within ~1.5 minutes, not by the next order's confirmation timing out."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _direct(proto: _Protocol, request: bytes) -> asyncio.Future[Any]:
    """A handshake command on a connection not yet handed to callers."""
    assert proto.transport is not None
    call = _Call(asyncio.get_running_loop().create_future(), None, None)
    proto.transport.write(request)
    proto.pending.append(call)
    return call.future
