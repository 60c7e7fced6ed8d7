"""Fixtures for the observability tests: a real Prometheus server and an HTTP client.

`prometheus` starts Debian's `prometheus` binary on a free loopback port with its own config and
storage in tmp (never the packaged service on :9090), scraping whatever targets the test names.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import free_port
from tradefleet.metrics import BotMetrics
from tradefleet.web.http import BotHttpServer
from tradefleet.web.process_metrics import LoopMonitor, install_process_metrics


class Prometheus:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, targets: list[str], *, scrape_interval: str = "1s") -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed (apt-get install prometheus); .ci/run installs it")
        config = self.tmp / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {scrape_interval}\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            "  - job_name: tradefleet\n"
            "    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        (self.tmp / "data").mkdir(exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={self.tmp / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                async with session.get(f"{self.url}/-/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    async def query(self, session: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
        async with session.get(f"{self.url}/api/v1/query", params={"query": promql}) as r:
            body = await r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def wait_for(
        self,
        session: aiohttp.ClientSession,
        promql: str,
        accept: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Poll an instant query until `accept(result)`; fail with the last result."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = await self.query(session, promql)
            if accept(result):
                return result
            await asyncio.sleep(0.5)
        raise AssertionError(f"{promql!r} never satisfied the condition; last result: {result}")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path / "prom")
    server.tmp.mkdir()
    yield server
    server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def values(result: list[dict[str, Any]]) -> dict[str, float]:
    """Instant-vector result as {label-string: value}."""
    out: dict[str, float] = {}
    for series in result:
        labels = ",".join(f"{k}={v}" for k, v in sorted(series["metric"].items()) if k != "__name__")
        out[labels] = float(series["value"][1])
    return out


@pytest.fixture
async def endpoint(metrics: BotMetrics) -> AsyncIterator[BotHttpServer]:
    """A BotHttpServer on a free port serving `metrics` plus the process collectors."""
    install_process_metrics(metrics.registry)
    metrics.set_identity(bot="btc-usdt", exchange="binance", symbol="BTC/USDT", mode="paper", interval="1m")
    monitor = LoopMonitor(metrics, interval=0.1)
    server = BotHttpServer(
        host="127.0.0.1", port=0, registry=metrics.registry,
        readiness=lambda: {"book": (True, "in sync")}, status=lambda: {"bot": "btc-usdt"},
        liveness=monitor.liveness,
    )  # fmt: skip
    await server.start()
    monitor.start()
    yield server
    await monitor.stop()
    await server.stop()
