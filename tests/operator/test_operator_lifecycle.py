"""The real operator (kopf, in-process) against a real kube-apiserver and kube-controller-manager,
logged in with the chart's ServiceAccount token: its RBAC, the server's validation, garbage
collection and the Deployment controller are the real ones."""

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
        await eventually(
            lambda: cluster.events("Created"), "a Created event"
        )  # kopf posts events in the background

        # The pod becomes ready (the Deployment controller reports it); the bot reports a position.
        await cluster.pods_ready("bot-btc-usdt")
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


CHILDREN = ((DEPLOYMENTS, "bot-btc-usdt"), (CONFIGMAPS, "bot-btc-usdt-config"), (SERVICES, "bot-btc-usdt"))


async def wait_generation(cluster, name: str, generation: int, timeout: float = 30.0) -> dict[str, Any]:
    return await eventually(
        lambda: (
            (b := cluster.get(TB, name))
            and (b.get("status") or {}).get("observedGeneration") == generation
            and b
        ),
        f"observedGeneration {generation}",
        timeout,
    )


async def test_spec_change_patches_deployment_config_and_advances_observed_generation(
    cluster, start_operator
):
    async with start_operator():
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        before = cluster.get(DEPLOYMENTS, "bot-btc-usdt")
        checksum = before["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

        patched = await cluster.patch_spec(
            "btc-usdt", {"strategy": {"shortWindow": 20}, "quoteAmount": "250"}
        )
        assert patched["metadata"]["generation"] == 2
        body = await wait_generation(cluster, "btc-usdt", 2)

        assert all(c["observedGeneration"] == 2 for c in body["status"]["conditions"])
        config = cluster.get(CONFIGMAPS, "bot-btc-usdt-config")["data"]["bot.yaml"]
        assert "short_window: 20" in config and "quote_amount: '250'" in config
        after = cluster.get(DEPLOYMENTS, "bot-btc-usdt")
        assert (
            after["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum
        )  # pods roll
        assert after["metadata"]["uid"] == before["metadata"]["uid"]  # patched, not replaced
        assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
        assert cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]
        await eventually(
            lambda: cluster.events("Updated"), "a Updated event"
        )  # kopf posts events in the background


async def test_pause_scales_to_zero_with_paused_condition_then_resume_restores_replicas(
    cluster, start_operator
):
    async with start_operator() as op:
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)

        await cluster.patch_spec("btc-usdt", {"paused": True})
        body = await wait_generation(cluster, "btc-usdt", 2)
        assert cluster.get(DEPLOYMENTS, "bot-btc-usdt")["spec"]["replicas"] == 0
        assert cond(body, "Paused")["status"] == "True"
        assert cond(body, "Ready")["reason"] == "Paused"
        assert body["status"]["phase"] == "Paused"
        await eventually(
            lambda: cluster.events("Paused"), "a Paused event"
        )  # kopf posts events in the background
        # The real Deployment controller scales the ReplicaSet down and reports it.
        await eventually(
            lambda: cond(cluster.get(TB, "btc-usdt"), "Progressing").get("reason") == "ScaledDown",
            "scaled down",
        )
        assert op.metrics.bots.labels("Paused")._value.get() == 1

        await cluster.patch_spec("btc-usdt", {"paused": False})
        body = await wait_generation(cluster, "btc-usdt", 3)
        assert cluster.get(DEPLOYMENTS, "bot-btc-usdt")["spec"]["replicas"] == 1
        assert cond(body, "Paused")["status"] == "False"
        await eventually(
            lambda: cluster.events("Resumed"), "a Resumed event"
        )  # kopf posts events in the background


async def test_delete_releases_the_bot_and_children_go_with_their_owner(cluster, start_operator):
    async with start_operator():
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        assert cluster.get(DEPLOYMENTS, "bot-btc-usdt") is not None

        await cluster.delete_bot("btc-usdt")
        await eventually(lambda: cluster.get(TB, "btc-usdt") is None, "the TradingBot to be gone")
        # Nothing deleted them by name: the garbage collector follows the ownerReferences.
        await eventually(
            lambda: not any(cluster.named(r) for r in (DEPLOYMENTS, CONFIGMAPS, SERVICES)), "children gone"
        )


async def test_restart_resumes_without_duplicating_or_rewriting_children(cluster, start_operator):
    async with start_operator():
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
    before = {r: cluster.get(r, n)["metadata"] for r, n in CHILDREN}

    async with start_operator():
        # The restarted operator picks the bot up again: it reports readiness it has just seen.
        await cluster.pods_ready("bot-btc-usdt")
        await eventually(lambda: cond(cluster.get(TB, "btc-usdt"), "Ready").get("status") == "True", "Ready")
    after = {r: cluster.get(r, n)["metadata"] for r, n in CHILDREN}
    assert cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]
    for r, _ in CHILDREN:  # the same objects, never written again (controllers write only status)
        assert after[r]["uid"] == before[r]["uid"]
        assert after[r].get("generation") == before[r].get("generation")
        assert after[r]["annotations"] == before[r]["annotations"]
    for r in (CONFIGMAPS, SERVICES):
        assert after[r]["resourceVersion"] == before[r]["resourceVersion"]


async def test_refuses_to_take_over_a_deployment_owned_by_someone_else(cluster, start_operator):
    owner = await cluster.request(
        "POST", f"/api/v1/namespaces/{cluster.ns}/configmaps", {"metadata": {"name": "owner"}}
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    labels = {"app": "someone-else"}
    theirs = await cluster.request(
        "POST",
        f"/apis/apps/v1/namespaces/{cluster.ns}/deployments",
        {"metadata": {"name": "bot-btc-usdt", "ownerReferences": [ref]},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "c", "image": "someone/else:1"}]}}}},
    )  # fmt: skip
    async with start_operator():
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        body = await wait_generation(cluster, "btc-usdt", 1)
        degraded = cond(body, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "ApplyRefused"
        assert "controlled by another owner" in degraded["message"]
        untouched = cluster.get(DEPLOYMENTS, "bot-btc-usdt")
        assert untouched["spec"] == theirs["spec"] and untouched["metadata"]["generation"] == 1
        await eventually(
            lambda: cluster.events("ApplyRefused"), "a ApplyRefused event"
        )  # kopf posts events in the background


async def test_heals_a_deleted_deployment_and_a_deployment_scaled_by_hand(cluster, start_operator):
    async with start_operator():
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        first_uid = cluster.get(DEPLOYMENTS, "bot-btc-usdt")["metadata"]["uid"]

        # `kubectl scale --replicas=3` would start two more traders sharing an in-process lease.
        await cluster.request(
            "PATCH", f"/apis/apps/v1/namespaces/{cluster.ns}/deployments/bot-btc-usdt", {"spec": {"replicas": 3}},
            "application/merge-patch+json",
        )  # fmt: skip
        await eventually(
            lambda: cluster.get(DEPLOYMENTS, "bot-btc-usdt")["spec"]["replicas"] == 1, "scale restored"
        )

        await cluster.request("DELETE", f"/apis/apps/v1/namespaces/{cluster.ns}/deployments/bot-btc-usdt")
        recreated = await eventually(
            lambda: (
                (d := cluster.get(DEPLOYMENTS, "bot-btc-usdt")) and d["metadata"]["uid"] != first_uid and d
            ),
            "the Deployment to be re-created",
        )
        assert recreated["metadata"]["ownerReferences"][0]["name"] == "btc-usdt"


async def test_unreachable_bot_keeps_status_without_a_report_and_counts_it(cluster, start_operator):
    async with start_operator() as op:
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        await cluster.pods_ready("bot-btc-usdt")
        await eventually(
            lambda: op.metrics.errors.labels("report")._value.get() >= 1, "a failed /status read"
        )
        # Readiness comes from the Deployment: the status patch lands after the failed read is counted.
        body = await eventually(
            lambda: (b := cluster.get(TB, "btc-usdt")) and cond(b, "Ready").get("status") == "True" and b,
            "Ready",
        )
        assert "bot" not in body["status"]


async def test_the_charts_role_is_the_authority_a_missing_verb_stops_the_operator(cluster, start_operator):
    """The operator runs with the chart's ServiceAccount token: take `create` on Deployments out of
    the chart's Role and the real API server refuses the call (403, retried as temporary: a human
    may fix RBAC; the retry comes a minute later, too slow to wait for here)."""
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{cluster.ns}/roles/{cluster.release}-tradefleet-operator-bots"
    role = cluster.kube.api("GET", path)
    rules = [dict(r) for r in role["rules"]]
    for rule in rules:
        if "deployments" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    cluster.kube.api("PATCH", path, {"rules": rules})
    async with start_operator() as op:
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await eventually(lambda: op.metrics.errors.labels("temporary")._value.get() >= 1, "a refused create")
        assert cluster.get(DEPLOYMENTS, "bot-btc-usdt") is None
        denied = cluster.kube.api(
            "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {"spec": {"user": f"system:serviceaccount:{cluster.ns}:{cluster.service_account}",
                      "resourceAttributes": {"namespace": cluster.ns, "verb": "create", "group": "apps",
                                             "resource": "deployments"}}},
        )  # fmt: skip
        assert denied["status"]["allowed"] is False
