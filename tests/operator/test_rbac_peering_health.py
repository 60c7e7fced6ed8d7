"""The operator as deployed: HA through kopf peering, its own endpoints, and RBAC that allows
exactly the calls it makes (every call from a full lifecycle is checked against operator/rbac.yaml
on the emulator; the real API server enforces the chart's RBAC in every real-cluster test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import yaml

from tests.operator.conftest import DEPLOYMENTS, SERVICEMONITORS, TB, eventually
from tests.operator.crd_tools import example
from tests.operator.test_operator_lifecycle import wait_generation

RBAC = Path(__file__).resolve().parents[2] / "operator" / "rbac.yaml"
FLEETS = "tradefleet.io/v1alpha1/tradingfleets"


def rbac_rules() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    return [rule for d in docs if d["kind"] in ("ClusterRole", "Role") for rule in d["rules"]]


def verb_of(request: Any) -> str:
    method = str(request.method.value).upper()
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]


def allowed(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_rbac_manifest_is_valid_and_grants_no_wildcards_secrets_or_deletes():
    for doc in yaml.safe_load_all(RBAC.read_text()):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    for rule in rbac_rules():
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        assert "delete" not in rule["verbs"]


@pytest.mark.parametrize("service_monitors", [True])
async def test_peered_operator_runs_a_bot_with_service_monitor_and_every_call_is_allowed_by_rbac(
    emulated_cluster, start_operator
):
    # The emulator records every request, so each call is checked against operator/rbac.yaml (the
    # plain-manifest install); the chart's RBAC is enforced by the real server in the other tests.
    cluster = emulated_cluster
    await cluster.request(
        "POST", "/apis/kopf.dev/v1/namespaces/bots/kopfpeerings", {"metadata": {"name": "tradefleet"}}
    )
    async with start_operator(peering="tradefleet"):
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        monitor = await eventually(lambda: cluster.get(SERVICEMONITORS, "bot-btc-usdt"), "the ServiceMonitor")
        assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
        assert monitor["metadata"]["ownerReferences"][0]["kind"] == "TradingBot"
        # A TradingFleet too (this operator has no Redis: it says so in status, which is a call to audit).
        await cluster.request(
            "POST", "/apis/tradefleet.io/v1alpha1/namespaces/bots/tradingfleets",
            {"apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingFleet", "metadata": {"name": "default"},
             "spec": {"halted": True, "reason": "audit"}},
        )  # fmt: skip
        fleet = await eventually(
            lambda: (cluster.get(FLEETS, "default") or {}).get("status", {}).get("conditions"), "fleet status"
        )
        assert {c["type"]: c["reason"] for c in fleet}["Synced"] == "NoRedis"
        await cluster.patch_spec("btc-usdt", {"paused": True})
        await wait_generation(cluster, "btc-usdt", 2)
        await cluster.delete_bot("btc-usdt")
        await eventually(lambda: cluster.get(TB, "btc-usdt") is None, "the TradingBot to be gone")
        # kopf announced itself in the peering object: replicas would see each other there.
        peering = cluster.get("kopf.dev/v1/kopfpeerings", "tradefleet")
        assert peering.get("status"), "the operator did not register in the peering object"

    rules = rbac_rules()
    calls = set()
    for r in cluster.emulator._requests:
        agent = r.headers.get("User-Agent", "")
        if (
            not agent.startswith(("kopf/", "OpenAPI-Generator/"))
            or r.resource is None
            or not r.resource.plural
        ):
            continue  # the test's own calls, and discovery (open to every authenticated client)
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        calls.add((r.resource.group, resource, verb_of(r)))
    assert ("tradefleet.io", "tradingfleets/status", "patch") in calls
    assert ("apps", "deployments", "create") in calls and (
        "tradefleet.io",
        "tradingbots/status",
        "patch",
    ) in calls
    denied = sorted(c for c in calls if not allowed(rules, *c))
    assert not denied, f"calls operator/rbac.yaml does not allow: {denied}"


async def test_operator_serves_livez_readyz_and_its_metrics(cluster, start_operator):
    async with start_operator() as op, aiohttp.ClientSession() as http:
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        base = f"http://127.0.0.1:{op.http_port}"
        for path in ("/livez", "/readyz"):
            async with http.get(base + path) as resp:
                assert resp.status == 200, path
        async with http.get(base + "/metrics") as resp:
            text = await resp.text()
        assert 'tradefleet_operator_reconciles_total{result="ok"} 1.0' in text
        assert 'tradefleet_operator_bots{phase="Progressing"} 1.0' in text
        assert cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]
