"""The operator process's own HTTP endpoints on port 8080 (`http`): /livez, /readyz, /metrics.

/livez fails only when the kopf task has died (a restart helps then), /readyz until kopf has
started its handlers (listed by name in a 503 JSON body, like the bot's), /metrics serves the
injected registry. It refuses to serve anything else: no debug or admin routes.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tradingbot_operator.metrics import OperatorMetrics


def build_app(
    metrics: OperatorMetrics, *, alive: Callable[[], bool], ready: Callable[[], bool]
) -> web.Application:
    async def livez(_: web.Request) -> web.Response:
        if alive():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "failed", "failed": ["operator"]}, status=503)

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "failed", "failed": ["operator-started"]}, status=503)

    async def metrics_view(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
