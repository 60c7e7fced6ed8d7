"""A TradingBot spec edit during an order in flight, on the real control plane: the real operator
(chart ServiceAccount) renders the rollout, the real Deployment and ReplicaSet controllers carry it out,
and the test plays the kubelet with real `tradefleet bot` processes (there is no node here).

The played kubelet: every pod the ReplicaSet controller creates becomes a bot process (a replica named
by the pod, on one redis-server and one MongoDB-protocol store), reported Ready once it is warm (standby reconciled, or
leader); a pod the controller deletes gets SIGTERM, and once its process has exited the pod is removed,
as a kubelet confirms a graceful deletion. The processes run the test's settings (the simulator's
URLs, short leases) plus the drain bound from the bot.yaml the operator rendered.

The order is held open by the simulator (`hold_fills`), so "in flight" is a fact of the test, not a
race: the old leader gets SIGTERM while its order is open, must keep the lease and wait, and exits 0
only after the release fills it; the new pod takes over and trades on. Checked on the simulator (no
duplicate), on the shared store (one order per signal, sides alternating, no signal left without an
action) and in the control plane (the old pod was deleted only after the new one was Ready, and its
grace period is longer than the bot's bound on an order in flight)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import yaml

from tests.conftest import RedisServer
from tests.operator.conftest import DEPLOYMENTS, Cluster, eventually
from tests.plugins.kube import FAKE_NODE
from tests.risk.fleet import Bot, Sim, assert_one_order_per_signal, ms, wait, write_candles, zigzag

pytestmark = pytest.mark.slow
GRACE_S = 60


def now_ms() -> int:
    return int(time.time() * 1000)


class PlayedKubelet:
    """The node's part for one Deployment's pods, with real bot processes (see the module docstring)."""

    def __init__(
        self, cluster: Cluster, selector: str, tmp: Path, sim: Sim, redis_url: str, store_url: str
    ) -> None:
        self.cluster, self.selector, self.tmp, self.sim, self.redis_url = (
            cluster,
            selector,
            tmp,
            sim,
            redis_url,
        )
        # Old and new pods run at once on one store: MongoDB, as in a cluster (a SQLite file belongs
        # to one process; a second would wait as a cold standby and never turn Ready).
        self.store_url = store_url
        self.bots: dict[str, Bot] = {}
        self.ready_ms: dict[str, int] = {}
        self.deleting_ms: dict[str, int] = {}
        self.exit_codes: dict[str, int] = {}
        self.grace_s: dict[str, int] = {}
        # Its own HTTP session: it runs in a worker thread beside the test's requests.
        http = requests.Session()
        http.trust_env, http.verify, http.cert = False, cluster.kube.http.verify, cluster.kube.http.cert
        self.kube = dataclasses.replace(cluster.kube, http=http)

    def rendered(self, key: str) -> Any:
        """A key of the bot.yaml the operator rendered (the ConfigMap the pod mounts)."""
        cm = self.kube.api("GET", f"/api/v1/namespaces/{self.cluster.ns}/configmaps/bot-roll-config")
        return yaml.safe_load(cm["data"]["bot.yaml"])[key]

    def _api(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.kube.api(method, f"/api/v1/namespaces/{self.cluster.ns}/pods{path}", body, **kw)

    def sync(self) -> None:
        for pod in self._api("GET", "", params={"labelSelector": self.selector})["items"]:
            name, meta = pod["metadata"]["name"], pod["metadata"]
            bot = self.bots.get(name)
            if bot is None and not meta.get("deletionTimestamp"):
                self._api("POST", f"/{name}/binding", {
                    "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": FAKE_NODE}})  # fmt: skip
                self.bots[name] = Bot(self.tmp, self.sim, self.redis_url, "roll", replica=name, store_url=self.store_url,
                                      stop_order_grace_s=self.rendered("stop_order_grace_s"))  # fmt: skip
                self.grace_s[name] = int(pod["spec"]["terminationGracePeriodSeconds"])
            elif bot is None:
                continue
            elif meta.get("deletionTimestamp"):
                if name not in self.deleting_ms:
                    self.deleting_ms[name] = now_ms()
                    bot.kill(signal.SIGTERM)
                elif bot.proc.poll() is not None and name not in self.exit_codes:
                    self.exit_codes[name] = bot.proc.returncode
                    self._api("DELETE", f"/{name}", {"gracePeriodSeconds": 0}, ok=False)
            elif name not in self.ready_ms and bot.trading():
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self._api("PATCH", f"/{name}/status", {"status": {
                    "phase": "Running", "startTime": stamp, "conditions": [
                        {"type": t, "status": "True", "lastTransitionTime": stamp}
                        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]}},
                    headers={"Content-Type": "application/strategic-merge-patch+json"})  # fmt: skip
                self.ready_ms[name] = now_ms()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.sync)
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        for b in self.bots.values():
            b.stop()
        self.kube.http.close()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/run installs it)")
    s = Sim(tmp_path, write_candles(tmp_path / "zigzag.csv", zigzag(900, leg=4)), speed=1.0)
    try:
        yield s
    finally:
        s.stop()


async def until(check: Any, timeout: float, what: str) -> Any:
    return await asyncio.to_thread(wait, check, timeout, what)


async def test_a_spec_edit_during_an_order_in_flight_ends_with_it_final_and_one_order_per_signal(
    cluster: Cluster,
    start_operator: Any,
    sim: Sim,
    redis_server: RedisServer,
    tmp_path: Path,
    mongodb_url: str,
) -> None:
    store_url = urlunsplit(urlsplit(mongodb_url)._replace(path=f"/tf_roll_{uuid.uuid4().hex[:12]}"))
    manifest = {
        "apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingBot", "metadata": {"name": "roll"},
        "spec": {"symbol": "BTC/USDT", "mode": "paper", "redis": {"secretKeyRef": {"name": "redis"}},
                 "strategy": {"shortWindow": 2, "longWindow": 5, "interval": "1m"},
                 "risk": {"stopOrderGraceSeconds": GRACE_S}},
    }  # fmt: skip
    stop = asyncio.Event()
    kubelet: PlayedKubelet | None = None
    runner: asyncio.Task[None] | None = None
    async with start_operator():
        try:
            await cluster.create_bot(manifest)
            dep = await eventually(lambda: cluster.get(DEPLOYMENTS, "bot-roll"), "the Deployment", 60)
            assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
            labels = dep["spec"]["selector"]["matchLabels"]
            selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            kubelet = PlayedKubelet(cluster, selector, tmp_path, sim, redis_server.url, store_url)
            runner = asyncio.create_task(kubelet.run(stop))
            k = kubelet
            await eventually(lambda: len(k.ready_ms) == 1, "the first pod ready", 240)
            (old_pod,) = k.ready_ms
            old = k.bots[old_pod]
            await until(lambda: any(e["status"] == "FILLED" for e in old.events("order")), 240, "trading")

            # An order in flight, held open by the exchange; then the spec edit.
            sim.order_faults(hold_fills=True)
            before = len(old.created())
            await until(lambda: len(old.created()) > before, 240, "the old pod to send an order")
            in_flight = old.created()[-1]["client_order_id"]
            await cluster.patch_spec("roll", {"logLevel": "DEBUG"})

            # The controller surges a new pod, waits for it to be Ready, then deletes the old one.
            await eventually(lambda: old_pod in k.deleting_ms, "the old pod deleted by the rollout", 300)
            (new_pod,) = [p for p in k.bots if p != old_pod]
            assert k.deleting_ms[old_pod] >= k.ready_ms[new_pod], "old pod deleted before the new was Ready"
            await until(lambda: old.events("stopping"), 60, "the old pod to start stopping")
            open_orders = [o for o in sim.orders() if o["clientOrderId"] == in_flight]
            assert open_orders and open_orders[0]["status"] == "NEW", open_orders  # still in flight
            assert old.proc.poll() is None, "the old pod exited with its order in flight"
            assert k.grace_s[old_pod] > GRACE_S  # the kubelet would wait longer than the bot's bound

            sim.order_faults(hold_fills=False)  # the exchange fills it now
            await eventually(lambda: old_pod in k.exit_codes, "the old pod to exit", 120)
            assert k.exit_codes[old_pod] == 0
            fills = [
                e
                for e in old.events("order")
                if e["client_order_id"] == in_flight and e["status"] == "FILLED"
            ]
            stopped = old.events("stopped")
            assert fills and stopped and ms(fills[0]["time"]) <= ms(stopped[0]["time"]), (
                "exited before the fill"
            )
            assert old.events("orders_drained")[0]["settled"] is True
            new = k.bots[new_pod]
            released = [ms(e["time"]) for e in old.events("lease_released")]
            assert released, "the old pod exited without releasing the lease"

            def led() -> list[int]:
                return [ms(e["time"]) for e in new.events("lease") if e.get("state") == "leader"]

            # The new pod takes the released lease at its next attempt (its renew interval), which may
            # come after the old pod's exit has been seen here.
            await until(lambda: led() and led()[-1] >= released[0], 60, "the new pod to take the lease")
            led_ms = led()
            print(f"\nrollout on the control plane: SIGTERM -> exit {ms(stopped[0]['time']) - k.deleting_ms[old_pod]}"
                  f" ms (grace {k.grace_s[old_pod]} s); lease released -> new leader {led_ms[-1] - released[0]} ms")  # fmt: skip

            after = len(new.created())
            await until(lambda: len(new.created()) >= after + 2, 240, "the new pod to trade")
            sim.pause()
            await until(lambda: all(o["status"] == "FILLED" for o in sim.orders()), 60, "every order final")
        finally:  # inside the operator's block: kopf cancels the tasks born after it at its exit
            stop.set()
            if runner is not None:
                await runner
            if kubelet is not None:
                kubelet.stop()

    assert_one_order_per_signal(sim, old)
