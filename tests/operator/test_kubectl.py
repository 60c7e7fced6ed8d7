"""The user's path: `kubectl apply -f crds/examples/...` and `kubectl patch`, with the real kubectl
binary against the emulated API server, while the real operator runs."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest

from tests.operator.conftest import DEPLOYMENTS, NS, TB, eventually
from tests.operator.crd_tools import EXAMPLES
from tests.operator.test_operator_lifecycle import wait_generation

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


async def kubectl(*args: str) -> str:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--request-timeout=20s", "-n", NS, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


async def test_kubectl_apply_runs_a_bot_and_kubectl_patch_pauses_it(cluster, start_operator):
    async with start_operator():
        await kubectl("apply", "--validate=false", "-f", str(EXAMPLES / "paper-btc-usdt.yaml"))
        await eventually(lambda: cluster.get(DEPLOYMENTS, "bot-btc-usdt"), "the Deployment")
        await wait_generation(cluster, "btc-usdt", 1)

        await kubectl("patch", "tradingbot", "btc-usdt", "--type=merge", "-p", '{"spec": {"paused": true}}')
        await wait_generation(cluster, "btc-usdt", 2)
        body: dict[str, Any] = json.loads(await kubectl("get", "tradingbot", "btc-usdt", "-o", "json"))
        assert body["status"]["phase"] == "Paused"
        assert cluster.get(DEPLOYMENTS, "bot-btc-usdt")["spec"]["replicas"] == 0

        await kubectl("delete", "tradingbot", "btc-usdt", "--wait=false")
        await eventually(lambda: cluster.get(TB, "btc-usdt") is None, "the TradingBot to be gone")
