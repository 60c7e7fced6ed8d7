"""What a real API server cannot be made to do on demand, against the kmock emulator: store a spec
that skipped the CRD's CEL rules (as an older CRD would), answer a create with a 500 after storing
the object, and run an all-namespaces operator without sharing the real control plane's namespaces
with every other test. Everything else runs against the real server (test_operator_lifecycle.py)."""

from __future__ import annotations

from tests.operator.conftest import CONFIGMAPS, DEPLOYMENTS, SERVICES
from tests.operator.crd_tools import example
from tests.operator.test_operator_lifecycle import cond, wait_generation


def posts(cluster, plural: str) -> int:
    return sum(
        1 for r in cluster.emulator._requests if r.method == "POST" and str(r.url.path).endswith("/" + plural)
    )


async def test_invalid_spec_is_degraded_with_a_clear_message_and_nothing_deployed(
    emulated_cluster, start_operator
):
    # The emulator has no CEL: this is the spec that slips past an API server without the rules.
    manifest = example("paper-btc-usdt.yaml")
    manifest["spec"]["strategy"].update(shortWindow=200, longWindow=50)
    async with start_operator() as op:
        await emulated_cluster.create_bot(manifest)
        body = await wait_generation(emulated_cluster, "btc-usdt", 1)
        degraded = cond(body, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
        assert (
            "spec.strategy.shortWindow (200) must be smaller than spec.strategy.longWindow (50)"
            in degraded["message"]
        )
        assert body["status"]["phase"] == "Degraded"
        assert cond(body, "Ready")["status"] == "False"
        assert (
            not emulated_cluster.named(DEPLOYMENTS)
            and not emulated_cluster.named(CONFIGMAPS)
            and not emulated_cluster.named(SERVICES)
        )
        (event,) = emulated_cluster.events("InvalidSpec")
        assert event["type"] == "Warning"
        assert op.metrics.reconciles.labels("invalid")._value.get() == 1

        await emulated_cluster.patch_spec("btc-usdt", {"strategy": {"shortWindow": 20}})
        body = await wait_generation(emulated_cluster, "btc-usdt", 2)
        assert cond(body, "Degraded")["status"] == "False"
        assert emulated_cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]


async def test_all_namespaces_mode_serves_bots_in_any_namespace(emulated_cluster, start_operator):
    async with start_operator(namespaces=()):
        await emulated_cluster.create_bot(example("paper-btc-usdt.yaml"))
        body = await wait_generation(emulated_cluster, "btc-usdt", 1)
        assert body["status"]["phase"] == "Progressing"
        assert emulated_cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]


async def test_lost_create_response_is_retried_without_a_duplicate_deployment(
    emulated_cluster, start_operator
):
    # The API server stores the Deployment but the answer is a 500 (a lost response, as seen by
    # the operator). The retry must find it by name and hash, not create a second one.
    emulated_cluster.emulator["post /apis/apps/v1/namespaces/bots/deployments"][:1] << 500
    async with start_operator() as op:
        await emulated_cluster.create_bot(example("paper-btc-usdt.yaml"))
        await wait_generation(emulated_cluster, "btc-usdt", 1)
        assert op.metrics.errors.labels("temporary")._value.get() >= 1
    assert posts(emulated_cluster, "deployments") == 1  # the one that "failed"; the retry saw it was there
    assert emulated_cluster.named(DEPLOYMENTS) == ["bot-btc-usdt"]
