"""The order path rehearsed before a close (`OrderManager.rehearse`, `engine.hot_close`): everything an
order needs is built and dropped, and nothing is stored, reserved, sent or counted. Then the real
signal trades exactly once. And the two things that make the real path shorter: the request signed
before the commit (`BinanceExecution.prepare_submit`), used only while it is still valid, and the
Redis answers read straight from their sockets after the commit (`RespClient.read_ready`). The
simulator over real sockets, a real SQLite file, a real redis-server."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.orders.conftest import (
    bot_config,
    exchange_execution,
    make_signal,
    risk_gate,
    sim_orders,
    sim_rules,
    until,
)
from tradefleet.adapters import binance_exec
from tradefleet.coord.risk_state import RedisRiskState
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import Order, OrderStatus, Side
from tradefleet.engine.order_manager import OrderManager
from tradefleet.metrics import BotMetrics
from tradefleet.store import open_store


def _rows(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as c:
        return (c.execute("SELECT count(*) FROM orders").fetchone()[0],
                c.execute("SELECT count(*) FROM signals").fetchone()[0])  # fmt: skip


def _health_rows(path: Path) -> int:
    with sqlite3.connect(path) as c:
        n: int = c.execute("SELECT count(*) FROM store_health").fetchone()[0]
        return n


def _order(config: Any, signal: Any) -> Order:
    cid = client_order_id(signal.signal_id)
    return Order(cid, config.name, "binance", config.symbol, signal.side, "MARKET", signal.signal_id,
                 OrderStatus.PENDING, 1, 1, quote_amount=Decimal(100))  # fmt: skip


async def test_a_rehearsed_commit_writes_nothing_of_it_and_the_real_one_then_stores_it(
    sim, tmp_path: Path
) -> None:
    path = tmp_path / "r.sqlite"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        config = bot_config(sim)
        signal = make_signal(config, Side.BUY, 1)
        order = _order(config, signal)
        assert store.rehearse_commit(signal, order) is True  # ran, on this thread
        assert _rows(path) == (0, 0)
        await store.warmed()  # the disk flushed (`_warm_disk`), nothing written
        assert _rows(path) == (0, 0) and _health_rows(path) == 0
        assert await store.commit_order(signal, order) is True  # not "already stored"
        assert _rows(path) == (1, 1)
        stored = await store.get_order(order.client_order_id)
        assert stored is not None and stored.status is OrderStatus.PENDING
    finally:
        await store.close()


async def test_the_warm_up_flushes_the_wal_on_the_stores_thread_and_no_order_waits_for_it(
    sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up is the WAL's fdatasync on the store's thread, holding neither the connection nor
    SQLite's lock: an order's commit that comes while the disk stalls that flush runs on the loop at
    once (it used to wait behind the warm-up's commit on the store's thread, 1-15 ms)."""
    path = tmp_path / "r.sqlite"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    release = threading.Event()
    flushed: list[tuple[str, str]] = []
    fdatasync = os.fdatasync

    def stalled(fd: int) -> None:  # Python's callers only: SQLite's own syncs are its C code's
        flushed.append((threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
        release.wait(30)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", stalled)
    try:
        config = bot_config(sim)
        signal = make_signal(config, Side.BUY, 1)
        order = _order(config, signal)
        assert store.rehearse_commit(signal, order) is True
        await until(lambda: flushed, what="the warm-up's flush under way")
        assert flushed == [("sqlite-store_0", f"{path}-wal")]
        assert await asyncio.wait_for(store.commit_order(signal, order), 10) is True  # not behind it
        assert _rows(path) == (1, 1) and _health_rows(path) == 0
    finally:
        release.set()
        await store.warmed()
        await store.close()


async def test_a_rehearsal_never_waits_for_a_lock_someone_else_holds(sim, tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    shell = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        shell.execute("BEGIN IMMEDIATE")  # a sqlite3 shell holding the write lock
        config = bot_config(sim)
        signal = make_signal(config, Side.BUY, 1)
        assert store.rehearse_commit(signal, _order(config, signal)) is False
        shell.execute("ROLLBACK")
        assert store.rehearse_commit(signal, _order(config, signal)) is True
        assert _rows(path) == (0, 0)
    finally:
        shell.close()
        await store.close()


async def test_a_rehearsal_stores_reserves_sends_and_counts_nothing_then_the_signal_trades_once(
    sim, store, lease, run_manager, redis_server
) -> None:
    scope = f"t{uuid.uuid4().hex[:8]}"
    config = bot_config(sim, max_fleet_quote=Decimal(1000), risk_scope=scope)
    metrics = BotMetrics()
    holder: list[OrderManager] = []
    gate = risk_gate(config, RedisRiskState(redis_server.url, scope), metrics, holder)
    # (No user data stream: its reports, applied under the manager's lock, would make it busy at times.)
    m = await run_manager(config=config, store=store, execution=exchange_execution(config, user_stream=False),
                          lease=lease, rules=sim_rules(sim), metrics=metrics, risk=gate)  # fmt: skip
    holder.append(m)
    signal = make_signal(config, Side.BUY, 1)
    for _ in range(3):
        assert m.rehearse(signal) == "order"
    assert await store.orders(config.name) == [] and await store.signals(config.name) == []
    assert (await sim_orders(sim))["client_ids_seen"] == {}
    assert await RedisRiskState(redis_server.url, scope).exposure() == {}  # no fleet room taken
    assert metrics.registry.get_sample_value("tradefleet_orders_total", {"side": "BUY"}) == 0
    assert m.last_order is None and not m._orders and m.ready_to_act()
    m.submit_signal(signal)
    await m.settle()
    cid = client_order_id(signal.signal_id)
    assert (await sim_orders(sim))["accepted_per_client_id"] == {cid: 1}
    assert [o.client_order_id for o in await store.orders(config.name)] == [cid]
    assert {s.signal_id: s.action for s in await store.signals(config.name)} == {signal.signal_id: "order"}
    # Now long: a BUY would do nothing, and a SELL would trade.
    assert m.rehearse(make_signal(config, Side.BUY, 2)) == "no_order"
    assert m.rehearse(make_signal(config, Side.SELL, 2)) == "order"
    assert len(await store.orders(config.name)) == 1
    assert len((await sim_orders(sim))["accepted_per_client_id"]) == 1


async def test_a_busy_manager_rehearses_nothing(sim, store, lease, run_manager) -> None:
    config = bot_config(sim)
    m = await run_manager(config=config, store=store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim))  # fmt: skip
    m.submit_signal(make_signal(config, Side.BUY, 1))  # queued: the manager is acting on it
    assert m.rehearse(make_signal(config, Side.SELL, 2)) == "not_ready"
    await m.settle()


async def test_a_request_signed_ahead_is_sent_as_it_is_only_while_still_valid(sim, monkeypatch) -> None:
    config = bot_config(sim)
    ex = exchange_execution(config, user_stream=False)
    rest: Any = ex._rest  # type: ignore[attr-defined]
    sent: list[object] = []
    send = rest.send

    async def spy(signed: object) -> Any:
        sent.append(signed)
        return await send(signed)

    rest.send = spy
    now = [1000.0]
    monkeypatch.setattr(binance_exec, "_now_s", lambda: now[0])
    try:
        orders = [_order(config, make_signal(config, Side.BUY, n)) for n in range(4)]
        ex.prepare_submit(orders[0])
        prepared = ex._prepared  # type: ignore[attr-defined]
        assert prepared is not None and "signature" not in repr(prepared.request)
        await ex.submit(orders[0])
        assert sent == [prepared.request]  # the prepared bytes, as they were
        ex.prepare_submit(orders[1])
        other = ex._prepared  # type: ignore[attr-defined]
        await ex.submit(orders[2])  # another order: signed anew
        assert other is not None and sent[-1] is not other.request
        ex.prepare_submit(orders[3])
        stale = ex._prepared  # type: ignore[attr-defined]
        now[0] += config_window_s(ex) - 0.05  # less than MIN_RECV_WINDOW_MS of its window left
        await ex.submit(orders[3])
        assert sent[-1] is not stale.request
    finally:
        await ex.close()
    accepted = (await sim_orders(sim))["accepted_per_client_id"]
    assert accepted == {o.client_order_id: 1 for o in (orders[0], orders[2], orders[3])}


def config_window_s(ex: Any) -> float:
    return float(ex.recv_window_ms) / 1000
