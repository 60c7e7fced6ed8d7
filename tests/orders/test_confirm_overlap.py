"""The lease's confirmation (a Redis round trip) runs while the order is being committed when the
store has no other writer, and the request leaves only once both said yes. A real redis-server and
a real `RedisLease` (the lease is taken from it by writing another holder's value into its key), real
SQLite files, the simulator over sockets, ccxt as the client. When the confirmation answers is the
test's to decide: `GatedLease` holds it until the test opens the gate."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from tests.conftest import free_port
from tests.orders.conftest import bot_config, exchange_execution, make_signal, sim_orders, sim_rules, until
from tradefleet.coord.lease import LocalLease, RedisLease, lease_key
from tradefleet.coord.risk_state import RedisRiskState
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import Position, Side
from tradefleet.engine.order_manager import OrderManager
from tradefleet.engine.risk_gate import RiskGate
from tradefleet.metrics import BotMetrics
from tradefleet.store import SqliteStore
from tradefleet.store.buffered import BufferedStore


class GatedLease:
    """A real lease whose confirmation (`confirm` or `start_confirm`) is answered, once armed, only
    after the test opens the gate (the request itself goes to Redis at once, as the real one's)."""

    def __init__(self, inner: RedisLease) -> None:
        self.inner = inner
        self.armed = False
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()

    def start_confirm(self) -> Awaitable[bool]:
        sent = self.inner.start_confirm()
        if not self.armed:
            return sent
        self.asked.set()

        async def gated() -> bool:
            await self.gate.wait()
            return await sent

        return asyncio.ensure_future(gated())

    async def confirm(self) -> bool:
        return await self.start_confirm()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _rows(db: Path) -> tuple[dict[str, str], dict[str, str]]:
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        signals = dict(reader.execute("SELECT signal_id, action FROM signals").fetchall())
        orders = dict(reader.execute("SELECT client_order_id, status FROM orders").fetchall())
    finally:
        reader.close()
    return signals, orders


@pytest.fixture
async def redis_lease(redis_server: Any) -> Any:
    key = lease_key("orders-test", "binance", "BTCUSDT")
    lease = RedisLease(redis_server.url, key, "replica-a", ttl_ms=30_000, renew_ms=10_000)
    await lease.start()
    assert lease.may_trade()
    yield lease
    await lease.stop()


def _steal(redis_server: Any, lease: RedisLease) -> None:
    """Another replica holds the key now; this one's local deadline has not passed, so only the
    coordinator's confirmation can tell."""
    redis.Redis(port=redis_server.port).set(lease.key, "replica-b#999999", px=30_000)
    assert lease.may_trade()


async def _start(**kw: Any) -> tuple[OrderManager, asyncio.Task[None]]:
    manager = OrderManager(metrics=BotMetrics(), reconcile_interval_s=0.2, **kw)
    await manager.recover()
    return manager, asyncio.get_running_loop().create_task(manager.run())


async def _stop(manager: OrderManager, task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await manager.execution.close()


@pytest.mark.parametrize("buffered", [False, True], ids=["sqlite", "buffered"])
async def test_a_lease_lost_while_the_order_is_committed_leaves_it_pending_unsent_and_the_next_leader_sends_it_once(
    sim, redis_server, redis_lease, tmp_path, buffered
):
    db = tmp_path / "overlap.sqlite"
    raw = SqliteStore(str(db))
    await raw.open()
    # (A writer held off after the commit until the manager says the request left, or will not.)
    store: Any = BufferedStore(raw, BotMetrics(), flush_ms=20, request_hold_s=600) if buffered else raw
    if buffered:
        store.start()
    assert store.exclusive
    config = bot_config(sim)
    lease = GatedLease(redis_lease)
    m, task = await _start(config=config, store=store, execution=exchange_execution(config), lease=lease,
                           rules=sim_rules(sim))  # fmt: skip
    buy = make_signal(config, Side.BUY, 1)
    cid = client_order_id(buy.signal_id)
    try:
        lease.armed = True
        _steal(redis_server, redis_lease)
        m.submit_signal(buy)
        await asyncio.wait_for(lease.asked.wait(), 30)
        # The confirmation has not answered, and the commit does not wait for it.
        await until(lambda: _rows(db)[1] == {cid: "PENDING"}, what="the PENDING order committed")
        assert _rows(db)[0] == {buy.signal_id: "order"}
        lease.gate.set()  # "the key is not ours": the request must not leave
        await until(lambda: not m.acting(), what="the signal handled")
        assert not redis_lease.may_trade()
        if buffered:
            await until(lambda: not any(store.buffered().values()), what="the writer going on")
        assert (await sim_orders(sim))["client_ids_seen"] == {}
        assert _rows(db) == ({buy.signal_id: "order"}, {cid: "PENDING"})
    finally:
        await _stop(m, task)

    # The next leader (a restarted process on the file): recovery finds the order never sent and
    # sends it with its one client order id.
    successor = LocalLease("successor")
    await successor.start()
    m2, task2 = await _start(config=config, store=store, execution=exchange_execution(config),
                             lease=successor, rules=sim_rules(sim))  # fmt: skip
    try:
        await until(lambda: m2.idle(), what="the order final")
        if buffered:
            await until(lambda: not any(store.buffered().values()), what="the writer going on")
        state = await sim_orders(sim)
        assert state["accepted_per_client_id"] == {cid: 1}
        assert state["duplicates"] == 0
        signals, orders = _rows(db)
        assert signals == {buy.signal_id: "order"}
        assert orders[cid] == "FILLED"
    finally:
        await _stop(m2, task2)
        await successor.stop()
        await store.close()


async def test_a_lease_lost_before_the_commit_stores_only_the_pending_signal_even_after_a_sell_is_skipped(
    sim, redis_server, redis_lease, tmp_path
):
    """A SELL while flat trades nothing: its reason is stored only once the lease is confirmed, so a
    replica that lost the lease stores the signal as it came (pending) and no action."""
    db = tmp_path / "overlap.sqlite"
    store = SqliteStore(str(db))
    await store.open()
    config = bot_config(sim)
    lease = GatedLease(redis_lease)
    m, task = await _start(config=config, store=store, execution=exchange_execution(config), lease=lease,
                           rules=sim_rules(sim))  # fmt: skip
    sell = make_signal(config, Side.SELL, 1)
    try:
        lease.armed = True
        _steal(redis_server, redis_lease)
        m.submit_signal(sell)
        await asyncio.wait_for(lease.asked.wait(), 30)
        assert _rows(db) == ({}, {}), "nothing stored while leadership is unproven"
        lease.gate.set()
        await until(lambda: not m.acting(), what="the signal handled")
        assert _rows(db) == ({sell.signal_id: "pending"}, {})
    finally:
        await _stop(m, task)
        await store.close()


async def test_a_store_other_processes_write_commits_an_order_only_after_the_lease_is_confirmed(
    sim, redis_server, redis_lease, tmp_path
):
    """Without the one-writer lock (as with MongoDB shared by replicas) a replica that lost the lease
    without knowing it yet must not commit an order, or its action, into the shared store."""
    db = tmp_path / "shared.sqlite"
    store = SqliteStore(str(db), lock="none")
    await store.open()
    assert not store.exclusive
    config = bot_config(sim)
    lease = GatedLease(redis_lease)
    m, task = await _start(config=config, store=store, execution=exchange_execution(config), lease=lease,
                           rules=sim_rules(sim))  # fmt: skip
    buy = make_signal(config, Side.BUY, 1)
    try:
        lease.armed = True
        _steal(redis_server, redis_lease)
        m.submit_signal(buy)
        await asyncio.wait_for(lease.asked.wait(), 30)
        # A commit started with the confirmation would be on the store's one thread already: this
        # read queues behind it.
        assert await store.orders(config.name) == []
        assert _rows(db) == ({}, {}), "nothing committed while leadership is unproven"
        lease.gate.set()
        await until(lambda: not m.acting(), what="the signal handled")
        assert _rows(db) == ({buy.signal_id: "pending"}, {})
        assert (await sim_orders(sim))["client_ids_seen"] == {}
    finally:
        await _stop(m, task)
        await store.close()


def test_only_a_store_with_one_writer_is_exclusive(tmp_path):
    assert SqliteStore(str(tmp_path / "a.sqlite")).exclusive
    assert SqliteStore(str(tmp_path / "a.sqlite"), lock="wait").exclusive
    assert SqliteStore(":memory:").exclusive
    assert not SqliteStore(str(tmp_path / "a.sqlite"), lock="none").exclusive
    assert not SqliteStore(f"file:{tmp_path}/a.sqlite?mode=ro").exclusive
    assert BufferedStore(SqliteStore(str(tmp_path / "a.sqlite")), BotMetrics()).exclusive
    assert not BufferedStore(SqliteStore(str(tmp_path / "b.sqlite"), lock="none"), BotMetrics()).exclusive


@pytest.mark.parametrize("leads", [True, False], ids=["leader", "lost_lease"])
async def test_a_risk_denial_is_stored_only_once_the_lease_is_confirmed(
    sim, redis_server, redis_lease, tmp_path, leads
):
    """The risk gate is asked before the order's commit (its fleet reserve must come first), so on
    the overlapping path its denial waits for the confirmation: a replica that lost the lease stores
    the signal as it came (pending), the leader stores the denial."""
    db = tmp_path / "overlap.sqlite"
    store = SqliteStore(str(db))
    await store.open()
    config = bot_config(sim)
    risk = RiskGate(
        config=config, state=RedisRiskState(f"redis://127.0.0.1:{free_port()}/0", "x", timeout_s=0.2),
        metrics=BotMetrics(CollectorRegistry()), quote_asset="USDT", position=lambda: Position("b", "BTC/USDT"),
        mark=lambda: None, may_trade=lambda: True, on_flatten=lambda halt: None,
    )  # fmt: skip
    lease = GatedLease(redis_lease)
    m, task = await _start(config=config, store=store, execution=exchange_execution(config), lease=lease,
                           rules=sim_rules(sim), risk=risk)  # fmt: skip
    buy = make_signal(config, Side.BUY, 1)
    try:
        lease.armed = True
        if not leads:
            _steal(redis_server, redis_lease)
        m.submit_signal(buy)
        await asyncio.wait_for(lease.asked.wait(), 30)
        assert await store.signals(config.name) == [], "nothing stored while leadership is unproven"
        lease.gate.set()
        await until(lambda: not m.acting(), what="the signal handled")
        signals, orders = _rows(db)
        assert orders == {}
        if leads:
            assert signals[buy.signal_id].startswith("risk: risk_state_unknown")
        else:
            assert signals == {buy.signal_id: "pending"}
        assert (await sim_orders(sim))["client_ids_seen"] == {}
    finally:
        await _stop(m, task)
        await store.close()
