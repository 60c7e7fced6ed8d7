"""The HTTP face of a process: `/livez`, `/readyz`, `/metrics`, `/status` on one port (aiohttp).

On aiohttp's low-level server (`aiohttp.web_server.Server` on `loop.create_server`), not its
application framework: five fixed GET paths need no router, and `aiohttp.web` (application, URL
dispatcher, runner, file responses) costs ~1.3 MiB more per process (issue #17's import diet).

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
import enum
import json
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response
from aiohttp.web_server import Server
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

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


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(text=dumps(payload), status=status, content_type="application/json")


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
        registry: CollectorRegistry,
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
        self._handler: Server | None = None
        self._port: int | None = None
        self._routes = {
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
        # access_log=None: probes every few seconds would drown the JSON log in noise.
        handler = Server(self._dispatch, access_log=None)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(handler, self.host, self._requested_port, reuse_address=True)
        self._handler = handler
        self._port = int(self._server.sockets[0].getsockname()[1])
        log.info("http server listening", extra={"event": "http_listening", "port": self._port})

    async def stop(self) -> None:
        if self._server is not None and self._handler is not None:
            server, handler = self._server, self._handler
            self._server = self._handler = None
            server.close()
            await handler.shutdown(timeout=5.0)  # connections in flight finish their answer
            await server.wait_closed()

    async def _dispatch(self, request: BaseRequest) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            return Response(status=404, text=f"404: {request.path} is not here; {_INDEX}")
        if request.method not in ("GET", "HEAD"):
            return Response(status=405, text="405: GET or HEAD only\n", headers={"Allow": "GET, HEAD"})
        return await route(request)

    async def _index(self, request: BaseRequest) -> Response:
        return Response(text=_INDEX)

    async def _livez(self, request: BaseRequest) -> Response:
        if self._liveness is None:
            return _json_response({"ok": True, "failed": [], "checks": {}})
        ok, body = _run_checks(self._liveness, "liveness")
        return _json_response(body, 200 if ok else 503)

    async def _readyz(self, request: BaseRequest) -> Response:
        ok, body = _run_checks(self._readiness, "readiness")
        return _json_response(body, 200 if ok else 503)

    async def _metrics(self, request: BaseRequest) -> Response:
        # Prometheus asks for OpenMetrics in Accept; curl and browsers get the classic text format.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        resp = Response(body=encoder(self.registry), headers={"Content-Type": content_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            resp.enable_compression()
        return resp

    async def _status_handler(self, request: BaseRequest) -> Response:
        try:
            payload = self._status()
            text = dumps(payload)
        except Exception as e:
            log.warning("status callable failed", exc_info=True)
            return _json_response({"error": f"{type(e).__name__}: {e}"}, 500)
        return Response(text=text, content_type="application/json")
