"""High availability with the real CLI: two `tradefleet operator --peering` processes against the
real API server, each with the chart's ServiceAccount token and the KopfPeering the chart
installed; the higher priority one serves, the other takes over when it is killed."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import free_port
from tests.obs.botproc import process_env
from tests.operator.conftest import DEPLOYMENTS, eventually
from tests.operator.crd_tools import example
from tests.operator.test_operator_lifecycle import wait_generation

pytestmark = pytest.mark.slow
PEERINGS = "kopf.dev/v1/kopfpeerings"


async def reconciles(http: aiohttp.ClientSession, port: int) -> float:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith('tradefleet_operator_reconciles_total{result="ok"}'):
            return float(line.split()[-1])
    raise AssertionError("no reconcile counter in /metrics")


async def ready(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


@pytest.fixture
async def spawn(
    cluster, bot_reports, tmp_path: Path
) -> AsyncIterator[Callable[..., tuple[subprocess.Popen[bytes], int]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(priority: int) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = process_env(
            TRADEFLEET_BOT_IMAGE="registry.test/bot:1",
            TRADEFLEET_OPERATOR_STATUS_INTERVAL_S="0.5",
            TRADEFLEET_OPERATOR_STATUS_URL_TEMPLATE=bot_reports.template,
        )
        log = (tmp_path / f"operator-{priority}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradefleet.app.cli", "operator", "-n", cluster.ns, "--peering", "tradefleet",
             "--priority", str(priority), "--http-host", "127.0.0.1", "--http-port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(proc)
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_standby_operator_takes_over_when_the_serving_one_is_killed(cluster, spawn):
    assert cluster.get(PEERINGS, "tradefleet") is not None  # installed by the chart
    async with aiohttp.ClientSession() as http:
        leader, leader_port = spawn(priority=100)
        _standby, standby_port = spawn(priority=50)
        for port in (leader_port, standby_port):
            deadline = asyncio.get_running_loop().time() + 60
            while not await ready(http, port):
                assert asyncio.get_running_loop().time() < deadline, (
                    "an operator process did not become ready"
                )
                await asyncio.sleep(0.2)
        # Both announced in the peering object: the lower priority one has seen the higher one.
        await eventually(
            lambda: len((cluster.get(PEERINGS, "tradefleet") or {}).get("status") or {}) >= 2,
            "both operators in the peering object",
            timeout=60,
        )

        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        assert await reconciles(http, leader_port) >= 1
        assert await reconciles(http, standby_port) == 0  # paused by the higher priority peer

        leader.kill()  # no goodbye: the standby must notice the leader's peering entry expire
        await asyncio.to_thread(leader.wait, 30)

        await cluster.patch_spec("btc-usdt", {"quoteAmount": "42"})
        # kopf's peering lifetime is 60 s: the standby serves once the killed leader's entry expires.
        await wait_generation(cluster, "btc-usdt", 2, timeout=180)
        assert await reconciles(http, standby_port) >= 1
        config = cluster.get("v1/configmaps", "bot-btc-usdt-config")["data"]["bot.yaml"]
        assert "quote_amount: '42'" in config
        assert cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]
