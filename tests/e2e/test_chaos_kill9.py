"""Chaos: kill -9 one bot at random moments, many times, while crossings keep coming.

Real parts: the simulator process replaying real BTCUSDT candles as 1-minute candles at one candle a
second (windows 2/5: a crossing every few seconds), a real redis-server, `tradefleet bot` processes in
testnet mode (real ccxt, signed orders, user data stream) on one SQLite file. The bot is killed with
SIGKILL at random moments (while warming up, recovering, deciding, sending) and started again at once.

At the end, against independent witnesses (the simulator's candles, orders and account; the SQLite
file read directly; the last process's /status):
- every crossing the exchange's candles contain from the first start on is stored, each once, and
  every stored signal is a real crossing;
- every stored signal was acted on or stored with its reason (none left `pending`);
- exactly one exchange order per signal acted on, and no other order (simulator `duplicates` 0);
- the store's position equals the exchange account's BTC balance (within one lot step of dust) and
  /status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import signal
import sqlite3
import time
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.e2e.test_replicas import BOT, SIM_KEY, SIM_SECRET, Replica, Sim, http_json, wait
from tradefleet.domain.models import Candle
from tradefleet.domain.sma_cross import SmaCrossover

pytestmark = pytest.mark.slow

KILLS = 10
STEP = Decimal("0.00001")  # the simulator's BTCUSDT lot step


def account_btc(sim: Sim) -> Decimal:
    query = f"timestamp={int(time.time() * 1000)}&recvWindow=10000"
    sig = hmac.new(SIM_SECRET.encode(), query.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"{sim.url}/api/v3/account?{query}&signature={sig}",
                                 headers={"X-MBX-APIKEY": SIM_KEY})  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = json.loads(resp.read())
    return sum((Decimal(b["free"]) + Decimal(b["locked"]) for b in body["balances"] if b["asset"] == "BTC"),
               Decimal(0))  # fmt: skip


def exchange_crossings(sim: Sim, upto_open: int) -> dict[int, str]:
    """Every crossing (candle open time -> side) in the simulator's closed 1m candles, by the pure
    strategy over the whole series the exchange serves (its REST history)."""
    rows: list[list[Any]] = []
    start = 0
    while True:
        page = http_json(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start}&limit=1000")
        rows += page
        if len(page) < 1000:
            break
        start = page[-1][0] + 1
    cross = SmaCrossover(2, 5)
    out: dict[int, str] = {}
    for r in rows:
        if r[0] > upto_open:
            break
        d = [Decimal(x) for x in r[1:6]]
        update = cross.on_close(Candle("BTC/USDT", "1m", r[0], r[6], *d, closed=True))
        if update.cross is not None:
            out[r[0]] = update.cross.side.value
    return out


def store_rows(db: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        signals = [dict(r) for r in conn.execute("SELECT * FROM signals WHERE bot = ?", (BOT,))]
        orders = [dict(r) for r in conn.execute("SELECT * FROM orders WHERE bot = ?", (BOT,))]
        positions = [dict(r) for r in conn.execute("SELECT * FROM positions WHERE bot = ?", (BOT,))]
    finally:
        conn.close()
    return signals, orders, positions


@dataclass
class Witnesses:
    """What the store holds and what the exchange saw, read once every order is final."""

    signals: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    position: dict[str, Any]
    crossings: dict[int, str]
    exchange_orders: dict[str, Any]
    held: Decimal


def settle_and_read(sim: Sim, db: Path) -> Witnesses:
    """Stop the candles, wait until every stored signal has an outcome and no order is open, then read
    the SQLite file directly and the simulator's candles, orders and account."""
    sim.pause()
    last_closed = http_json(sim.url + "/sim/state")["klines"]["last_closed_time"]

    def settled() -> bool:
        signals, orders, _ = store_rows(db)
        final = ("FILLED", "CANCELED", "REJECTED", "EXPIRED")
        return (
            bool(signals)
            and all(o["status"] in final for o in orders)
            and all(s["action"] != "pending" for s in signals)
        )

    wait(settled, 60, "every signal with an outcome and no order open")
    time.sleep(2.0)  # the position row and the last reports
    signals, orders, positions = store_rows(db)
    (position,) = positions
    return Witnesses(
        signals, orders, position, exchange_crossings(sim, last_closed), sim.orders(), account_btc(sim)
    )


def assert_each_crossing_once_and_each_order_once(w: Witnesses, first_open: int) -> None:
    """Every crossing the exchange's candles contain from `first_open` on is stored, once, and every
    stored signal is one; none is left pending; exactly one exchange order per signal acted on and no
    other; the store's position equals the exchange account (within one lot step of dust)."""
    stored = {s["candle_open_time"]: s["side"] for s in w.signals}
    assert len(stored) == len(w.signals), "a crossing was stored twice"
    expected = {t: side for t, side in w.crossings.items() if t >= first_open}
    missing = {t: side for t, side in expected.items() if t not in stored}
    assert not missing, f"crossings lost without a trace: {missing}; stored {sorted(stored)}"
    assert all(w.crossings.get(t) == side for t, side in stored.items()), "a stored signal is no crossing"
    assert all(s["action"] and s["action"] != "pending" for s in w.signals), [s["action"] for s in w.signals]
    acted = {s["signal_id"] for s in w.signals if s["action"] == "order"}
    assert {o["signal_id"] for o in w.orders} == acted
    sim_state = w.exchange_orders
    assert sim_state["duplicates"] == 0, sim_state["accepted_per_client_id"]
    assert {o["clientOrderId"] for o in sim_state["orders"]} == {o["client_order_id"] for o in w.orders}
    assert all(n == 1 for n in sim_state["accepted_per_client_id"].values())
    assert abs(Decimal(w.position["qty"]) - w.held) < STEP, (w.position["qty"], w.held)


def test_kill_9_at_random_moments_loses_no_crossing_and_places_each_order_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    rng = random.Random(11)
    sim = Sim(tmp_path)
    db = tmp_path / "fleet.sqlite"
    procs: list[Replica] = []

    def start() -> Replica:
        r = Replica(f"chaos-{len(procs)}", tmp_path, sim, redis_server.url, f"sqlite:///{db}")
        procs.append(r)
        return r

    try:
        bot = start()
        wait(lambda: bot.status() is not None and bot.status()["ready"], 90, "the first bot ready")  # type: ignore[index]
        # From now on candles close whether or not a bot is connected (crossings while it is down).
        http_json(sim.url + "/sim/control/start", "POST")
        first_open = http_json(sim.url + "/sim/state")["klines"]["open_candle_time"]
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 5.0))
            bot.signal(signal.SIGKILL)
            bot.proc.wait(timeout=20)
            time.sleep(rng.choice([0.0, 0.0, 8.0]))  # now and then down for several candles
            bot = start()
        wait(lambda: bot.status() is not None and bot.status()["ready"], 90, "the last bot ready")  # type: ignore[index]
        time.sleep(rng.uniform(3.0, 6.0))  # crossings handled by the last process too
        seen = settle_and_read(sim, db)
        status = bot.status()
        assert status is not None
    finally:
        for r in procs:
            r.stop()
        sim.stop()

    assert_each_crossing_once_and_each_order_once(seen, first_open)
    actions = [s["action"] for s in seen.signals]
    assert "missed_while_down" in actions and "order" in actions, actions  # both paths were exercised
    assert Decimal(status["position"]["qty"]) == Decimal(seen.position["qty"])  # and /status says so
