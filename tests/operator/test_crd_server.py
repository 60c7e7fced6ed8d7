"""The TradingBot CRD on a real kube-apiserver (built from source, tests/plugins/kube.py).

The server is the authority the cel-python and jsonschema checks in test_crd.py stand in for: it
accepts the CRD at all (structural schema, CEL cost budget), applies every example, refuses every
invalid spec with the message a user reads from `kubectl apply`, fills defaults into the stored
object, keeps status behind its subresource and prints the columns of `kubectl get tb`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.operator.crd_tools import EXAMPLES, crd
from tests.plugins.kube import KubeCluster

TB_PATH = "/apis/tradefleet.io/v1alpha1/namespaces/{ns}/tradingbots/{name}"


def manifest(name: str = "b", **spec: Any) -> str:
    """JSON, so every value reaches the server with the type written here (YAML would read an
    unquoted 1e3 as a number: see the quoteAmount case below)."""
    body = {"apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingBot", "metadata": {"name": name},
            "spec": {"symbol": "BTC/USDT", **spec}}  # fmt: skip
    return json.dumps(body)


def test_the_server_accepts_the_crd_as_structural_and_established(kube: KubeCluster):
    for name in ("tradingbots.tradefleet.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        body = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        assert body is not None, name
        conditions = {c["type"]: c["status"] for c in body["status"]["conditions"]}
        assert conditions.get("Established") == "True", (name, conditions)
        assert conditions.get("NonStructuralSchema") != "True", (name, body["status"]["conditions"])


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_applies_and_is_stored_with_defaults(kube: KubeCluster, kube_ns: str, path):
    out = kube.kubectl("apply", "-n", kube_ns, "-f", str(path)).stdout
    assert "tradingbot.tradefleet.io/" in out and "created" in out
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    stored = kube.get(TB_PATH.format(ns=kube_ns, name=name))
    assert stored is not None
    assert stored["metadata"]["generation"] == 1
    assert {"replicas", "paused", "mode", "quoteAmount"} <= set(stored["spec"])  # defaulted


def test_defaults_appear_on_the_stored_object_of_a_minimal_bot(kube: KubeCluster, kube_ns: str):
    kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest("minimal"))
    spec = kube.get(TB_PATH.format(ns=kube_ns, name="minimal"))["spec"]  # type: ignore[index]
    assert spec["strategy"] == {
        "type": "smaCrossover",
        "shortWindow": 50,
        "longWindow": 200,
        "interval": "1d",
    }
    assert (spec["exchange"], spec["mode"], spec["quoteAmount"], spec["replicas"], spec["paused"]) == (
        "binance", "paper", "100", 1, False,
    )  # fmt: skip


# What `kubectl apply` prints for a refused bot: "The TradingBot "b" is invalid: <field>: <why>".
REFUSED = [
    ({"strategy": {"shortWindow": 50, "longWindow": 50}},
     "spec.strategy.shortWindow: Invalid value: strategy.shortWindow must be smaller than strategy.longWindow"),
    ({"mode": "live"},
     "mode testnet and live place real orders"),
    ({"replicas": 2}, "replicas > 1 needs spec.redis"),
    ({"quoteAmount": "0.000"}, 'spec.quoteAmount: Invalid value: "0.000": quoteAmount must be greater than zero'),
    ({"symbol": "btc-usdt"}, 'spec.symbol: Invalid value: "btc-usdt": spec.symbol in body should match'),
    ({"mode": "yolo"}, 'spec.mode: Unsupported value: "yolo": supported values:'),
    ({"strategy": {"interval": "2m"}}, 'spec.strategy.interval: Unsupported value: "2m"'),
    ({"strategy": {"shortWindow": 0}}, "spec.strategy.shortWindow: Invalid value: 0: spec.strategy.shortWindow in body should be greater than or equal to 1"),
    ({"quoteAmount": "1e3"}, 'spec.quoteAmount: Invalid value: "1e3": spec.quoteAmount in body should match'),
    ({"quoteAmount": 100}, 'spec.quoteAmount: Invalid value: "integer": spec.quoteAmount in body must be of type string'),
    ({"replicas": 9}, "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to"),
    ({"resources": {"limits": {"memory": "lots"}}}, "spec.resources.limits.memory"),
    ({"mode": "testnet", "credentialsSecretRef": {"name": "keys"},
      "exchangeUrls": {"rest": "http://sim:8765", "ws": "ws://sim:8765"}},
     "exchangeUrls is for paper mode only: a bot with credentials talks to the exchange itself"),
    ({"exchangeUrls": {"rest": "ftp://sim:8765", "ws": "ws://sim:8765"}},
     'spec.exchangeUrls.rest: Invalid value: "ftp://sim:8765": spec.exchangeUrls.rest in body should match'),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), REFUSED, ids=[str(s) for s, _ in REFUSED])
def test_invalid_specs_are_refused_with_the_message_kubectl_shows(
    kube: KubeCluster, kube_ns: str, spec: dict[str, Any], expected: str
):
    proc = kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest(**spec), check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith('The TradingBot "b" is invalid: '), proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert kube.get(TB_PATH.format(ns=kube_ns, name="b")) is None  # nothing stored


# Resource quantities and image references (#11): refused at admission by the CRD's CEL rules (the
# quantity library reads them as the kubelet does), not after the operator created the ConfigMap.
REFUSED_RESOURCES = [
    ({"resources": {"requests": {"cpu": "-1"}}},
     ("spec.resources.requests.cpu: Invalid value:", "cpu must be a quantity that is not negative")),
    ({"resources": {"limits": {"cpu": "1E"}}},
     ("spec.resources.limits.cpu: Invalid value:", "cpu must be between 1m and 256 cores")),
    ({"resources": {"requests": {"memory": "16Mi"}}},
     ("spec.resources.requests.memory: Invalid value:", "memory must be between 32Mi and 1Ti")),
    ({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}},
     ("spec.resources.requests.cpu: Invalid value:", "resources.requests.cpu is above resources.limits.cpu")),
    ({"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}},
     ("spec.resources.requests.memory: Invalid value:", "requests.memory is above resources.limits.memory")),
    ({"resources": {"requests": {"memory": "512Mi"}}},
     ("spec.resources.requests.memory: Invalid value:", "above the memory limit the operator sets by default")),
    ({"image": "GHCR.io/acme/bot:1"},
     ('spec.image: Invalid value: "GHCR.io/acme/bot:1": image must be a reference the kubelet can pull',)),
    ({"image": "ghcr.io/Acme/bot:1"},
     ('spec.image: Invalid value: "ghcr.io/Acme/bot:1": image must be a reference the kubelet can pull',)),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), REFUSED_RESOURCES, ids=[str(s) for s, _ in REFUSED_RESOURCES])
def test_bad_quantities_and_image_references_are_refused_at_admission_with_the_field_named(
    kube: KubeCluster, kube_ns: str, spec: dict[str, Any], expected: tuple[str, ...]
):
    proc = kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest(**spec), check=False)
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.startswith('The TradingBot "b" is invalid: '), proc.stderr
    for part in expected:
        assert part in proc.stderr, proc.stderr
    assert kube.get(TB_PATH.format(ns=kube_ns, name="b")) is None  # nothing stored


@pytest.mark.parametrize(
    "spec",
    [
        {"resources": {"requests": {"cpu": "1m", "memory": "32Mi"}, "limits": {"cpu": 256, "memory": "1Ti"}}},
        {
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"cpu": "0.5", "memory": "1Gi"},
            }
        },
        {"image": "registry.local:5000/acme/trade_fleet-bot:V1.2_rc@sha256:" + "a" * 64},
    ],
    ids=["bounds", "equal-request-and-limit", "image-with-port-tag-digest"],
)
def test_quantities_and_images_at_the_edges_are_accepted(
    kube: KubeCluster, kube_ns: str, spec: dict[str, Any]
):
    kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest("edge", **spec))
    assert kube.get(TB_PATH.format(ns=kube_ns, name="edge")) is not None


def test_unquoted_numbers_in_yaml_are_refused_as_not_strings(kube: KubeCluster, kube_ns: str):
    """What a user typing `quoteAmount: 1e3` (or 100) in YAML reads: a number is not a decimal string."""
    text = "apiVersion: tradefleet.io/v1alpha1\nkind: TradingBot\nmetadata: {name: b}\n"
    text += "spec:\n  symbol: BTC/USDT\n  quoteAmount: 1e3\n"
    proc = kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=text, check=False)
    assert proc.returncode == 1
    expected = 'spec.quoteAmount: Invalid value: "integer": spec.quoteAmount in body must be of type string'
    assert expected in proc.stderr, proc.stderr


def test_symbol_is_immutable_on_the_server(kube: KubeCluster, kube_ns: str):
    # (exchange has the same rule, but its enum has one value: the enum refuses any other first.)
    kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest())
    proc = kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest(symbol="ETH/USDT"), check=False)
    expected = 'spec.symbol: Invalid value: "ETH/USDT": symbol is immutable: create a new TradingBot for another pair'
    assert proc.returncode == 1 and expected in proc.stderr, proc.stderr
    ok = kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest(paused=True, quoteAmount="250"))
    assert "configured" in ok.stdout


def test_status_lives_behind_its_subresource_with_observed_generation(kube: KubeCluster, kube_ns: str):
    kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest())
    path = TB_PATH.format(ns=kube_ns, name="b")
    # A write to the main resource cannot set status; a status write cannot change spec.
    kube.api("PATCH", path, {"status": {"phase": "Running"}, "spec": {"paused": True}})
    body = kube.get(path)
    assert body is not None and "status" not in body and body["metadata"]["generation"] == 2
    kube.kubectl(
        "patch", "-n", kube_ns, "tradingbot", "b", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"phase": "Paused", "observedGeneration": 2}, "spec": {"paused": False}}),
    )  # fmt: skip
    body = kube.get(path)
    assert body is not None
    assert body["status"] == {"phase": "Paused", "observedGeneration": 2}
    assert (
        body["spec"]["paused"] is True and body["metadata"]["generation"] == 2
    )  # status writes don't bump it


def test_unknown_status_fields_are_pruned_by_the_structural_schema(kube: KubeCluster, kube_ns: str):
    kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest())
    path = TB_PATH.format(ns=kube_ns, name="b")
    kube.api("PATCH", path + "/status", {"status": {"phase": "Running", "madeUp": 1}})
    assert kube.get(path)["status"] == {"phase": "Running"}  # type: ignore[index]


def test_printer_columns_show_in_kubectl_get_tb(kube: KubeCluster, kube_ns: str):
    kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=manifest())
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "bot": {"position": {"qty": "0.0015"}, "lastSignal": {"side": "BUY"}},
    }  # fmt: skip
    kube.api("PATCH", TB_PATH.format(ns=kube_ns, name="b") + "/status", {"status": status})
    out = kube.kubectl("get", "tb", "-n", kube_ns).stdout.splitlines()
    columns = [c["name"].upper() for c in crd()["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert out[0].split() == ["NAME", *" ".join(columns).split()]
    assert out[1].split()[:7] == ["b", "BTC/USDT", "paper", "Running", "0.0015", "BUY", "True"]
