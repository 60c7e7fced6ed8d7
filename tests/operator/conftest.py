"""Operator fixtures: a real kube-apiserver (tests/plugins/kube.py) with the chart's ServiceAccount
and RBAC installed by the real helm CLI, the real operator in-process logged in with that
ServiceAccount's token, and a stand-in for the bots' /status endpoints (a real aiohttp server
serving contract reports).

`emulated_cluster` (kmock plus tests/operator/emulator.py) remains only for what a real server
cannot be made to do on demand: answer a create with a 500 after storing the object, and audit
every request the operator makes against operator/rbac.yaml."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml
from aiohttp import web
from kmock import ResourceInfo, Server

from tests.conftest import free_port
from tests.operator.crd_tools import apply_defaults
from tests.operator.emulator import ClusterEmulator
from tests.plugins.kube import ROOT, KubeCluster
from tradingbot_operator.cli import RunOptions, run_operator
from tradingbot_operator.metrics import OperatorMetrics
from tradingbot_operator.settings import OperatorSettings

CHART = ROOT / "helm" / "tradefleet"
NS = "bots"
TB = "tradefleet.io/v1alpha1/tradingbots"
DEPLOYMENTS = "apps/v1/deployments"
CONFIGMAPS = "v1/configmaps"
SERVICES = "v1/services"
EVENTS = "v1/events"
SERVICEMONITORS = "monitoring.coreos.com/v1/servicemonitors"
T = TypeVar("T")


@dataclass
class EmulatedCluster:
    """The emulated API server plus a client that talks to it over HTTP like kubectl does."""

    emulator: ClusterEmulator
    url: str
    session: aiohttp.ClientSession

    def get(self, resource: str, name: str, namespace: str = NS) -> dict[str, Any] | None:
        for (res, ns, n), obj in self.emulator.objects.items():
            if res == resource and ns == namespace and n == name and not obj.deleted:
                raw: dict[str, Any] = obj.raw
                return raw
        return None

    def named(self, resource: str, namespace: str = NS) -> list[str]:
        return sorted(
            name
            for (res, ns, name), obj in self.emulator.objects.items()
            if res == resource and ns == namespace and not obj.deleted
        )

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [
            obj.raw
            for (res, _, _), obj in self.emulator.objects.items()
            if res == EVENTS and not obj.deleted and obj.raw.get("reason") == reason
        ]

    async def request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Content-Type": content_type} if content_type else {}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as resp:
            data = await resp.json(content_type=None)
            assert resp.status < 300, f"{method} {path} -> {resp.status}: {data}"
            return data

    async def create_bot(self, manifest: dict[str, Any]) -> dict[str, Any]:
        body = apply_defaults(manifest)  # the API server applies the CRD's defaults
        body.setdefault("metadata", {})["namespace"] = NS
        result: dict[str, Any] = await self.request(
            "POST", f"/apis/tradefleet.io/v1alpha1/namespaces/{NS}/tradingbots", body
        )
        return result

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        path = f"/apis/tradefleet.io/v1alpha1/namespaces/{NS}/tradingbots/{name}"
        result: dict[str, Any] = await self.request(
            "PATCH", path, {"spec": spec}, "application/merge-patch+json"
        )
        return result

    async def delete_bot(self, name: str) -> None:
        await self.request("DELETE", f"/apis/tradefleet.io/v1alpha1/namespaces/{NS}/tradingbots/{name}")


def declare_resources(emulator: ClusterEmulator, *, service_monitors: bool) -> None:
    verbs = {"get", "list", "watch", "create", "patch", "update", "delete"}
    emulator.resources[TB] = ResourceInfo(
        kind="TradingBot", singular="tradingbot", namespaced=True, verbs=verbs,
        shortnames={"tb"}, subresources={"status"},
    )  # fmt: skip
    emulator.resources["tradefleet.io/v1alpha1/tradingfleets"] = ResourceInfo(
        kind="TradingFleet", singular="tradingfleet", namespaced=True, verbs=verbs,
        shortnames={"tfl"}, subresources={"status"},
    )  # fmt: skip
    emulator.resources[DEPLOYMENTS] = ResourceInfo(
        kind="Deployment", namespaced=True, verbs=verbs, subresources={"status"}
    )
    emulator.resources[CONFIGMAPS] = ResourceInfo(kind="ConfigMap", namespaced=True, verbs=verbs)
    emulator.resources[SERVICES] = ResourceInfo(kind="Service", namespaced=True, verbs=verbs)
    emulator.resources[EVENTS] = ResourceInfo(kind="Event", namespaced=True, verbs=verbs)
    # kopf's backbone: it waits for these to be discoverable even when it does not scan them.
    emulator.resources["v1/namespaces"] = ResourceInfo(kind="Namespace", namespaced=False, verbs=verbs)
    emulator.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs=verbs
    )
    emulator.resources["kopf.dev/v1/kopfpeerings"] = ResourceInfo(
        kind="KopfPeering", namespaced=True, verbs=verbs
    )
    if service_monitors:
        emulator.resources[SERVICEMONITORS] = ResourceInfo(
            kind="ServiceMonitor", namespaced=True, verbs=verbs
        )


def _path(resource: str, namespace: str, name: str = "") -> str:
    """`group/version/plural` (or `v1/plural`) to its namespaced API path."""
    parts = resource.split("/")
    prefix = "/api/v1" if len(parts) == 2 else f"/apis/{parts[0]}/{parts[1]}"
    return f"{prefix}/namespaces/{namespace}/{parts[-1]}" + (f"/{name}" if name else "")


@dataclass
class Cluster:
    """A namespace of the real control plane, read and written as the admin (the operator under
    test logs in with the chart's ServiceAccount instead, see `cluster`)."""

    kube: KubeCluster
    ns: str
    release: str
    service_account: str

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.kube.get(_path(resource, namespace or self.ns, name))

    def named(self, resource: str, namespace: str | None = None) -> list[str]:
        """Names of live objects, leaving out the chart release's own (its operator Deployment...)
        and the CA bundle kube-controller-manager publishes into every namespace."""
        selector = {"labelSelector": f"app.kubernetes.io/instance!={self.release}"}
        items = self.kube.api("GET", _path(resource, namespace or self.ns), params=selector)["items"]
        return sorted(
            i["metadata"]["name"]
            for i in items
            if not i["metadata"].get("deletionTimestamp") and i["metadata"]["name"] != "kube-root-ca.crt"
        )

    def events(self, reason: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.api("GET", _path(EVENTS, self.ns))["items"]
        return [e for e in items if e.get("reason") == reason]

    async def request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Content-Type": content_type} if content_type else {}
        return await asyncio.to_thread(self.kube.api, method, path, body, headers=headers)

    async def create_bot(self, manifest: dict[str, Any]) -> dict[str, Any]:
        body = {**manifest, "metadata": {**manifest.get("metadata", {}), "namespace": self.ns}}
        result: dict[str, Any] = await self.request("POST", _path(TB, self.ns), body)
        return result

    async def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "PATCH", _path(TB, self.ns, name), {"spec": spec}, "application/merge-patch+json"
        )
        return result

    async def delete_bot(self, name: str) -> None:
        await self.request("DELETE", _path(TB, self.ns, name))

    async def pods_ready(self, deployment: str) -> None:
        """Play the kubelet for the Deployment's pods (created by the real ReplicaSet controller):
        the real controllers then report them in the Deployment's status."""
        dep = await eventually(lambda: self.get(DEPLOYMENTS, deployment), f"Deployment {deployment}")
        labels = dep["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        await eventually(
            lambda: self.kube.make_ready(self.ns, selector) >= (dep["spec"].get("replicas") or 1),
            f"pods of {deployment}",
        )


@pytest.fixture
def cluster(kube: KubeCluster, kube_ns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """A namespace with the chart installed by `helm install` (its ServiceAccount, Role,
    RoleBinding and KopfPeering; no operator pod runs: there is no node), and $KUBECONFIG holding
    that ServiceAccount's token, so the operator started by the test has the chart's RBAC only."""
    release = kube_ns
    kube.helm(
        "install", release, str(CHART), "-n", kube_ns, "--skip-crds",
        "-f", str(CHART / "ci" / "minimal-values.yaml"),
    )  # fmt: skip
    accounts = kube.api("GET", f"/api/v1/namespaces/{kube_ns}/serviceaccounts")["items"]
    (account,) = [a["metadata"]["name"] for a in accounts if a["metadata"]["name"].endswith("-operator")]
    kubeconfig = kube.token_kubeconfig(kube_ns, account, tmp_path / "operator.kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return Cluster(kube, kube_ns, release, account)


@pytest.fixture
def service_monitors() -> bool:
    return False


@pytest.fixture
async def emulated_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service_monitors: bool
) -> AsyncIterator[EmulatedCluster]:
    async with ClusterEmulator() as emulator, Server(emulator) as server:
        declare_resources(emulator, service_monitors=service_monitors)
        url = str(server.url).rstrip("/")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emu", "cluster": {"server": url}}],
                    "users": [{"name": "emu", "user": {"token": "test"}}],
                    "contexts": [
                        {"name": "emu", "context": {"cluster": "emu", "user": "emu", "namespace": NS}}
                    ],
                    "current-context": "emu",
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        async with aiohttp.ClientSession() as session:
            # Warm up before any operator starts: kopf counts tasks born after its start as its own
            # and waits 5 s for them at exit; kmock's bus feeder and our keep-alive connection's
            # server task are born here instead.
            async with session.get(url + "/version") as resp:
                await resp.read()
            yield EmulatedCluster(emulator, url, session)


@dataclass
class BotReports:
    """Stands in for the bots' /status endpoints: tests put contract reports here."""

    port: int
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/status/{{namespace}}/{{name}}"


@pytest.fixture
async def bot_reports() -> AsyncIterator[BotReports]:
    reports = BotReports(port=free_port())

    async def status(request: web.Request) -> web.Response:
        report = reports.reports.get(request.match_info["name"])
        if report is None:
            return web.json_response({"error": "not running"}, status=503)
        return web.json_response(report)

    app = web.Application()
    app.router.add_get("/status/{namespace}/{name}", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", reports.port).start()
    try:
        yield reports
    finally:
        await runner.cleanup()


@dataclass
class RunningOperator:
    metrics: OperatorMetrics
    http_port: int
    task: asyncio.Task[None]


@pytest.fixture
def operator_settings(bot_reports: BotReports) -> OperatorSettings:
    return OperatorSettings(
        bot_image="registry.test/tradefleet-bot:test",
        status_interval_s=0.3,
        status_url_template=bot_reports.template,
        status_timeout_s=2.0,
    )


@pytest.fixture
def start_operator(
    request: pytest.FixtureRequest, operator_settings: OperatorSettings
) -> Callable[..., contextlib.AbstractAsyncContextManager[RunningOperator]]:
    """Start the operator in-process, serving the namespace of the test's cluster fixture."""
    if "emulated_cluster" in request.fixturenames:
        served: tuple[str, ...] = (NS,)
    else:
        served = (request.getfixturevalue("cluster").ns,)

    @contextlib.asynccontextmanager
    async def start(
        peering: str | None = None, priority: int = 0, namespaces: tuple[str, ...] | None = None
    ) -> AsyncIterator[RunningOperator]:
        namespaces = served if namespaces is None else namespaces
        stop, ready = asyncio.Event(), asyncio.Event()
        metrics = OperatorMetrics()
        options = RunOptions(
            namespaces=namespaces,
            peering=peering,
            priority=priority,
            http_host="127.0.0.1",
            http_port=free_port(),
        )
        task = asyncio.create_task(
            run_operator(options, operator_settings, metrics, stop_flag=stop, ready_flag=ready)
        )
        await eventually(lambda: ready.is_set() or task.done(), "the operator to start")
        if task.done():
            task.result()  # raise the start-up error
        try:
            yield RunningOperator(metrics, options.http_port, task)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)

    return start


async def eventually(check: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Poll a condition until it is truthy (generous timeout: the machine is shared and slow)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (KeyError, TypeError, IndexError, AssertionError) as e:
            last_error = e
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})"
            )
        await asyncio.sleep(0.05)
