"""Several replicas of one bot, as real processes: exactly one trades, and failover loses nothing.

Everything is real: the simulator process (`tradefleet sim`, real BTCUSDT daily candles replayed as
1-minute candles, orders matched and counted, `duplicates` must stay 0), a real redis-server, and
`tradefleet bot` processes in testnet mode (real ccxt client, signed order API, user data stream)
sharing one MongoDB-protocol store (the session's FerretDB, or MONGODB_URL), as replicas do in a
cluster. (A SQLite file belongs to one process: a second one waits as a cold standby, see
`tests/store/test_one_process_per_file.py`; warm standbys share MongoDB.) Windows 2/5 make a crossover
every ~4.5 candles, so signals come every few seconds at the replay speed used here.

What is checked, from three independent witnesses (the simulator's order book, the shared store,
each replica's JSON log):
- only the replica holding the lease creates orders; no client order id is ever sent twice
  (simulator `duplicates == 0`) and every order the simulator saw is one stored order;
- orders alternate BUY, SELL, ... (long-only: a duplicated BUY or a missed SELL would break that),
  and once the replay pauses the last order follows the last signal (no signal lost to a failover);
- after `kill -9` of the leader a standby becomes leader and places the next order;
- a SIGSTOPped leader that wakes up after a takeover places nothing;
- while Redis is down no replica creates an order, and trading resumes by itself afterwards.

Timing is never asserted; conditions are awaited with generous timeouts (the machine is shared).
The takeover time is measured in `bench/takeover.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymongo
import pytest
import redis

from tests.conftest import RedisServer, free_port, wait_for_port
from tests.obs.botproc import bot_env, sim_urls, start_bot, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.mongo]

BOT = "fleet"
TTL_MS, RENEW_MS = 2000, 400
SIM_KEY, SIM_SECRET = "tradefleet-sim-key", "tradefleet-sim-secret"


def wait(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def http_json(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


class Sim:
    """A `tradefleet sim` process on a free port, its output in tmp/sim.log. By default it replays
    the real BTCUSDT daily candles as 1-minute candles, one a second."""

    REPLAY = ("--kline-interval", "1m", "--speed", "1", "--history", "60", "--depth-rate", "5")

    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / "sim.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tradefleet.app.cli", "sim", "--port", str(self.port),
             *(args or self.REPLAY)],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, timeout=30)

    def orders(self) -> dict[str, Any]:
        result: dict[str, Any] = http_json(self.url + "/sim/orders")
        return result

    def pause(self) -> None:
        http_json(self.url + "/sim/control/pause", "POST")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


class Replica:
    def __init__(self, name: str, tmp: Path, sim: Sim, redis_url: str, store_url: str) -> None:
        self.name = name
        self.http_port = free_port()
        self.log_path = tmp / f"{name}.log"
        config = {
            "name": BOT, "mode": "testnet", "interval": "1m", "short_window": 2, "long_window": 5,
            "quote_amount": 100, **sim_urls(sim.port), "store_url": store_url, "http_port": self.http_port,
            "http_host": "127.0.0.1", "lease_ttl_ms": TTL_MS, "lease_renew_ms": RENEW_MS, "depth_limit": 100,
        }  # fmt: skip
        env = bot_env(
            config,
            POD_NAME=name,
            REDIS_URL=redis_url,
            TRADEFLEET_API_KEY=SIM_KEY,
            TRADEFLEET_API_SECRET=SIM_SECRET,
        )
        self.proc = start_bot(env, self.log_path)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if isinstance(e, dict) and (name is None or e.get("event") == name):
                    out.append(e)
        return out

    def created_orders(self) -> list[dict[str, Any]]:
        """Orders this replica created (logged once, PENDING, before the request leaves)."""
        return [e for e in self.events("order") if e.get("status") == "PENDING"]

    def recovered_as_leader(self) -> bool:
        """True once this replica finished `recover()` after its latest takeover."""
        led = [_ms(e["time"]) for e in self.events("lease") if e.get("state") == "leader"]
        return bool(led) and any(_ms(e["time"]) >= led[-1] for e in self.events("orders_recovered"))

    def status(self) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = http_json(f"http://127.0.0.1:{self.http_port}/status")
            return result
        except (OSError, ValueError):
            return None

    def role(self) -> str | None:
        s = self.status()
        return None if s is None else s.get("role")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


class Fleet:
    def __init__(self, tmp: Path, redis: RedisServer, mongodb_url: str | None = None) -> None:
        self.tmp = tmp
        self.redis = redis
        self.store_url = f"sqlite:///{tmp / 'fleet.sqlite'}"  # one replica at a time only
        self.client: pymongo.MongoClient[dict[str, Any]] | None = None
        if mongodb_url is not None:
            self.database = f"tf_e2e_{uuid.uuid4().hex[:12]}"
            self.client = pymongo.MongoClient(mongodb_url)
            self.store_url = urlunsplit(urlsplit(mongodb_url)._replace(path="/" + self.database))
        self.sim = Sim(tmp)
        self.replicas: list[Replica] = []

    def spawn(self, n: int) -> list[Replica]:
        new = [
            Replica(f"replica-{len(self.replicas) + i}", self.tmp, self.sim, self.redis.url, self.store_url)
            for i in range(n)
        ]
        self.replicas += new
        return new

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive()]

    def leader(self, among: list[Replica] | None = None) -> Replica | None:
        leaders = [r for r in (among or self.live()) if r.role() == "leader"]
        assert len(leaders) <= 1, f"two leaders at once: {[r.name for r in leaders]}"
        return leaders[0] if leaders else None

    def all_created(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r.name, e) for r in self.replicas for e in r.created_orders()]

    def wait_orders(self, n: int, timeout: float = 120.0) -> None:
        wait(lambda: len(self.all_created()) >= n, timeout, f"{n} orders created")

    def kill_leader(self, leader: Replica, order_timeout: float = 60.0) -> Replica:
        """`kill -9` the leader: no release, its key must expire; a standby takes over and places the
        next order. The new leader, returned as soon as that order is created."""
        before = len(self.all_created())
        leader.signal(signal.SIGKILL)
        leader.proc.wait(timeout=20)
        new: Replica = wait(self.leader, 30, "a standby to take over")
        wait(lambda: len(new.created_orders()) >= 1, order_timeout, "the new leader to place an order")
        assert len(self.all_created()) > before
        return new

    def requests_settled(self) -> int | None:
        """Total order requests the exchange has seen, once it stopped changing for a second."""
        first = sum(self.sim.orders()["client_ids_seen"].values())
        time.sleep(1.0)
        second = sum(self.sim.orders()["client_ids_seen"].values())
        return second if first == second else None

    def store_rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(orders, signals) of the bot from the shared store, read with pymongo or sqlite3 directly:
        a witness independent of the bot's own store code."""
        import sqlite3

        if self.client is not None:
            db = self.client[self.database]
            orders = [{**d, "client_order_id": d["_id"]} for d in db["orders"].find({"bot": BOT})]
            return orders, list(db["signals"].find({"bot": BOT}))

        conn = sqlite3.connect(f"file:{self.tmp / 'fleet.sqlite'}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            orders = [dict(r) for r in conn.execute("SELECT * FROM orders WHERE bot = ?", (BOT,))]
            signals = [dict(r) for r in conn.execute("SELECT * FROM signals WHERE bot = ?", (BOT,))]
        finally:
            conn.close()
        return orders, signals

    def check_no_duplicates_and_alternation(self) -> None:
        created = self.all_created()
        ids = [e["client_order_id"] for _, e in created]
        assert len(ids) == len(set(ids)), f"an order was created twice: {ids}"
        sim = self.sim.orders()
        assert sim["duplicates"] == 0, sim["accepted_per_client_id"]
        orders, _ = self.store_rows()
        stored = {o["client_order_id"] for o in orders}
        assert set(ids) == stored
        sim_ids = {o["clientOrderId"] for o in sim["orders"]}
        assert sim_ids <= stored, f"the exchange saw orders the store does not know: {sim_ids - stored}"
        filled = {o["client_order_id"] for o in orders if o["status"] == "FILLED"}
        assert filled <= sim_ids, f"filled in the store but unknown to the exchange: {filled - sim_ids}"
        sides = [o["side"] for o in sorted(orders, key=lambda o: o["created_at"])]
        assert sides == ["BUY", "SELL"] * (len(sides) // 2) + ["BUY"] * (len(sides) % 2), sides

    def settle_and_check_last_signal_followed(self) -> None:
        """Pause the replay, then the latest signal must end up with its order."""
        self.sim.pause()

        def consistent() -> bool:
            orders, signals = self.store_rows()
            if not signals or not orders:
                return False
            last_signal = max(signals, key=lambda s: s["candle_close_time"])
            last_order = max(orders, key=lambda o: o["created_at"])
            return bool(last_order["side"] == last_signal["side"] and last_order["status"] == "FILLED")

        wait(consistent, 60, "the last signal to be followed by an order")

    def close(self) -> None:
        for r in self.replicas:
            r.stop()
        self.sim.stop()
        if self.client is not None:
            self.client.drop_database(self.database)
            self.client.close()


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer, mongodb_url: str) -> Iterator[Fleet]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server missing")
    f = Fleet(tmp_path, redis_server, mongodb_url)
    try:
        yield f
    finally:
        f.close()
        if os.environ.get("TFTEST_KEEP_LOGS"):
            print(f"logs kept in {tmp_path}")


def test_two_replicas_only_the_leader_places_orders_each_once(fleet: Fleet) -> None:
    fleet.spawn(2)
    fleet.wait_orders(3)
    creators = {name for name, _ in fleet.all_created()}
    assert len(creators) == 1, creators
    leader = wait(fleet.leader, 30, "a leader")
    assert creators == {leader.name}
    fleet.settle_and_check_last_signal_followed()
    fleet.check_no_duplicates_and_alternation()
    # The fleet's streams and the status hash the operator reads, written by the real bots.
    r = redis.Redis.from_url(fleet.redis.url, decode_responses=True)
    wait(lambda: r.xlen("tradefleet:orders") >= 3 and r.xlen("tradefleet:signals") >= 3, 30, "streams")
    assert {f["bot"] for _, f in r.xrange("tradefleet:orders")} == {BOT}
    # Both replicas publish every signal; the stream holds each once.
    ids = [json.loads(f["json"])["signal_id"] for _, f in r.xrange("tradefleet:signals")]
    assert len(ids) == len(set(ids)), ids
    # Both replicas write the status hash; the operator must see the leader's view, not whoever wrote last.
    leader = fleet.leader()
    assert leader is not None
    for _ in range(3):  # a few status rounds (one per second per replica)
        status = json.loads(wait(lambda: r.hget(f"tradefleet:status:{BOT}", "json"), 30, "status hash"))
        assert status["bot"] == BOT and status["role"] == "leader", status
        assert status["holder"].startswith(leader.name + ":")
        time.sleep(1.0)
    assert int(r.hget(f"tradefleet:status:{BOT}", "updated_at") or 0) > 0


def test_three_replicas_survive_kill_9_and_a_paused_leader_without_duplicates(fleet: Fleet) -> None:
    fleet.spawn(3)
    fleet.wait_orders(1)
    first = wait(fleet.leader, 30, "a leader")
    assert {n for n, _ in fleet.all_created()} == {first.name}

    second = fleet.kill_leader(first)

    # SIGSTOP the new leader as soon as it stored that order (between the lease check and the request
    # is the dangerous moment), for longer than its lease; the last replica takes over; then the sleeper wakes up.
    second.signal(signal.SIGSTOP)
    third = wait(lambda: fleet.leader([r for r in fleet.live() if r is not second]), 30, "takeover")
    wait(lambda: third.recovered_as_leader(), 60, "the third leader to reconcile what was in flight")
    # No new signals from here: every order request the exchange sees next comes from the sleeper.
    fleet.sim.pause()
    seen = wait(fleet.requests_settled, 30, "order requests to settle")
    woke_ms = int(time.time() * 1000)
    second.signal(signal.SIGCONT)
    wait(lambda: second.role() == "standby", 30, "the woken leader to step down")
    wait(lambda: any(_ms(e["time"]) >= woke_ms for e in second.events("lease_lost")), 30, "lease_lost")
    after = fleet.requests_settled()
    late = [e for e in second.created_orders() if _ms(e["time"]) >= woke_ms]
    assert late == [], f"a woken ex-leader created orders: {late}"
    fleet.settle_and_check_last_signal_followed()
    fleet.check_no_duplicates_and_alternation()
    # A request the sleeper prepared before its pause may still leave when it wakes, but it was signed
    # with timestamp + recvWindow ending inside its lease: the exchange refuses it (-1021), places nothing.
    assert after == seen, f"the exchange accepted order request(s) from a woken ex-leader: {seen} -> {after}"


def test_no_order_while_redis_is_down_and_trading_resumes_after(fleet: Fleet) -> None:
    fleet.spawn(2)
    fleet.wait_orders(1)
    leader = wait(fleet.leader, 30, "a leader")
    fleet.redis.stop()
    down_ms = int(time.time() * 1000)
    try:
        wait(lambda: all(r.role() == "unknown" for r in fleet.live()), 30, "every replica to be unknown")
        # Signals keep coming while leadership cannot be proven: wait for some to be stored.
        _, signals = fleet.store_rows()
        seen = len(signals)
        wait(lambda: len(fleet.store_rows()[1]) >= seen + 2, 60, "signals during the outage")
        up_ms = int(time.time() * 1000)
    finally:
        fleet.redis.start()
    # An order confirmed just before the stop may still be logged just after: a small grace.
    during = [e for _, e in fleet.all_created() if down_ms + 1000 <= _ms(e["time"]) <= up_ms]
    assert during == [], f"orders while Redis was down: {during}"
    errors = [r.events("lease_error") for r in fleet.replicas]
    assert all(errors), "every replica noticed the outage"
    count = len(fleet.all_created())
    wait(lambda: len(fleet.all_created()) > count, 60, "trading to resume after Redis returned")
    assert wait(fleet.leader, 30, "a leader again") in fleet.live()
    _ = leader
    fleet.settle_and_check_last_signal_followed()
    fleet.check_no_duplicates_and_alternation()


def _ms(iso: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
