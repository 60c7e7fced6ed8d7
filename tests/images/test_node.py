"""Tier 2: real pods from our images on a real node (`scripts/cluster.sh up DIR --node`): kubelet
1.37.2 with containerd (Debian's, an instance of its own), Debian's CNI bridge on a private pod
subnet, kube-proxy for Services and CoreDNS for Service names, all on this machine.

The chain a user follows: the images built from our Dockerfiles are loaded into the node, `helm
install` of helm/tradefleet runs the operator pod (it reaches the API server through the
`kubernetes` Service with the chart's ServiceAccount) and Redis, and `helm test` runs its test pod,
which finds the operator by its Service's DNS name. The simulator runs as a pod, a paper TradingBot
pointed at it (`spec.exchangeUrls`) trades and reports through the operator into `kubectl get tb`,
a deleted bot pod comes back; two replicas sharing the chart's Redis lease and a store (FerretDB,
the MongoDB protocol, as a pod) lose their leader pod and the survivor trades on, each order once.

Where no node can run (not root, no containerd, another cluster's node on this machine) the tests
skip with the reason cluster.sh gave, except when TFTEST_REQUIRE_NODE=1 (CI sets it): then they fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from tests.images.conftest import TIMINGS, wait_for
from tests.plugins import kube as kube_plugin
from tests.plugins.kube import CLUSTER_SH, KubeCluster

# Slow: images built, a cluster and node started, images copied into containerd, pods awaited.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "tradefleet"
NODE_NAME = "tradefleet-node"


def _cluster_sh(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def node(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """A cluster of its own with the machine's node (the session's tier-1 control plane has none:
    its tests play the kubelet), our two images loaded into the node's containerd."""
    base = tmp_path_factory.mktemp("node-cluster")
    started = time.monotonic()
    tier1_report = kube_plugin._report["started"]
    try:
        cluster = kube_plugin._start(base, node=True)
    finally:
        kube_plugin._report["started"] = tier1_report
    try:
        unavailable = base / "node.unavailable"
        if unavailable.exists():
            reason = f"NO NODE, tier-2 tests NOT RUN: {unavailable.read_text().strip()}"
            if os.environ.get("TFTEST_REQUIRE_NODE") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        info = (cluster.get(f"/api/v1/nodes/{NODE_NAME}") or {}).get("status", {}).get("nodeInfo", {})
        TIMINGS.append(
            f"node: cluster with a Ready node in {time.monotonic() - started:.1f}s (kubelet"
            f" {info.get('kubeletVersion')}, {info.get('containerRuntimeVersion')}, kernel {info.get('kernelVersion')})"
        )
        loaded = time.monotonic()
        proc = _cluster_sh(
            "load",
            str(base),
            images["bot"],
            images["operator"],
            "redis:7.2",
            "tradefleet-test/ferretdb:1",
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr
        TIMINGS.append(f"node: images loaded in {time.monotonic() - loaded:.1f}s")
        yield cluster
    finally:
        cluster.http.close()
        _cluster_sh("down", str(base), timeout=300)


def pods(cluster: KubeCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    body = cluster.api("GET", f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": selector})
    items: list[dict[str, Any]] = body["items"]
    return items


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_pods(cluster: KubeCluster, ns: str, selector: str) -> list[dict[str, Any]]:
    """The pods of `selector` that are Ready and not being deleted."""
    return [p for p in pods(cluster, ns, selector) if ready(p) and not p["metadata"].get("deletionTimestamp")]


def wait_ready(
    cluster: KubeCluster, ns: str, selector: str, what: str, timeout: float, count: int = 1
) -> list[dict[str, Any]]:
    """Wait until `count` pods of `selector` are Ready (failing with `kubectl describe`), and return
    them."""
    return wait_for(  # type: ignore[no-any-return]
        what,
        lambda: (found := ready_pods(cluster, ns, selector)) and len(found) >= count and found,
        timeout,
        lambda: describe(cluster, ns),
    )


def describe(cluster: KubeCluster, ns: str) -> str:
    """What a person would look at when a wait times out: pods, events, the kubelet's last words."""
    out = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout
    out += cluster.kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False).stdout[-4000:]
    log = cluster.dir / "kubelet.log"
    if log.exists():
        out += "\n--- kubelet.log (last lines)\n" + "\n".join(log.read_text().splitlines()[-30:])
    return out


@pytest.fixture(scope="module")
def release(node: KubeCluster) -> Iterator[str]:
    """helm install of helm/tradefleet with the images built here, in a namespace of its own."""
    ns = node.namespace("node")
    out = node.helm(
        "install", "tf", str(CHART), "-n", ns,
        "--set", "mongodb.enabled=false",  # no MongoDB image can be made here
        "--set", "redis.persistence.enabled=false",  # no volume provisioner on this node
        "--set-string", "operator.image.tag=dev", "--set-string", "bots.image.tag=dev",
    ).stdout  # fmt: skip
    assert "STATUS: deployed" in out
    yield ns
    node.helm("uninstall", "tf", "-n", ns, "--wait", "--timeout", "120s", check=False)


def test_helm_install_runs_the_operator_and_redis_pods_and_helm_test_passes(
    node: KubeCluster, release: str
) -> None:
    ns = release
    installed = time.monotonic()

    operator = wait_ready(node, ns, "app.kubernetes.io/component=operator", "the operator pod Ready", 600)[0]
    assert operator["spec"]["nodeName"] == NODE_NAME
    (status,) = operator["status"]["containerStatuses"]
    assert status["image"].endswith("tradefleet-operator:dev")
    assert status["restartCount"] == 0, describe(node, ns)
    # The operator reached the API server from its pod through the `kubernetes` Service, with its
    # ServiceAccount's token: kopf logged in and read its KopfPeering (an RBAC refusal or an
    # unreachable server would show instead).
    # (A 429 "storage is (re)initializing" right after helm installed the CRD is retried by kopf.)
    logs = node.kubectl("logs", "-n", ns, operator["metadata"]["name"]).stdout
    assert "Initial authentication has finished" in logs, logs[-3000:]
    assert "Resuming operations after the pause" in logs, logs[-3000:]
    redis = wait_ready(node, ns, "app.kubernetes.io/component=redis", "the Redis pod Ready", 300)
    assert redis[0]["spec"]["nodeName"] == NODE_NAME
    TIMINGS.append(f"node: helm install to operator and Redis Ready in {time.monotonic() - installed:.1f}s")

    # The test pod finds the operator by its Service's name: CoreDNS, then kube-proxy's rules.
    tested = node.helm("test", "tf", "-n", ns, "--timeout", "5m", check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr + describe(node, ns)
    assert re.search(r"Phase:\s+Succeeded", tested.stdout), tested.stdout


SIM = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: sim}
spec:
  replicas: 1
  selector: {matchLabels: {app: sim}}
  template:
    metadata: {labels: {app: sim}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
      containers:
        - name: sim
          image: tradefleet-bot:dev
          imagePullPolicy: Never
          # Real BTCUSDT daily candles replayed at 4 a second, then looped: crossings within minutes.
          args: [sim, --host, 0.0.0.0, --port, "8765", --loop, --speed, "4", --depth-rate, "5",
                 --levels, "50"]
          ports: [{name: http, containerPort: 8765}]
          readinessProbe: {httpGet: {path: /api/v3/ping, port: http}, periodSeconds: 2}
          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
                            capabilities: {drop: [ALL]}}
          volumeMounts: [{name: tmp, mountPath: /tmp}]
      volumes: [{name: tmp, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: sim}
spec:
  selector: {app: sim}
  ports: [{name: http, port: 8765, targetPort: http}]
"""

BOT = {
    "apiVersion": "tradefleet.io/v1alpha1",
    "kind": "TradingBot",
    "metadata": {"name": "btc-usdt"},
    "spec": {
        "symbol": "BTC/USDT",
        "mode": "paper",
        "strategy": {"type": "smaCrossover", "shortWindow": 5, "longWindow": 20, "interval": "1d"},
        "quoteAmount": "100",
        # By the Service's short name: the pod's DNS search path (CoreDNS) completes it.
        "exchangeUrls": {"rest": "http://sim:8765", "ws": "ws://sim:8765"},
    },
}


def tradingbot(node: KubeCluster, ns: str) -> dict[str, Any]:
    body = node.get(f"/apis/tradefleet.io/v1alpha1/namespaces/{ns}/tradingbots/btc-usdt")
    assert body is not None
    return body


def test_a_paper_bot_trades_against_the_simulator_pod_and_a_deleted_pod_comes_back(
    node: KubeCluster, release: str
) -> None:
    ns = release
    node.kubectl("apply", "-n", ns, "-f", "-", stdin=SIM)
    wait_ready(node, ns, "app=sim", "the simulator pod Ready", 300)
    started = time.monotonic()
    node.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(BOT))
    selector = "app.kubernetes.io/instance=btc-usdt"

    first = wait_ready(node, ns, selector, "the bot pod Ready", 600)[0]
    assert first["spec"]["nodeName"] == NODE_NAME
    TIMINGS.append(f"node: TradingBot applied to bot pod Ready in {time.monotonic() - started:.1f}s")

    # The operator reads the bot's /status through its Service (DNS and kube-proxy again) and
    # shows it: after a crossing, the last signal and the position are in `kubectl get tb`.
    def signalled() -> dict[str, Any] | None:
        bot = tradingbot(node, ns).get("status", {}).get("bot") or {}
        return bot if (bot.get("lastSignal") or {}).get("side") else None

    report = wait_for("a signal in the TradingBot's status", signalled, 600,
                      lambda: json.dumps(tradingbot(node, ns).get("status"), indent=1) + describe(node, ns))  # fmt: skip
    assert report["holder"].startswith(first["metadata"]["name"] + ":")  # <pod>:<pid>:<token>
    shown = node.kubectl("get", "tb", "btc-usdt", "-n", ns).stdout
    header, row = shown.splitlines()[:2]
    columns = dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", row.strip()), strict=False))
    assert columns["LAST SIGNAL"] in ("BUY", "SELL"), shown
    assert columns["POSITION"] == report["position"]["qty"], shown

    # Delete the pod: the Deployment makes a new one, which warms up again from the simulator,
    # takes the lease and reports as the trading replica.
    node.kubectl("delete", "pod", "-n", ns, first["metadata"]["name"], "--wait=false")
    second = wait_for(
        "a new bot pod Ready",
        lambda: next(
            (p for p in ready_pods(node, ns, selector) if p["metadata"]["name"] != first["metadata"]["name"]),
            None,
        ),
        600,
        lambda: describe(node, ns),
    )
    assert second["spec"]["nodeName"] == NODE_NAME
    wait_for(
        "the new pod reported as the trading replica",
        lambda: (
            (tradingbot(node, ns).get("status", {}).get("bot") or {})
            .get("holder", "")
            .startswith(second["metadata"]["name"] + ":")
        ),
        300,
        lambda: json.dumps(tradingbot(node, ns).get("status"), indent=1),
    )


FERRETDB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: ferretdb}
spec:
  replicas: 1
  selector: {matchLabels: {app: ferretdb}}
  template:
    metadata: {labels: {app: ferretdb}}
    spec:
      automountServiceAccountToken: false
      containers:
        - name: ferretdb
          image: tradefleet-test/ferretdb:1
          imagePullPolicy: Never
          args: [--handler=sqlite, --sqlite-url=file:/data/db/, --state-dir=/data/db,
                 --listen-addr=0.0.0.0:27017, --debug-addr=-, --telemetry=disable, --log-level=warn]
          ports: [{name: mongo, containerPort: 27017}]
          readinessProbe: {tcpSocket: {port: mongo}, periodSeconds: 2}
          volumeMounts: [{name: data, mountPath: /data/db}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: ferretdb}
spec:
  selector: {app: ferretdb}
  ports: [{name: mongo, port: 27017, targetPort: mongo}]
"""


def test_two_replicas_share_the_lease_and_the_survivor_of_a_killed_leader_trades_exactly_once(
    node: KubeCluster, release: str
) -> None:
    """Two bot pods with the chart's Redis (the lease) and one store (FerretDB as a pod, the
    MongoDB protocol): one trades; kill its pod and the other takes over and trades the next
    crossings, each order once (the store is the witness: orders alternate BUY, SELL, ...)."""
    ns = release
    node.kubectl("apply", "-n", ns, "-f", "-", stdin=FERRETDB)
    if not [p for p in pods(node, ns, "app=sim")]:
        node.kubectl("apply", "-n", ns, "-f", "-", stdin=SIM)
    node.kubectl(
        "create", "secret", "generic", "pair-store", "-n", ns,
        "--from-literal=url=mongodb://ferretdb:27017/tradefleet",
    )  # fmt: skip
    store = wait_ready(node, ns, "app=ferretdb", "FerretDB Ready", 300)[0]
    bot = json.loads(json.dumps(BOT))
    bot["metadata"]["name"] = "pair"
    bot["spec"].update(
        replicas=2,
        store={"secretKeyRef": {"name": "pair-store"}},
        redis={"secretKeyRef": {"name": "tradefleet-redis"}},
    )
    node.kubectl("apply", "-n", ns, "-f", "-", stdin=json.dumps(bot))
    selector = "app.kubernetes.io/instance=pair"

    def live_pods() -> list[dict[str, Any]]:
        return [p for p in pods(node, ns, selector) if not p["metadata"].get("deletionTimestamp")]

    wait_ready(node, ns, selector, "two bot pods running", 600, count=2)

    def status() -> dict[str, Any]:
        body = node.get(f"/apis/tradefleet.io/v1alpha1/namespaces/{ns}/tradingbots/pair") or {}
        return body.get("status", {}).get("bot") or {}

    leader = wait_for(
        "a leader with a signal",
        lambda: (s := status()).get("holder") and (s.get("lastSignal") or {}).get("side") and s["holder"],
        600,
        lambda: json.dumps(status(), indent=1) + describe(node, ns),
    )
    leader_pod = leader.split(":")[0]
    assert leader_pod in {p["metadata"]["name"] for p in live_pods()}

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://{store['status']['podIP']}:27017/", serverSelectionTimeoutMS=10_000
    )
    try:
        orders = client["tradefleet"]["orders"]
        before = wait_for("an order in the store", lambda: orders.count_documents({"bot": "pair"}), 300)
        node.kubectl("delete", "pod", "-n", ns, leader_pod, "--grace-period=0", "--force")
        survivor = wait_for(
            "the other pod holding the lease",
            lambda: (h := status().get("holder", "")) and not h.startswith(leader_pod + ":") and h,
            300,
            lambda: json.dumps(status(), indent=1) + describe(node, ns),
        )
        wait_for("orders by the new leader", lambda: orders.count_documents({"bot": "pair"}) >= before + 2, 600,
                 lambda: json.dumps(status(), indent=1))  # fmt: skip
        docs = sorted(orders.find({"bot": "pair"}), key=lambda o: o["created_at"])
        sides = [o["side"] for o in docs]
        assert sides == ["BUY", "SELL"] * (len(sides) // 2) + ["BUY"] * (len(sides) % 2), sides
        assert survivor.split(":")[0] != leader_pod
    finally:
        client.close()
