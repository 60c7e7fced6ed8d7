"""The one write between a signal and its order (`Store.commit_order`) is atomic: a process killed
or a write failing anywhere inside it leaves the signal, its action and the PENDING order all stored,
or none of them. Real processes killed with SIGKILL, a real SQLite file, FerretDB for MongoDB."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.store import records as r
from tests.store.commit_runner import BOT, pair
from tradefleet.ports import Store
from tradefleet.store import SqliteStore
from tradefleet.store.mongo import MongoStore

ROOT = Path(__file__).resolve().parents[2]


class Backend:
    """Where a runner process commits and where the test reads afterwards."""

    def __init__(self, kind: str, tmp: Path, mongodb_url: str | None) -> None:
        self.kind = kind
        self.path = tmp / "commit.sqlite"
        self.mongodb_url = mongodb_url
        self.database = f"tf_test_{uuid.uuid4().hex[:16]}"

    def args(self) -> list[str]:
        if self.kind == "sqlite":
            return ["--store-url", f"sqlite:///{self.path}"]
        assert self.mongodb_url is not None
        return ["--store-url", self.mongodb_url, "--database", self.database]

    def open(self) -> Store:
        if self.kind == "sqlite":
            return SqliteStore(str(self.path))
        assert self.mongodb_url is not None
        return MongoStore(self.mongodb_url, database=self.database)


@pytest.fixture(params=["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    url = request.getfixturevalue("mongodb_url") if request.param == "mongo" else None
    b = Backend(request.param, tmp_path, url)
    yield b
    if b.kind == "mongo":
        store = b.open()
        assert isinstance(store, MongoStore)
        await store.open()
        assert store._client is not None
        await store._client.drop_database(b.database)
        await store.close()


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.store.commit_runner", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _run(*args: str) -> tuple[int, str, str]:
    proc = await _spawn(*args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _stored(backend: Backend) -> tuple[dict[str, str], dict[str, str]]:
    """(signal id -> action, client order id -> signal id) as a restarted bot reads them."""
    store = backend.open()
    await store.open()
    try:
        signals = {s.signal_id: s.action for s in await store.signals(BOT)}
        orders = {o.client_order_id: o.signal_id for o in await store.orders(BOT)}
    finally:
        await store.close()
    return signals, orders


@pytest.mark.parametrize("statement", ["INSERT INTO signals", "COMMIT"])
async def test_kill_9_inside_the_commit_transaction_leaves_neither_the_signal_nor_the_order(
    tmp_path: Path, statement: str
) -> None:
    """Killed when the transaction has written the order (and, at COMMIT, the signal too)."""
    backend = Backend("sqlite", tmp_path, None)
    code, out, err = await _run(*backend.args(), "--kill-at-statement", statement)
    assert code == -signal.SIGKILL, err[-2000:]
    assert "committed" not in out
    assert await _stored(backend) == ({}, {})

    # The file is sound and the same commit succeeds when it runs to the end.
    code, out, err = await _run(*backend.args())
    assert code == 0, err[-2000:]
    sig, order = pair("r0", 0)
    assert await _stored(backend) == ({sig.signal_id: "order"}, {order.client_order_id: sig.signal_id})


async def test_kill_9_right_after_the_commit_leaves_the_signal_with_its_action_and_the_pending_order(
    backend: Backend,
) -> None:
    """Killed before anything after the commit ran (on MongoDB the signal's own document is missing):
    a restarted bot reads the signal as acted on and finds the PENDING order to reconcile."""
    code, out, err = await _run(*backend.args(), "--kill-after-commit")
    assert code == -signal.SIGKILL, err[-2000:]
    assert out.splitlines() == ["committed 0"]
    sig, order = pair("r0", 0)
    assert await _stored(backend) == ({sig.signal_id: "order"}, {order.client_order_id: sig.signal_id})
    store = backend.open()
    await store.open()
    try:
        assert await store.signals(BOT) == [sig]
        assert await store.open_orders(BOT) == [order]
    finally:
        await store.close()


async def test_kill_9_at_random_moments_never_splits_a_signal_from_its_order(backend: Backend) -> None:
    rng = random.Random(17)
    committed = 0
    for run in range(4):
        proc = await _spawn(*backend.args(), "--run", f"r{run}", "--count", "100000")
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert first.startswith(b"committed"), (await proc.communicate())[1].decode()[-2000:]
        await asyncio.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, _ = await proc.communicate()
        committed += 1 + out.count(b"committed")
    signals, orders = await _stored(backend)
    # Every commit that returned is there, and perhaps the one the kill interrupted; never half of one.
    assert committed <= len(orders) <= committed + 4
    assert set(signals) == set(orders.values())
    assert set(signals.values()) == {"order"}


@pytest.mark.parametrize("table", ["signals", "orders"])
async def test_a_commit_failing_inside_its_transaction_writes_nothing(tmp_path: Path, table: str) -> None:
    path = tmp_path / "refuse.sqlite"
    store = SqliteStore(str(path))
    await store.open()
    try:
        other = sqlite3.connect(path)
        other.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'no'); END")
        other.commit()
        sig, order = pair("r0", 0)
        with pytest.raises(sqlite3.IntegrityError):
            await store.commit_order(sig, order)
        assert await store.signals(BOT) == [] and await store.orders(BOT) == []

        other.execute("DROP TRIGGER refuse")
        other.commit()
        other.close()
        assert await store.commit_order(sig, order) is True
        assert await store.signals(BOT) == [sig] and await store.orders(BOT) == [order]
        assert await store.signals(r.BOT) == []
    finally:
        await store.close()
