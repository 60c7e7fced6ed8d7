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


def posts(cluster, plural: str) -> int:
    return sum(
        1 for r in cluster.emulator._requests if r.method == "POST" and str(r.url.path).endswith("/" + plural)
    )


async def wait_generation(cluster, name: str, generation: int) -> dict[str, Any]:
    return await eventually(
        lambda: (
            (b := cluster.get(TB, name))
            and (b.get("status") or {}).get("observedGeneration") == generation
            and b
        ),
        f"observedGeneration {generation}",
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
        assert posts(cluster, "deployments") == 1
        assert cluster.events("Updated")


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
        assert cluster.events("Paused")
        cluster.set_deployment_status("bot-btc-usdt", observedGeneration=2, replicas=0)
        await eventually(
            lambda: cond(cluster.get(TB, "btc-usdt"), "Progressing").get("reason") == "ScaledDown",
            "scaled down",
        )
        assert op.metrics.bots.labels("Paused")._value.get() == 1

        await cluster.patch_spec("btc-usdt", {"paused": False})
        body = await wait_generation(cluster, "btc-usdt", 3)
        assert cluster.get(DEPLOYMENTS, "bot-btc-usdt")["spec"]["replicas"] == 1
        assert cond(body, "Paused")["status"] == "False"
        assert cluster.events("Resumed")


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
    version = cluster.get(DEPLOYMENTS, "bot-btc-usdt")["metadata"]["resourceVersion"]

    async with start_operator():
        # The restarted operator picks the bot up again: it reports readiness it has just seen.
        cluster.set_deployment_status(
            "bot-btc-usdt", observedGeneration=1, replicas=1, updatedReplicas=1, readyReplicas=1
        )
        await eventually(lambda: cond(cluster.get(TB, "btc-usdt"), "Ready").get("status") == "True", "Ready")
    assert posts(cluster, "deployments") == posts(cluster, "configmaps") == posts(cluster, "services") == 1
    assert cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]
    # set_deployment_status wrote through the emulator directly; no API patch touched the Deployment.
    assert not [
        r for r in cluster.emulator._requests if r.method == "PATCH" and "/deployments/" in str(r.url.path)
    ]
    assert cluster.get(DEPLOYMENTS, "bot-btc-usdt")["metadata"]["resourceVersion"] == version


async def test_invalid_spec_is_degraded_with_a_clear_message_and_nothing_deployed(cluster, start_operator):
    # The emulator has no CEL: this is the spec that slips past an API server without the rules.
    manifest = example("paper-btc-usdt.yaml")
    manifest["spec"]["strategy"].update(shortWindow=200, longWindow=50)
    async with start_operator() as op:
        await cluster.create_bot(manifest)
        body = await wait_generation(cluster, "btc-usdt", 1)
        degraded = cond(body, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
        assert (
            "spec.strategy.shortWindow (200) must be smaller than spec.strategy.longWindow (50)"
            in degraded["message"]
        )
        assert body["status"]["phase"] == "Degraded"
        assert cond(body, "Ready")["status"] == "False"
        assert (
            not cluster.named(DEPLOYMENTS) and not cluster.named(CONFIGMAPS) and not cluster.named(SERVICES)
        )
        (event,) = cluster.events("InvalidSpec")
        assert event["type"] == "Warning"
        assert op.metrics.reconciles.labels("invalid")._value.get() == 1

        await cluster.patch_spec("btc-usdt", {"strategy": {"shortWindow": 20}})
        body = await wait_generation(cluster, "btc-usdt", 2)
        assert cond(body, "Degraded")["status"] == "False"
        assert cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]


async def test_refuses_to_take_over_a_deployment_owned_by_someone_else(cluster, start_operator):
    owner = await cluster.request(
        "POST", "/api/v1/namespaces/bots/configmaps", {"metadata": {"name": "owner"}}
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    await cluster.request(
        "POST",
        "/apis/apps/v1/namespaces/bots/deployments",
        {"metadata": {"name": "bot-btc-usdt", "namespace": "bots", "ownerReferences": [ref]}, "spec": {}},
    )
    async with start_operator():
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        body = await wait_generation(cluster, "btc-usdt", 1)
        degraded = cond(body, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "ApplyRefused"
        assert "controlled by another owner" in degraded["message"]
        assert cluster.get(DEPLOYMENTS, "bot-btc-usdt")["spec"] == {}  # untouched
        assert cluster.events("ApplyRefused")


async def test_heals_a_deleted_deployment_and_a_deployment_scaled_by_hand(cluster, start_operator):
    async with start_operator():
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        first_uid = cluster.get(DEPLOYMENTS, "bot-btc-usdt")["metadata"]["uid"]

        # `kubectl scale --replicas=3` would start two more traders sharing an in-process lease.
        await cluster.request(
            "PATCH", "/apis/apps/v1/namespaces/bots/deployments/bot-btc-usdt", {"spec": {"replicas": 3}},
            "application/merge-patch+json",
        )  # fmt: skip
        await eventually(
            lambda: cluster.get(DEPLOYMENTS, "bot-btc-usdt")["spec"]["replicas"] == 1, "scale restored"
        )

        await cluster.request("DELETE", "/apis/apps/v1/namespaces/bots/deployments/bot-btc-usdt")
        recreated = await eventually(
            lambda: (
                (d := cluster.get(DEPLOYMENTS, "bot-btc-usdt")) and d["metadata"]["uid"] != first_uid and d
            ),
            "the Deployment to be re-created",
        )
        assert recreated["metadata"]["ownerReferences"][0]["name"] == "btc-usdt"


async def test_all_namespaces_mode_serves_bots_in_any_namespace(cluster, start_operator):
    async with start_operator(namespaces=()):
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        body = await wait_generation(cluster, "btc-usdt", 1)
        assert body["status"]["phase"] == "Progressing"
        assert cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]


async def test_lost_create_response_is_retried_without_a_duplicate_deployment(cluster, start_operator):
    # The API server stores the Deployment but the answer is a 500 (a lost response, as seen by
    # the operator). The retry must find it by name and hash, not create a second one.
    cluster.emulator["post /apis/apps/v1/namespaces/bots/deployments"][:1] << 500
    async with start_operator() as op:
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        assert op.metrics.errors.labels("temporary")._value.get() >= 1
    assert posts(cluster, "deployments") == 1  # the one that "failed"; the retry saw it was there
    assert cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]


async def test_unreachable_bot_keeps_status_without_a_report_and_counts_it(cluster, start_operator):
    async with start_operator() as op:
        await cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(cluster, "btc-usdt", 1)
        cluster.set_deployment_status(
            "bot-btc-usdt", observedGeneration=1, replicas=1, updatedReplicas=1, readyReplicas=1
        )
        await eventually(
            lambda: op.metrics.errors.labels("report")._value.get() >= 1, "a failed /status read"
        )
        body = cluster.get(TB, "btc-usdt")
        assert "bot" not in body["status"]
        assert cond(body, "Ready")["status"] == "True"  # readiness comes from the Deployment
