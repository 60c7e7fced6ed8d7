"""What is particular to the embedded SQLite backend: URLs, the file format, versions, several processes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from tests.store import records as r
from tradefleet.domain.models import OrderStatus
from tradefleet.errors import ConfigError, PermanentError, StoreUnavailable
from tradefleet.store import SqliteStore, open_store
from tradefleet.store.mongo import MongoStore
from tradefleet.store.sqlite_schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "path", "busy_ms"),
    [
        ("sqlite:///tradefleet.sqlite", "tradefleet.sqlite", 5000),
        ("sqlite:///data/bot.sqlite", "data/bot.sqlite", 5000),
        ("sqlite:////var/lib/tradefleet/bot.sqlite", "/var/lib/tradefleet/bot.sqlite", 5000),
        ("sqlite://:memory:", ":memory:", 5000),
        ("sqlite:///a.sqlite?busy_timeout_ms=250", "a.sqlite", 250),
    ],
)
def test_sqlite_urls_name_the_file_relative_or_absolute(url: str, path: str, busy_ms: int) -> None:
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert (store.path, store.busy_timeout_ms) == (path, busy_ms)


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("mongodb://localhost:27017", "tradefleet"),
        ("mongodb://localhost:27017/", "tradefleet"),
        ("mongodb://u:p@h1:27017,h2:27017/bots?replicaSet=rs0", "bots"),
        ("mongodb+srv://cluster0.example.net/prod_bots?retryWrites=true", "prod_bots"),
    ],
)
def test_mongodb_urls_name_the_database_or_default_to_tradefleet(url: str, database: str) -> None:
    store = open_store(url)
    assert isinstance(store, MongoStore)
    assert store.database_name == database


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("sqlite://host/file.sqlite", "has no host"),
        ("sqlite:///", "names no file"),
        ("sqlite:///dir/", "names no file"),
        ("sqlite:///a.sqlite?timeout=5", "unknown option 'timeout'"),
        ("sqlite:///a.sqlite?busy_timeout_ms=soon", "whole number"),
        ("postgres://alice:hunter2@db/x", "is not understood"),
        ("mongodb:///nohost", "names no host"),
        ("mongodb://alice:hunter2@h/bad.name", "not a valid MongoDB database name"),
    ],
)
def test_an_unreadable_store_url_says_what_to_write_and_never_shows_a_password(url: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint) as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value)


async def test_decimals_are_stored_as_exact_text_in_a_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite"
    store = SqliteStore(str(path))
    await store.open()
    await store.write_prices([r.price(0)])
    await store.close()

    with sqlite3.connect(path) as raw:
        row = raw.execute("SELECT typeof(bid), bid, bid_qty, mid, spread FROM prices").fetchone()
        assert row == ("text", "37000.01", "0.00120000", "37000.015", "0.01")
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_in_memory_store_works_for_throwaway_runs() -> None:
    store = open_store("sqlite://:memory:")
    await store.open()
    assert await store.insert_signal(r.signal()) is True
    assert len(await store.signals(r.BOT)) == 1
    await store.close()


async def test_in_memory_store_merges_reports_like_a_file_store(tmp_path: Path) -> None:
    """A private in-memory store keeps the order documents it committed instead of reading them
    back for each report: the documents, answers and history must be a file store's, reports
    repeated and out of order included, and a rolled-back merge must not be remembered."""
    memory, disk = SqliteStore(":memory:"), SqliteStore(str(tmp_path / "s.sqlite"))
    coid = "tf-merge"
    reports = [
        r.update(coid, OrderStatus.NEW),
        r.update(coid, OrderStatus.PARTIALLY_FILLED, filled="0.001", quote="37", trade_id=1, fee="0.01"),
        r.update(coid, OrderStatus.NEW),  # late and repeated: changes nothing
        r.update(coid, OrderStatus.FILLED, filled="0.002", quote="74", trade_id=2, fee="0.02"),
        r.update(coid, OrderStatus.PARTIALLY_FILLED, filled="0.001", quote="37", trade_id=1, fee="0.01"),
        r.update(coid, OrderStatus.FILLED, filled="0.002", quote="74"),  # the REST query of the same
    ]
    answers = {}
    placed = r.order(coid)
    for store in (memory, disk):
        await store.open()
        assert await store.insert_order(placed)
        answers[store.path] = [await store.apply_order_update(u) for u in reports]
    assert answers[":memory:"] == answers[disk.path]
    assert await memory.get_order(coid) == await disk.get_order(coid) == answers[":memory:"][-1]
    assert await memory.order_updates(coid) == await disk.order_updates(coid)
    # A merge that fails inside its transaction is rolled back and not remembered.
    before = await memory.get_order(coid)
    broken = r.update(coid, OrderStatus.FILLED, filled="0.003", quote="111", trade_id=3, fee="0.03")
    original = memory._save_order

    def fail(c: sqlite3.Connection, o: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    memory._save_order = fail  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await memory.apply_order_update(broken)
    memory._save_order = original  # type: ignore[method-assign]
    assert await memory.get_order(coid) == before
    again = await memory.apply_order_update(broken)
    assert (
        again is not None
        and again.filled_qty == Decimal("0.003")
        and again.fee == before.fee + Decimal("0.03")
    )
    assert await memory.get_order(coid) == again
    for store in (memory, disk):
        await store.close()


async def test_a_file_from_a_newer_tradefleet_is_refused_not_guessed_at(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SqliteStore(str(path))
    with pytest.raises(PermanentError, match="newer than this tradefleet"):
        await store.open()
    await store.close()


async def test_a_file_that_is_not_a_database_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just some words that fill the header page " * 100)
    store = SqliteStore(str(path))
    with pytest.raises(PermanentError, match="not a usable database"):
        await store.open()
    await store.close()


async def test_reopening_a_file_keeps_everything_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = str(tmp_path / "bot.sqlite")
    first = SqliteStore(path)
    await first.open()
    sig = r.signal()
    await first.insert_signal(sig)
    await first.close()

    second = SqliteStore(path)
    await second.open()
    assert await second.signals(r.BOT) == [sig]
    await second.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from tests.store import records as r
    from tradefleet.store import SqliteStore

    async def main():
        store = SqliteStore({path!r}, lock="wait")  # a second process waits for the first (sqlite_lock)
        await store.open()
        for i in range(60):
            await store.insert_signal(r.signal(i, signal_id=f"sig-{{i}}"))
            await store.write_prices([r.price(j) for j in range(i * 10, i * 10 + 20)])
        await store.close()

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_two_processes_started_on_one_file_at_once_take_turns_and_store_every_record_exactly_once(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "shared.sqlite")
    script = _WRITER.format(root=str(ROOT), path=path)
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()

    store = SqliteStore(path)
    await store.open()
    assert [s.signal_id for s in await store.signals(r.BOT)] == [f"sig-{i}" for i in range(60)]
    assert await store.prices(r.BOT, limit=10_000) == [r.price(j) for j in range(610)]
    await store.close()


async def test_opening_while_another_process_holds_the_lock_is_unavailable_then_works(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite"
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # e.g. another replica migrating the fresh file
    store = SqliteStore(str(path), busy_timeout_ms=50)
    with pytest.raises(StoreUnavailable, match="locked"):
        await store.open()
    locker.execute("COMMIT")
    locker.close()

    await store.open()
    assert await store.insert_signal(r.signal()) is True
    await store.close()
