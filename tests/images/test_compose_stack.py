"""The offline compose stack, for real: docker-compose.yml with deploy/compose/sim.env, overridden only
where something cannot be obtained here (tests/images/compose.override.yml: FerretDB for MongoDB,
no Grafana, no host ports). It must come up with both bots ready and exactly one leader; Prometheus
scrapes both; `kill -9` of the leader's container hands trading to the other, which trades the next
crossing; the killed container, started again after the simulator's recorded history has been played
(the moment a bot used to wait for ever for a kline frame), becomes ready again; and `docker compose
down` then `up` loses no stored signal or order."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.images.conftest import COMPOSE_CONFIG, DOCKER, TIMINGS, docker, http, ip_of, offline, run, wait_for

# Generous: the first run on a machine builds the base and product images inside the fixtures.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BOTS = ("bot-1", "bot-2")
SQLITE_URL = "sqlite:////data/tradefleet.sqlite"
READ_STORE = """
import asyncio, json, os
from tradefleet.store import open_store
async def main():
    s = open_store(os.environ["TRADEFLEET_STORE_URL"])
    await s.open()
    try:
        print(json.dumps({"signals": [x.signal_id for x in await s.signals("btc-usdt")],
                          "orders": [o.client_order_id for o in await s.orders("btc-usdt")]}))
    finally:
        await s.close()
asyncio.run(main())
"""


class Stack:
    def __init__(self, project: str) -> None:
        self.project = project
        self.env = {**os.environ, "DOCKER_CONFIG": COMPOSE_CONFIG, "DOCKER_BUILDKIT": "0"}

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        return run(DOCKER, "compose", "-f", "docker-compose.yml", "-f", "tests/images/compose.override.yml",
                   "--env-file", "deploy/compose/sim.env", "-p", self.project, *args,
                   timeout=timeout, check=check, env=self.env)  # fmt: skip

    def container(self, service: str) -> str:
        return f"{self.project}-{service}-1"

    def url(self, service: str, port: int = 8080) -> str:
        return f"http://{ip_of(self.container(service))}:{port}"

    def status(self, bot: str) -> dict[str, Any]:
        code, body = http(self.url(bot) + "/status")
        return body if code == 200 and isinstance(body, dict) else {}

    def wait_ready(self, bot: str, timeout: float = 120) -> None:
        wait_for(f"{bot} /readyz 200", lambda: http(self.url(bot) + "/readyz")[0] == 200, timeout,
                 lambda: f"{self.status(bot).get('checks')}\n{self.logs(bot)}")  # fmt: skip

    def subnet(self) -> str:
        fmt = "{{range .IPAM.Config}}{{.Subnet}}{{end}}"
        return docker("network", "inspect", "-f", fmt, f"{self.project}_default").strip()

    def logs(self, service: str) -> str:
        return docker("logs", "--tail", "25", self.container(service), check=False)

    def stored(self) -> tuple[set[str], set[str]]:
        """Signal and order ids in the bots' store(s), read by the product's own Store code."""
        signals: set[str] = set()
        orders: set[str] = set()
        for bot in BOTS:
            out = self.compose("run", "--rm", "--no-deps", "--entrypoint", "python", bot, "-c", READ_STORE)
            got = json.loads(out.strip().splitlines()[-1])
            signals.update(got["signals"])
            orders.update(got["orders"])
        return signals, orders


@pytest.fixture
def stack(images: dict[str, str]) -> Iterator[Stack]:
    started = time.monotonic()
    run("bash", "scripts/compose.sh", timeout=600)
    TIMINGS.append(f"compose v2 available: {time.monotonic() - started:.1f}s")
    s = Stack(f"tf-stack-{os.getpid()}")
    try:
        yield s
    finally:
        s.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)


def _store_url(stack: Stack) -> str:
    """ "" (compose's own URL: FerretDB as `mongodb`), or with TFTEST_COMPOSE_STORE=sqlite each bot
    on SQLite in its /data volume (to tell a store fault from a stack fault), said in the summary.
    On FerretDB the two bots write the same candles: this test is where their upserts' race on
    FerretDB 1.x (pymongo's KeyError 'nModified', then "store unreachable") was found."""
    stack.compose("up", "-d", "--wait", "mongodb")
    if os.environ.get("TFTEST_COMPOSE_STORE") == "sqlite":
        TIMINGS.append("compose: NOTE bots stored on SQLite, not on FerretDB (TFTEST_COMPOSE_STORE=sqlite)")
        return SQLITE_URL
    TIMINGS.append("compose: bots stored on FerretDB (the `mongodb` stand-in), compose's own store URL")
    return ""


def test_compose_builds_the_one_image_once(stack: Stack) -> None:
    """Both bots and the simulator run tradefleet-bot:dev; `docker compose build` builds it once."""
    services = json.loads(stack.compose("config", "--format", "json"))["services"]
    assert [name for name, svc in services.items() if "build" in svc] == ["bot-1"]
    assert {services[s]["image"] for s in ("bot-1", "bot-2", "sim")} == {"tradefleet-bot:dev"}
    built = stack.compose("build", timeout=1200)
    assert built.count("Successfully tagged tradefleet-bot:dev") == 1, built[-2000:]


def test_offline_stack_fails_over_restarts_ready_and_keeps_its_store_across_down_up(stack: Stack) -> None:
    steps: list[str] = []
    t0 = time.monotonic()

    def step(what: str) -> None:
        steps.append(f"compose: {what} at {time.monotonic() - t0:.1f}s")

    store_url = _store_url(stack)
    if store_url:
        stack.env["TFTEST_STORE_URL"] = store_url
    # The network exists now (mongodb is up): from here on the stack reaches nothing off this machine.
    with offline(stack.subnet()):
        stack.compose("up", "-d")
        for bot in BOTS:
            stack.wait_ready(bot)
        step("both bots ready")
        roles = {bot: stack.status(bot).get("role") for bot in BOTS}
        assert sorted(roles.values()) == ["leader", "standby"], roles
        leader = next(b for b, r in roles.items() if r == "leader")
        other = next(b for b in BOTS if b != leader)

        prom = stack.url("prometheus", 9090) + "/api/v1/targets"

        def bots_up() -> bool:
            code, body = http(prom)
            targets = body["data"]["activeTargets"] if code == 200 and isinstance(body, dict) else []
            health = {
                t["labels"]["instance"]: t["health"]
                for t in targets
                if t["labels"]["job"] == "tradefleet-bots"
            }
            return health == {"bot-1:8080": "up", "bot-2:8080": "up"}

        wait_for("Prometheus to report both bot targets up", bots_up, 90, lambda: str(http(prom)))
        step("Prometheus scrapes both bots")

        # kill -9 of the leader's container: the other takes the lease and trades the next crossing.
        before = (stack.status(other).get("last_order") or {}).get("client_order_id")
        docker("kill", "--signal", "KILL", stack.container(leader))
        killed_at = time.monotonic()

        def other_trades() -> bool:
            s = stack.status(other)
            order = s.get("last_order") or {}
            return s.get("role") == "leader" and order.get("client_order_id") not in (None, before)

        wait_for(f"{other} to lead and trade the next crossing", other_trades, 120,
                 lambda: f"{stack.status(other)}\n{stack.logs(other)}")  # fmt: skip
        step(f"{other} traded after kill -9 of {leader} ({time.monotonic() - killed_at:.1f}s)")

        # The killed bot starts again after the simulator has played its whole recorded history: no
        # kline frame is needed for it to warm up, and the replay keeps the market moving.
        sim_state = stack.url("sim", 8765) + "/sim/state"

        def history_played() -> bool:
            body = http(sim_state)[1]
            klines = body.get("klines") if isinstance(body, dict) else None
            return bool(klines and (klines.get("replay_done") or klines.get("laps", 0) >= 1))

        wait_for(
            "the simulator to have played its recorded history",
            history_played,
            120,
            lambda: str(http(sim_state)),
        )
        if docker("inspect", "-f", "{{.State.Running}}", stack.container(leader)).strip() != "true":
            stack.compose("start", leader)
        stack.wait_ready(leader)
        step(f"{leader} ready again after restart")

        signals, orders = stack.stored()
        assert signals and orders, "nothing stored: the stack never traded"
        stack.compose("down", "--timeout", "10")
        stack.compose("up", "--no-start")  # a new network: hold it offline before anything runs
        with offline(stack.subnet()):
            stack.compose("up", "-d")
            for bot in BOTS:
                stack.wait_ready(bot)
            after_signals, after_orders = stack.stored()
        assert signals <= after_signals and orders <= after_orders, "down/up lost stored signals or orders"
        step(f"down/up kept {len(signals)} signals and {len(orders)} orders")
    TIMINGS.extend(steps)
