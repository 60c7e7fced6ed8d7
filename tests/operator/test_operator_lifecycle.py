"""The real operator (kopf, in-process) against the emulated API server over real HTTP."""

from __future__ import annotations

from typing import Any

from tests.operator.conftest import CONFIGMAPS, DEPLOYMENTS, SERVICES, TB, eventually
from tests.operator.crd_tools import example


def cond(body: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for c in ((body or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return {}


async def test_creates_owned_children_then_reports_ready_and_position(cluster, start_operator, bot_reports):
    async with start_operator():
        tb = await cluster.create_bot(example("paper-btc-usdt.yaml"))
        uid = tb["metadata"]["uid"]
        dep = await eventually(lambda: cluster.get(DEPLOYMENTS, "bot-btc-usdt"), "the Deployment")
        cm = await eventually(lambda: cluster.get(CONFIGMAPS, "bot-btc-usdt-config"), "the ConfigMap")
        svc = await eventually(lambda: cluster.get(SERVICES, "bot-btc-usdt"), "the Service")
        for child in (dep, cm, svc):
            (ref,) = child["metadata"]["ownerReferences"]
            assert ref == {
                "apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingBot", "name": "btc-usdt",
                "uid": uid, "controller": True, "blockOwnerDeletion": True,
            }  # fmt: skip
        assert dep["spec"]["replicas"] == 1
        body = await eventually(lambda: cluster.get(TB, "btc-usdt"), "the TradingBot")
        await eventually(
            lambda: cond(cluster.get(TB, "btc-usdt"), "Progressing").get("status") == "True", "Progressing"
        )
        body = cluster.get(TB, "btc-usdt")
        assert body["status"]["observedGeneration"] == 1
        assert cond(body, "Ready")["status"] == "False"
        assert cluster.events("Created")

        # The Deployment controller reports the pod ready; the bot reports a position and a signal.
        cluster.set_deployment_status(
            "bot-btc-usdt",
            observedGeneration=1,
            replicas=1,
            updatedReplicas=1,
            readyReplicas=1,
            availableReplicas=1,
        )
        bot_reports.reports["btc-usdt"] = {
            "bot": "btc-usdt", "exchange": "binance", "symbol": "BTC/USDT", "mode": "paper", "role": "leader",
            "ready": True, "holder": "bot-btc-usdt-abc", "updated_at": 1_700_000_000_000,
            "position": {"qty": "0.00150000", "cost_quote": "99.90", "realized_pnl_quote": "0"},
            "last_signal": {"signal_id": "s-1", "side": "BUY", "candle_close_time": 1_699_999_999_999, "close": "66600.01"},
            "last_order": None,
        }  # fmt: skip
        await eventually(lambda: cond(cluster.get(TB, "btc-usdt"), "Ready").get("status") == "True", "Ready")
        body = await eventually(
            lambda: (b := cluster.get(TB, "btc-usdt")) and "bot" in b["status"] and b,
            "the bot's report in status",
        )
        assert body["status"]["phase"] == "Running"
        assert body["status"]["readyReplicas"] == 1
        assert body["status"]["bot"]["position"]["qty"] == "0.00150000"
        assert body["status"]["bot"]["lastSignal"]["side"] == "BUY"
        assert body["status"]["bot"]["holder"] == "bot-btc-usdt-abc"
