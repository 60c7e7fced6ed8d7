"""Resource quantities and image references a cluster would refuse or never schedule are refused by
the operator's spec checks, with the field named, before anything is created (#11).

Before: negative quantities, `1E` CPUs (10^18 cores), requests above the limits the pod gets (the
operator's default memory limit included) and image references with upper-case registries passed the
CRD schema, CEL and the operator (now the CRD's CEL rules refuse them at admission too, and the
operator's checks remain for a spec that slipped past an older CRD); a 422 came back only for the Deployment, after the ConfigMap had
been created, or the pod never pulled.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.operator.conftest import CONFIGMAPS, DEPLOYMENTS, SERVICES
from tests.operator.crd_tools import example
from tests.operator.test_operator_lifecycle import cond, wait_generation
from tradefleet.errors import ConfigError
from tradingbot_operator.spec import parse_spec, quantity_value


def spec_with(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = example("paper-btc-usdt.yaml")["spec"]
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resources": {"requests": {"cpu": "-1"}}}, "spec.resources.requests.cpu '-1' is outside what a bot pod"),
        ({"resources": {"limits": {"cpu": "1E"}}}, "spec.resources.limits.cpu '1E' is outside what a bot pod"),
        ({"resources": {"requests": {"memory": "0"}}}, "spec.resources.requests.memory '0' is outside"),
        ({"resources": {"limits": {"memory": "5Pi"}}}, "spec.resources.limits.memory '5Pi' is outside"),
        ({"resources": {"requests": {"memory": "512Mi"}}},
         "spec.resources.requests.memory '512Mi' is above the limit '256Mi' the operator sets by default"),
        ({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
         "spec.resources.requests.cpu '2' is above the limit '500m'; raise spec.resources.limits.cpu"),
        ({"image": "Registry.Example.com/bot:1"}, "spec.image 'Registry.Example.com/bot:1' is not an image"),
        ({"image": "ghcr.io/Acme/bot:1"}, "spec.image 'ghcr.io/Acme/bot:1' is not an image reference"),
        ({"image": "ghcr.io/acme/bot:"}, "spec.image 'ghcr.io/acme/bot:' is not an image reference"),
        ({"image": "ghcr.io//bot"}, "spec.image 'ghcr.io//bot' is not an image reference"),
    ],
)  # fmt: skip
def test_specs_a_cluster_would_refuse_or_never_schedule_are_refused_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        parse_spec("btc-usdt", "default", spec_with(**changes))
    assert message in str(e.value)


@pytest.mark.parametrize(
    "changes",
    [
        {
            "resources": {
                "requests": {"cpu": "250m", "memory": "200Mi"},
                "limits": {"cpu": 1, "memory": "512Mi"},
            }
        },
        {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
        {"image": "ghcr.io/acme/tradefleet-bot:1.2"},
        {"image": "localhost:5000/tradefleet/bot@sha256:" + "a" * 64},
        {"image": "tradefleet-bot:Dev_1"},  # tags may have upper case
    ],
)
def test_ordinary_resources_and_images_still_pass(changes: dict[str, Any]) -> None:
    parse_spec("btc-usdt", "default", spec_with(**changes))


def test_quantities_are_read_as_kubernetes_reads_them() -> None:
    assert quantity_value("100m") == quantity_value("0.1") == quantity_value("1e-1")
    assert (
        quantity_value("1Gi") == 1024**3 and quantity_value("1G") == 10**9 and quantity_value("1E") == 10**18
    )


async def test_bad_image_is_degraded_before_anything_is_created(emulated_cluster, start_operator) -> None:
    # The emulator has no CEL: this is the spec that slips past an older CRD without the rules (the
    # real server refuses it at admission: test_bad_image_and_quantity_are_refused_at_admission).
    cluster = emulated_cluster
    manifest = example("paper-btc-usdt.yaml")
    manifest["spec"]["image"] = "Registry.Example.com/tradefleet/bot:1"
    manifest["spec"]["resources"] = {"requests": {"memory": "512Mi"}}
    async with start_operator():
        await cluster.create_bot(manifest)
        body = await wait_generation(cluster, "btc-usdt", 1)
        degraded = cond(body, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
        assert "spec.image" in degraded["message"] and "spec.resources.requests.memory" in degraded["message"]
        assert (
            not cluster.named(DEPLOYMENTS) and not cluster.named(CONFIGMAPS) and not cluster.named(SERVICES)
        )


async def test_bad_image_and_quantity_are_refused_at_admission(cluster) -> None:
    """With the CRD's CEL rules the real server refuses the same spec before the operator sees it."""
    manifest = example("paper-btc-usdt.yaml")
    manifest["spec"]["image"] = "Registry.Example.com/tradefleet/bot:1"
    manifest["spec"]["resources"] = {"requests": {"memory": "512Mi"}}
    with pytest.raises(AssertionError, match="422") as e:
        await cluster.create_bot(manifest)
    assert "spec.image: Invalid value" in str(e.value) and "spec.resources.requests.memory" in str(e.value)
    assert not cluster.named(DEPLOYMENTS) and not cluster.named(CONFIGMAPS)
