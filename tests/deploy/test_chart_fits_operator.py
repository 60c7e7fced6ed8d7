"""The chart and the operator agree: the example TradingBots, rendered by the operator's real pure
renderer with the settings the chart's ConfigMap gives it, produce bot pods that the chart's
NetworkPolicies and PodMonitor select, on the port they open, with the image and Secrets the
chart provides. A rename on either side fails here instead of in a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, MONITORING_APIS, ROOT, find, install, objects, validation_errors
from tradingbot_operator.render import render
from tradingbot_operator.settings import OperatorSettings

EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))


def _chart_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    answer = install(values or {}, apis=MONITORING_APIS)
    assert answer["ok"], answer.get("error")
    return objects(answer["releases"][0])


def _rendered(example: Path, chart_objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (config,) = find(chart_objs, "ConfigMap", "tf-tradefleet-operator")
    settings = OperatorSettings.from_env(config["data"])
    body = yaml.safe_load(example.read_text())
    body["metadata"] = {**body["metadata"], "namespace": "tradefleet", "uid": "0000-test"}
    return render(body, settings, service_monitor=True).objects()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_tradingbots_for_the_chart_crd(example: Path) -> None:
    bot = yaml.safe_load(example.read_text())
    crd = yaml.safe_load((CHART / "crds" / "tradingbots.tradefleet.io.yaml").read_text())
    (version,) = [
        v for v in crd["spec"]["versions"] if f"{crd['spec']['group']}/{v['name']}" == bot["apiVersion"]
    ]
    assert version["served"] and version["storage"]
    jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"]).validate(bot)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_bot_pods_are_selected_by_the_charts_policies_and_monitor(example: Path) -> None:
    chart_objs = _chart_objects({"monitoring": {"podMonitor": {"enabled": True}}})
    bot_objs = _rendered(example, chart_objs)
    (deployment,) = find(bot_objs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (policy,) = find(chart_objs, "NetworkPolicy", "tf-tradefleet-bots")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    (monitor,) = find(chart_objs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports.get("http") == 8080, "NetworkPolicy ingress and the PodMonitor use the port named http"
    # Database pods admit these bots, from the namespaces the operator watches.
    (mongo_policy,) = find(chart_objs, "NetworkPolicy", "tf-tradefleet-mongodb")
    (peer,) = mongo_policy["spec"]["ingress"][0]["from"]
    assert peer["podSelector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_bots_get_the_charts_image_and_secrets(example: Path) -> None:
    chart_objs = _chart_objects()
    bot_objs = _rendered(example, chart_objs)
    (deployment,) = find(bot_objs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    spec = yaml.safe_load(example.read_text())["spec"]
    if "image" not in spec:
        assert container["image"] == "tradefleet-bot:0.1.0"
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    chart_secrets = {s["metadata"]["name"]: set(s.get("data", {})) for s in find(chart_objs, "Secret")}
    for env_name in ("TRADEFLEET_STORE_URL", "REDIS_URL"):
        ref = refs[env_name]
        assert ref["key"] in chart_secrets[ref["name"]], (
            f"{env_name} points at {ref}, which the chart does not make"
        )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_operator_rendered_children_validate_like_the_charts_objects(example: Path) -> None:
    bot_objs = _rendered(example, _chart_objects())
    assert [p for o in bot_objs for p in validation_errors(o)] == []
