"""The TradingBot CRD: a valid structural CRD, examples that pass it, and CEL rules that say no
(and yes) to what they should, including `oldSelf` transitions."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.operator.crd_tools import ROOT, apply_defaults, cel_errors, crd, example, schema, schema_errors
from tradefleet.config import EXCHANGES, INTERVALS_MS, MODES

EXAMPLES = ("paper-btc-usdt.yaml", "testnet-eth-usdt.yaml")


@pytest.mark.parametrize(
    "path",
    [
        "crds/tradingbots.tradefleet.io.yaml",
        "crds/tradingfleets.tradefleet.io.yaml",
        "crds/kopf-peering.yaml",
    ],
)
def test_crd_files_validate_against_the_official_schemas(path: str):
    for doc in yaml.safe_load_all((ROOT / path).read_text()):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_crd_enums_match_what_the_bot_accepts():
    spec = schema()["properties"]["spec"]["properties"]
    assert spec["strategy"]["properties"]["interval"]["enum"] == list(INTERVALS_MS)
    assert spec["mode"]["enum"] == list(MODES)
    assert spec["exchange"]["enum"] == list(EXCHANGES)


def test_printer_columns_point_at_fields_the_schema_declares():
    version = crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"].split("[")[0].strip(".").split(".")
        node: dict[str, Any] = schema()
        for part in path:
            node = (
                node["properties"][part] if part != "metadata" else {"properties": {"creationTimestamp": {}}}
            )
        assert node is not None, column


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_pass_schema_and_cel_rules(name: str):
    body = apply_defaults(example(name))
    assert schema_errors(body) == []
    assert cel_errors(body) == []
    assert cel_errors(body, old=body) == []  # an unchanged re-apply is accepted


def bot(**spec: Any) -> dict[str, Any]:
    base = {"symbol": "BTC/USDT"}
    return apply_defaults({"apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingBot", "metadata": {"name": "b"},
                           "spec": {**base, **spec}})  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"strategy": {"shortWindow": 50, "longWindow": 50}}, "strategy.shortWindow must be smaller"),
        ({"strategy": {"shortWindow": 201}}, "strategy.shortWindow must be smaller"),
        ({"mode": "live"}, "mode testnet and live place real orders"),
        ({"mode": "testnet"}, "mode testnet and live place real orders"),
        ({"replicas": 2}, "replicas > 1 needs spec.redis"),
        ({"quoteAmount": "0.000"}, "quoteAmount must be greater than zero"),
        ({"resources": {"requests": {"cpu": "-1"}}}, "cpu must be a quantity that is not negative"),
        ({"resources": {"limits": {"cpu": "1E"}}}, "cpu must be between 1m and 256 cores"),
        ({"resources": {"requests": {"memory": "1k"}}}, "memory must be between 32Mi and 1Ti"),
        (
            {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
            "resources.requests.cpu is above resources.limits.cpu",
        ),
        (
            {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}},
            "resources.requests.memory is above resources.limits.memory",
        ),
        (
            {"resources": {"requests": {"memory": "512Mi"}}},
            "above the memory limit the operator sets by default",
        ),
        ({"image": "GHCR.io/acme/bot:1"}, "image must be a reference the kubelet can pull"),
        ({"image": "ghcr.io/Acme/bot:1"}, "image must be a reference the kubelet can pull"),
        ({"mode": "testnet", "credentialsSecretRef": {"name": "keys"},
          "exchangeUrls": {"rest": "http://sim:8765", "ws": "ws://sim:8765"}},
         "exchangeUrls is for paper mode only"),
    ],
)  # fmt: skip
def test_cel_rules_reject_what_the_schema_cannot_say(spec: dict[str, Any], expected: str):
    body = bot(**spec)
    assert schema_errors(body) == []  # structurally fine ...
    errors = cel_errors(body)
    assert len(errors) == 1 and expected in errors[0]  # ... but the rule says exactly why not


@pytest.mark.parametrize(
    "spec",
    [
        {"strategy": {"shortWindow": 1, "longWindow": 2}},
        {"mode": "live", "credentialsSecretRef": {"name": "binance-live"}},
        {"replicas": 3, "redis": {"secretKeyRef": {"name": "tradefleet-redis"}}},
        {"quoteAmount": "0.0001"},
        {"resources": {"requests": {"cpu": "1m", "memory": "32Mi"}, "limits": {"cpu": 256, "memory": "1Ti"}}},
        {
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"cpu": "0.5", "memory": "1Gi"},
            }
        },
        {"image": "registry.local:5000/acme/trade_fleet-bot:V1.2_rc@sha256:" + "a" * 64},
        {"image": "tradefleet-bot"},
        {"exchangeUrls": {"rest": "http://sim:8765", "ws": "ws://sim:8765"}},
    ],
)
def test_cel_rules_accept_valid_edges(spec: dict[str, Any]):
    assert cel_errors(bot(**spec)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"symbol": "ETH/USDT"}, "symbol is immutable"),
        ({"exchange": "kraken"}, "exchange is immutable"),
    ],
)
def test_market_identity_is_immutable_after_creation(change: dict[str, Any], expected: str):
    old = bot()
    new = copy.deepcopy(old)
    new["spec"].update(change)
    assert any(expected in e for e in cel_errors(new, old=old))
    assert all("immutable" not in e for e in cel_errors(new))  # any value is fine at creation


def test_other_fields_may_change_after_creation():
    old = bot()
    new = bot(
        paused=True, quoteAmount="250", strategy={"shortWindow": 10, "longWindow": 30, "interval": "1h"}
    )
    assert cel_errors(new, old=old) == []


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"symbol": "btc-usdt"}, "spec.symbol"),
        ({"mode": "yolo"}, "spec.mode"),
        ({"strategy": {"interval": "2m"}}, "spec.strategy.interval"),
        ({"strategy": {"shortWindow": 0}}, "spec.strategy.shortWindow"),
        ({"quoteAmount": "1e3"}, "spec.quoteAmount"),
        ({"replicas": 9}, "spec.replicas"),
        ({"resources": {"limits": {"memory": "lots"}}}, "spec.resources.limits.memory"),
        ({"exchangeUrls": {"rest": "ftp://sim", "ws": "ws://sim"}}, "spec.exchangeUrls.rest"),
        ({"exchangeUrls": {"rest": "http://sim"}}, "spec.exchangeUrls"),
    ],
)
def test_schema_rejects_malformed_fields(spec: dict[str, Any], path: str):
    errors = schema_errors(bot(**spec))
    assert any(e.startswith(path + ":") for e in errors), errors


def test_schema_defaults_fill_a_minimal_bot():
    spec = bot()["spec"]
    assert spec["strategy"] == {
        "type": "smaCrossover",
        "shortWindow": 50,
        "longWindow": 200,
        "interval": "1d",
    }
    assert (spec["mode"], spec["quoteAmount"], spec["replicas"], spec["paused"]) == ("paper", "100", 1, False)


def test_the_status_the_operator_writes_fits_the_crd_so_nothing_is_pruned():
    from tests.operator.test_status_pure import REPORT
    from tradingbot_operator.conditions import PHASES, Observation, build_status
    from tradingbot_operator.report import to_status

    status_schema = schema()["properties"]["status"]
    assert status_schema["properties"]["phase"]["enum"] == list(PHASES)
    deployment = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "replicas": 1}}
    status = build_status(Observation(generation=1, deployment=deployment), None, "2026-01-01T00:00:00Z")
    status["bot"] = {k: v for k, v in to_status(REPORT, bot="btc-usdt").items() if v is not None}
    body = {**bot(), "status": status}
    assert schema_errors(body) == []

    def declared(value: Any, node: dict[str, Any], path: str) -> None:
        # The API server prunes fields its structural schema does not declare: every field we write
        # must be declared, not merely allowed.
        if isinstance(value, dict):
            props = node.get("properties") or {}
            for key, sub in value.items():
                assert key in props, f"{path}.{key} is not in the CRD's status schema"
                declared(sub, props[key], f"{path}.{key}")
        elif isinstance(value, list):
            for item in value:
                declared(item, node["items"], path + "[]")

    declared(status, status_schema, "status")


def test_the_crd_image_rule_is_the_operators_image_grammar():
    """One grammar in two places (RE2 in the CRD, `re` in the operator): kept equal by this test."""
    from tradingbot_operator.spec import IMAGE_RE

    rule = schema()["properties"]["spec"]["properties"]["image"]["x-kubernetes-validations"][0]["rule"]
    assert rule == f'self.matches(r"{IMAGE_RE.pattern}")'
