"""One durable write between a signal and its order request: the signal, its action and the PENDING
order are one SQLite transaction, and it is the only one before the request leaves. Real SQLite file
(its own connection's statements are watched with sqlite3's trace callback), the simulator over
sockets, ccxt as the client."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.orders.conftest import bot_config, exchange_execution, make_signal, sim_orders, sim_rules, until
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import Order, OrderUpdate, Side
from tradefleet.ports import Execution, Store
from tradefleet.store import SqliteStore
from tradefleet.store.buffered import BufferedStore


class SeenAtSend:
    """The bot's Execution, noting what the store file holds as each request is about to leave."""

    def __init__(self, inner: Execution, db: Path, commits: list[str]) -> None:
        self.inner = inner
        self.db = db
        self.commits = commits
        self.seen: list[tuple[int, list[tuple[str, str]], list[tuple[str, str]]]] = []

    async def submit(self, order: Order) -> OrderUpdate:
        reader = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            signals = reader.execute("SELECT signal_id, action FROM signals").fetchall()
            orders = reader.execute("SELECT client_order_id, status FROM orders").fetchall()
        finally:
            reader.close()
        self.seen.append((len(self.commits), signals, orders))
        return await self.inner.submit(order)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _sqlite(store: Store) -> SqliteStore:
    raw = store.store if isinstance(store, BufferedStore) else store
    assert isinstance(raw, SqliteStore)
    return raw


async def test_the_signal_its_action_and_the_pending_order_are_the_one_commit_before_the_request(
    sim, any_store, lease, run_manager, metrics, tmp_path
):
    config = bot_config(sim)
    commits: list[str] = []

    def trace(statement: str) -> None:
        if statement == "COMMIT":
            commits.append(statement)

    raw = _sqlite(any_store)
    await raw._run(lambda conn: conn.set_trace_callback(trace))
    execution = SeenAtSend(exchange_execution(config), Path(raw.path), commits)
    m = await run_manager(config=config, store=any_store, execution=execution, lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    before = len(commits)
    buy = make_signal(config, Side.BUY, 1)
    m.submit_signal(buy)  # unstored, as the engine hands it over when the manager is ready
    cid = client_order_id(buy.signal_id)
    await until(lambda: execution.seen, what="the order request")

    at_send, signals, orders = execution.seen[0]
    assert at_send - before == 1, "exactly one commit between the signal and the request"
    assert signals == [(buy.signal_id, "order")]
    assert orders == [(cid, "PENDING")]
    await until(lambda: m.idle(), what="the order final")
    assert (await sim_orders(sim))["accepted_per_client_id"] == {cid: 1}
    assert {s.signal_id: s.action for s in await any_store.signals(config.name)} == {buy.signal_id: "order"}


async def test_a_signal_handed_over_unstored_while_stopping_is_stored_pending_for_the_next_leader(
    sim, any_store, lease, run_manager, metrics
):
    config = bot_config(sim)
    m = await run_manager(config=config, store=any_store, execution=exchange_execution(config), lease=lease,
                          rules=sim_rules(sim), metrics=metrics)  # fmt: skip
    assert m.ready_to_act()
    assert await m.drain(1.0)
    assert not m.ready_to_act()
    buy = make_signal(config, Side.BUY, 1)
    m.submit_signal(buy)
    await m.settle()
    assert await any_store.signals(config.name) == [buy]  # pending: the next leader's takeover acts on it
    assert await any_store.orders(config.name) == []
    assert (await sim_orders(sim))["client_ids_seen"] == {}
