"""The HTTP face of a process: `/livez`, `/readyz`, `/metrics`, `/status` on one port.

HTTP/1.1 on asyncio's streams, written here: five fixed GET paths, no request bodies, answers of a
few KiB. It was aiohttp's low-level server (`aiohttp.web_server.Server`) and before that
`aiohttp.web`; their request/response/protocol modules cost ~0.5 MiB of every bot's RSS (and keep
`html`, `http.server` and friends loaded), for what this file does in ~150 lines (issue #17's
import diet). The bot's aiohttp *client* is unaffected.

What the server does: keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`),
HEAD (the GET answer's headers, no body), gzip for `/metrics` when asked, a request head of at most
8 KiB (431 beyond), a short request body read and ignored (a larger one, or a chunked one, is
answered and the connection closed), 10 s to send a request head once it has begun and 75 s of idle
keep-alive (then the connection is closed), 400 for anything that is not an HTTP/1.x request.
`stop()` closes the port, closes idle connections, and lets an answer in flight finish (5 s).

Generic on purpose: it knows nothing about trading. The owner passes callables — `readiness()` returns
named checks `{name: (ok, detail)}`, `status()` returns a JSON-able dict, `liveness()` (optional,
usually `LoopMonitor.liveness`) returns checks like readiness — so the bot and the operator serve
the same endpoints with their own meaning.

What it refuses to do:
- run checks itself: the callables must answer from state the process already keeps (a probe that
  opens a database connection per request turns a slow database into a restart storm);
- hide a failing check: a callable that raises makes the endpoint fail (503/500) with the error in
  the body, never 200;
- serve anything but GET/HEAD, or write anything.
Decimals are rendered as strings in JSON (exact money, as the contract says).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from tradefleet.prom import Registry, choose_encoder

log = logging.getLogger(__name__)

MAX_HEAD = 8192  # request line and headers, bytes (aiohttp's limit was 8190 a line)
MAX_IGNORED_BODY = 65536  # a request body up to this is read and dropped; beyond, the connection closes
HEAD_TIMEOUT_S = 10.0  # to finish a request head once its first byte came
IDLE_TIMEOUT_S = 75.0  # keep-alive: a connection may wait this long for its next request (as aiohttp)
STOP_GRACE_S = 5.0  # an answer in flight at stop() may take this long to finish
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Content Too Large", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip
TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"

_INDEX = "/livez /readyz /metrics /status\n"

Checks = Mapping[str, tuple[bool, str]]
ChecksFn = Callable[[], Checks]


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(payload: Any) -> str:
    """JSON with Decimals as strings and enums as their values."""
    return json.dumps(payload, default=_json_default, separators=(",", ":"))


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query, percent-decoded
    headers: Mapping[str, str]  # names in lower case


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)


def _text(text: str, status: int = 200, **headers: str) -> Response:
    return Response(status, text.encode(), TEXT, dict(headers))


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(status, dumps(payload).encode(), JSON)


class _BadRequest(Exception):
    """A request this server cannot read: answered with `status`, then the connection is closed."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def parse_head(head: bytes) -> Request:
    """The request line and headers (`head` ends with the blank line), or _BadRequest."""
    try:
        text = head.decode("latin-1")
        line, *fields = text[:-4].split("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        raise _BadRequest(400, "not an HTTP request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0") or not method.isalpha() or not target:
        raise _BadRequest(400, f"unsupported request line {line[:100]!r}")
    headers: dict[str, str] = {}
    for f in fields:
        name, colon, value = f.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400, f"malformed header {f[:100]!r}")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    headers[":version"] = version
    return Request(method, unquote(target.partition("?")[0]), headers)


def _keep_alive(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.headers[":version"] == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _run_checks(fn: ChecksFn, what: str) -> tuple[bool, dict[str, Any]]:
    """Evaluate a checks callable; a raising callable is one failed check named after `what`."""
    try:
        checks = dict(fn())
    except Exception as e:  # a broken check must read as "not ok", never as a 500 that hides why
        log.warning("%s check raised", what, exc_info=True)
        checks = {what: (False, f"check raised {type(e).__name__}: {e}")}
    body = {name: {"ok": bool(ok), "detail": detail} for name, (ok, detail) in checks.items()}
    ok = all(v["ok"] for v in body.values())
    return ok, {"ok": ok, "failed": sorted(n for n, v in body.items() if not v["ok"]), "checks": body}


class BotHttpServer:
    """Serves the health, metrics and status endpoints; `port=0` binds a free port (see `.port`)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: Registry,
        readiness: ChecksFn,
        status: Callable[[], dict[str, Any]],
        liveness: ChecksFn | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.registry = registry
        self._readiness = readiness
        self._status = status
        self._liveness = liveness
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], list[bool]] = {}  # task -> [answering a request]
        self._port: int | None = None
        self._routes: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "/": self._index,
            "/livez": self._livez,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
            "/status": self._status_handler,
        }

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the HTTP server is not started")
        return self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._connection, self.host, self._requested_port, reuse_address=True, limit=MAX_HEAD
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("http server listening", extra={"event": "http_listening", "port": self._port})

    async def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()  # no new connections
        for task, busy in list(self._connections.items()):
            if not busy[0]:
                task.cancel()  # idle: waiting for a request that will not be answered now
        pending = set(self._connections)
        if pending:
            _, late = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        busy = [False]
        self._connections[task] = busy
        try:
            await self._serve(reader, writer, busy)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the peer went away, or stop() closed an idle connection
        except Exception:
            log.warning("http connection failed", exc_info=True)
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, busy: list[bool]
    ) -> None:
        while True:
            try:
                first = await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT_S)
                if not first:
                    return  # the peer closed its side between requests
                busy[0] = True
                rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
                request = parse_head(first + rest)
                body_read = await self._drop_body(reader, request)
            except TimeoutError:
                return
            except asyncio.IncompleteReadError:
                return  # closed mid-request
            except asyncio.LimitOverrunError:
                await self._write(writer, "GET", _text("431: request head over 8 KiB\n", 431), keep=False)
                return
            except _BadRequest as e:
                await self._write(writer, "GET", _text(f"{e.status}: {e}\n", e.status), keep=False)
                return
            keep = _keep_alive(request) and body_read
            await self._write(writer, request.method, await self._dispatch(request), keep=keep)
            busy[0] = False
            if not keep:
                return

    async def _drop_body(self, reader: asyncio.StreamReader, request: Request) -> bool:
        """Read and ignore a short body, so the next request on the connection starts clean; False
        for a chunked body, which is not read (the answer closes the connection)."""
        h = request.headers
        if "transfer-encoding" in h:
            return False
        try:
            length = int(h.get("content-length", "0"))
        except ValueError:
            raise _BadRequest(400, "Content-Length is not a number") from None
        if length < 0:
            raise _BadRequest(400, "negative Content-Length")
        if length > MAX_IGNORED_BODY:
            raise _BadRequest(413, f"a {length}-byte body to a GET/HEAD server")
        if length:
            await asyncio.wait_for(reader.readexactly(length), HEAD_TIMEOUT_S)
        return True

    async def _write(self, writer: asyncio.StreamWriter, method: str, resp: Response, *, keep: bool) -> None:
        reason = _REASONS.get(resp.status, "Unknown")
        head = [f"HTTP/1.1 {resp.status} {reason}", f"Content-Type: {resp.content_type}",
                f"Content-Length: {len(resp.body)}", f"Date: {formatdate(usegmt=True)}",
                "Server: tradefleet"]  # fmt: skip
        head += [f"{k}: {v}" for k, v in resp.headers.items()]
        if not keep:
            head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            writer.write(resp.body)
        await writer.drain()

    async def _dispatch(self, request: Request) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            return _text(f"404: {request.path} is not here; {_INDEX}", 404)
        if request.method not in ("GET", "HEAD"):
            return _text("405: GET or HEAD only\n", 405, Allow="GET, HEAD")
        return await route(request)

    async def _index(self, request: Request) -> Response:
        return _text(_INDEX)

    async def _livez(self, request: Request) -> Response:
        if self._liveness is None:
            return _json_response({"ok": True, "failed": [], "checks": {}})
        ok, body = _run_checks(self._liveness, "liveness")
        return _json_response(body, 200 if ok else 503)

    async def _readyz(self, request: Request) -> Response:
        ok, body = _run_checks(self._readiness, "readiness")
        return _json_response(body, 200 if ok else 503)

    async def _metrics(self, request: Request) -> Response:
        # Prometheus asks for OpenMetrics in Accept; curl and browsers get the classic text format.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encoder(self.registry)
        if "gzip" not in request.headers.get("accept-encoding", ""):
            return Response(200, body, content_type)
        gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip container
        return Response(200, gzip.compress(body) + gzip.flush(), content_type,
                        {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})  # fmt: skip

    async def _status_handler(self, request: Request) -> Response:
        try:
            payload = self._status()
            text = dumps(payload)
        except Exception as e:
            log.warning("status callable failed", exc_info=True)
            return _json_response({"error": f"{type(e).__name__}: {e}"}, 500)
        return Response(200, text.encode(), JSON)
