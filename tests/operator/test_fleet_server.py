"""TradingFleet on the real kube-apiserver: the server refuses invalid fleets with the user's message,
and the real operator (logged in with the chart's ServiceAccount token, so a missing RBAC verb fails)
mirrors a fleet into a real redis-server where real `tradefleet bot` processes read it.

The main test: three bots of scope `desk` and one of scope `other` trade on the simulator; `kubectl
apply` of a TradingFleet `desk` with `halted: true` stops every `desk` bot (each logs the halt, creates
no order after it, and stores its refused signals with the fleet's reason) while the `other` bot keeps
trading; the halt holds with the operator stopped (the bots read Redis, not the operator); `kubectl
patch` to `halted: false` lets them trade again. The time from `kubectl apply` to each bot refusing
is measured (the bots' own log clocks against the test's) and printed, not asserted: the machine is
shared, and the guarantee is structural (a bot that has not read the switch in `risk_stale_ms` opens
nothing; see DESIGN.md)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import RedisServer
from tests.operator.conftest import BotReports, Cluster, eventually
from tests.plugins.kube import ROOT, KubeCluster
from tests.risk.fleet import Bot, Sim, ms, wait, write_candles, zigzag
from tradingbot_operator.settings import OperatorSettings

REASON = "pytest: venue incident"


def fleet_manifest(name: str = "desk", **spec: Any) -> str:
    body = {"apiVersion": "tradefleet.io/v1alpha1", "kind": "TradingFleet", "metadata": {"name": name},
            "spec": spec}  # fmt: skip
    return json.dumps(body)


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("desk", {"flatten": True}, "flatten closes every open position as part of a halt: set halted: true"),
        ("desk", {"limits": {"maxFleetQuote": "lots"}}, 'must be a decimal string of quote currency, e.g. "5000"'),
        ("desk", {"limits": {"maxFleetQuote": -5}}, "spec.limits.maxFleetQuote: Invalid value"),
        ("desk", {"reason": "x" * 201}, "spec.reason: Too long: may not be more than 200"),
        ("desk", {"halted": "yes"}, 'spec.halted: Invalid value: "string": spec.halted in body must be of type boolean'),
        ("desk.a", {}, "a TradingFleet's name is its risk scope"),
    ],
)  # fmt: skip
def test_the_server_refuses_an_invalid_fleet_with_the_users_message(
    kube: KubeCluster, kube_ns: str, name: str, spec: dict[str, Any], message: str
) -> None:
    proc = kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=fleet_manifest(name, **spec), check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_a_valid_fleet_is_stored_with_defaults_and_listed_with_its_columns(kube: KubeCluster, kube_ns: str):
    kube.kubectl("apply", "-n", kube_ns, "-f", "-", stdin=fleet_manifest(limits={"maxFleetQuote": "5000"}))
    stored = kube.get(f"/apis/tradefleet.io/v1alpha1/namespaces/{kube_ns}/tradingfleets/desk")
    assert stored is not None
    assert stored["spec"] == {
        "halted": False,
        "flatten": False,
        "reason": "",
        "limits": {"maxFleetQuote": "5000"},
    }
    header = kube.kubectl("get", "tradingfleets", "-n", kube_ns).stdout.splitlines()[0].split()
    assert header == ["NAME", "HALTED", "REASON", "EXPOSURE", "DRAWDOWN", "BOTS", "SYNCED", "AGE"]
    assert (
        kube.kubectl("get", "tfl", "-n", kube_ns, "-o", "name").stdout.strip()
        == "tradingfleet.tradefleet.io/desk"
    )
    example = ROOT / "crds" / "examples" / "fleet" / "default.yaml"
    out = kube.kubectl("apply", "-n", kube_ns, "-f", str(example)).stdout
    assert "tradingfleet.tradefleet.io/default created" in out


@pytest.fixture
def operator_settings(bot_reports: BotReports, redis_server: RedisServer) -> OperatorSettings:
    return OperatorSettings(
        bot_image="registry.test/tradefleet-bot:test",
        status_interval_s=0.5,
        status_url_template=bot_reports.template,
        status_timeout_s=2.0,
        redis_url=redis_server.url,
    )


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[Sim, list[Bot], Bot]]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/run installs it)")
    sim = Sim(tmp_path, write_candles(tmp_path / "zigzag.csv", zigzag(900)), speed=1.5)
    desk = [Bot(tmp_path, sim, redis_server.url, f"desk-{i}", risk_scope="desk") for i in range(3)]
    other = Bot(tmp_path, sim, redis_server.url, "outsider", risk_scope="other")
    try:
        yield sim, desk, other
    finally:
        for b in [*desk, other]:
            b.stop()
        sim.stop()


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """A blocking wait on the bots (log files, SQLite) off the event loop the operator runs on."""
    return await asyncio.to_thread(wait, check, timeout, what)


def refused(b: Bot) -> list[dict[str, Any]]:
    """The signals `b` stored as refused by the fleet's halt, with its reason."""
    return [s for s in b.rows("signals") if str(s["action"]).startswith(f"risk: halted (fleet: {REASON}")]


@pytest.mark.slow
async def test_a_halted_tradingfleet_stops_every_bot_of_its_scope_even_with_the_operator_down(
    cluster: Cluster, start_operator: Any, redis_server: RedisServer, fleet: tuple[Sim, list[Bot], Bot]
) -> None:
    sim, desk, other = fleet
    kube, ns = cluster.kube, cluster.ns
    path = f"/apis/tradefleet.io/v1alpha1/namespaces/{ns}/tradingfleets/desk"
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    await until(lambda: all(b.created() for b in [*desk, other]), 240, "every bot trading")

    async with start_operator():
        apply_ms = int(time.time() * 1000)
        await asyncio.to_thread(
            kube.kubectl, "apply", "-n", ns, "-f", "-",
            stdin=fleet_manifest(halted=True, reason=REASON, limits={"maxFleetQuote": "100000"}),
        )  # fmt: skip
        body = await eventually(
            lambda: (b := kube.get(path)) and (b.get("status") or {}).get("haltId") and b, "status.haltId", 60
        )
        halt = json.loads(r.hget("tradefleet:risk:desk:halts", "*") or "{}")
        assert halt["halt_id"] == body["status"]["haltId"]
        assert halt["by"] == f"TradingFleet {ns}/desk spec.halted" and halt["reason"] == REASON
        assert r.hgetall("tradefleet:risk:desk:limits") == {"max_fleet_quote": "100000"}
        assert r.hget("tradefleet:risk:other:halts", "*") is None  # another scope is untouched

        def seen(b: Bot) -> int | None:
            ev = [e for e in b.events("risk_halt_seen") if e["halt_id"] == halt["halt_id"]]
            return ms(ev[0]["time"]) if ev else None

        await until(lambda: all(seen(b) for b in desk), 60, "every desk bot to see the fleet halt")
        await until(lambda: all(refused(b) for b in desk), 240, "a refused signal stored by every desk bot")
        for b in desk:
            late = [e for e in b.created() if ms(e["time"]) >= (seen(b) or 0)]
            assert late == [], f"{b.name} created orders after it saw the halt: {late}"
            st = b.status()
            assert st is not None and st["risk"]["halted"]
            assert st["risk"]["halts"][0]["by"] == f"TradingFleet {ns}/desk spec.halted"
            assert st["risk"]["fleet_limits"] == {"max_fleet_quote": "100000"}
        after = max(seen(b) or 0 for b in desk)
        await until(
            lambda: any(ms(e["time"]) > after for e in other.created()), 240, "the other scope trading"
        )
        delays = sorted((seen(b) or 0) - apply_ms for b in desk)
        print(f"\nTradingFleet halt: kubectl apply -> operator wrote Redis {halt['at_ms'] - apply_ms} ms; "
              f"-> each bot refusing (ms): {delays}")  # fmt: skip

        body = await eventually(
            lambda: (b := kube.get(path)) and b["status"].get("exposureQuote") is not None and b, "status", 60
        )
        conds = {c["type"]: c for c in body["status"]["conditions"]}
        assert (conds["Halted"]["status"], conds["Halted"]["reason"]) == ("True", "FleetSpec")
        assert conds["Synced"]["status"] == "True"
        row = (await asyncio.to_thread(kube.kubectl, "get", "tradingfleets", "-n", ns)).stdout.splitlines()[1]
        assert row.split()[:4] == ["desk", "True", "pytest:", "venue"], row

    # The operator is down: the halt is in Redis, every desk bot keeps refusing.
    counts = {b.name: len(refused(b)) for b in desk}
    await until(
        lambda: all(len(refused(b)) > counts[b.name] for b in desk), 240, "refusals without the operator"
    )
    assert all(ms(e["time"]) < (seen(b) or 0) for b in desk for e in b.created()), "an order while halted"

    async with start_operator():
        before = {b.name: len(b.created()) for b in desk}
        await asyncio.to_thread(
            kube.kubectl, "patch", "tradingfleet", "desk", "-n", ns, "--type", "merge",
            "-p", '{"spec": {"halted": false, "reason": ""}}',
        )  # fmt: skip
        await eventually(lambda: r.hget("tradefleet:risk:desk:halts", "*") is None, "the halt lifted", 60)
        await until(
            lambda: all(len(b.created()) > before[b.name] for b in desk), 240, "every desk bot trading"
        )
        await eventually(
            lambda: {c["type"]: c["status"] for c in kube.get(path)["status"]["conditions"]}["Halted"] == "False",
            "Halted False", 60,
        )  # fmt: skip
        events = await asyncio.to_thread(cluster.events, "Halted")
        assert events and REASON in events[0]["message"]
    assert sim.describe()["duplicates"] == 0
