"""A rolling update as a Deployment does it (maxSurge 1, maxUnavailable 0), with real processes:
the new replica starts and becomes a warm standby, then the old leader gets SIGTERM while its order is
in flight (the simulator answers NEW and fills 2.5 s later). The old process must stop taking signals,
wait for that order to be final, release the lease and exit 0; the new one takes over. Checked on the
simulator (no duplicate, every order filled), the shared MongoDB store (one order per signal, BUY/SELL
alternating, no signal left without an action) and the old process's log (the fill before the exit)."""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import RedisServer
from tests.risk.fleet import Bot, Sim, assert_one_order_per_signal, ms, wait, write_candles, zigzag

pytestmark = [pytest.mark.slow, pytest.mark.mongo]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/run installs it)")
    s = Sim(tmp_path, write_candles(tmp_path / "zigzag.csv", zigzag(600, leg=4)), speed=1.0)
    try:
        yield s
    finally:
        s.stop()


def test_sigterm_during_an_order_in_flight_ends_with_it_final_and_the_new_pod_taking_over(
    tmp_path: Path, sim: Sim, redis_server: RedisServer, mongodb_url: str
) -> None:
    # Both pods run at once on one store: MongoDB, as in a cluster (a SQLite file belongs to one process).
    store = urlunsplit(urlsplit(mongodb_url)._replace(path=f"/tf_roll_{uuid.uuid4().hex[:12]}"))
    old = Bot(
        tmp_path, sim, redis_server.url, "roll", replica="roll-old", store_url=store, stop_order_grace_s=10
    )
    new: Bot | None = None
    try:
        wait(lambda: any(e["status"] == "FILLED" for e in old.events("order")), 180, "the old pod trading")
        new = Bot(tmp_path, sim, redis_server.url, "roll", replica="roll-new", store_url=store)
        wait(new.trading, 120, "the new pod warm (standby, reconciled)")
        sim.order_faults(delay_fill_ms=2500)  # from now on every order is in flight for 2.5 s
        before = len(old.created())
        wait(lambda: len(old.created()) > before, 120, "the old pod to create an order")
        in_flight = old.created()[-1]["client_order_id"]
        old.kill(signal.SIGTERM)
        term_ms = int(time.time() * 1000)
        assert old.proc.wait(timeout=30) == 0

        fills = [
            e for e in old.events("order") if e["client_order_id"] == in_flight and e["status"] == "FILLED"
        ]
        stopped = old.events("stopped")
        assert fills and stopped and ms(fills[0]["time"]) <= ms(stopped[0]["time"]), "exited before the fill"
        drained = old.events("orders_drained")
        assert drained and drained[0]["settled"] is True, drained
        print(f"\nrollout: SIGTERM -> order final {ms(fills[0]['time']) - term_ms} ms, "
              f"-> exit {ms(stopped[0]['time']) - term_ms} ms")  # fmt: skip

        wait(lambda: len(new.created()) >= 2, 120, "the new pod to trade")
        sim.pause()
        time.sleep(2.0)
        sim.order_faults(delay_fill_ms=0)
        wait(lambda: all(o["status"] == "FILLED" for o in sim.orders()), 30, "every order filled")
        assert_one_order_per_signal(sim, old)
    finally:
        old.stop()
        if new is not None:
            new.stop()
