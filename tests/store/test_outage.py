"""Store outages made real: another connection holding SQLite's write lock, the file made
immutable (chattr +i), a MongoDB nobody listens for. Nothing that matters is lost, nothing is
written twice, and the counters tell the truth."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.store import records as r
from tests.store.waiting import eventually, sample
from tradefleet.domain.models import OrderStatus, Side
from tradefleet.errors import StoreUnavailable
from tradefleet.metrics import BotMetrics
from tradefleet.store import BufferedStore, SqliteStore
from tradefleet.store.mongo import MongoStore

FAILURES = "tradefleet_store_write_failures_total"
RETRIES = "tradefleet_store_retries_total"
ENQUEUED = "tradefleet_store_enqueued_total"
DROPPED = "tradefleet_store_dropped_total"
BUFFERED = "tradefleet_store_buffered"


class WriteLock:
    """Another process's view of the file: a second connection holding the write lock."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)

    def hold(self) -> None:
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("COMMIT")


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> SqliteStore:
    # A short busy timeout so each attempt against the held lock fails quickly.
    store = SqliteStore(str(tmp_path / "bot.sqlite"), busy_timeout_ms=50)
    await store.open()
    return store


@pytest.fixture
def lock(tmp_path: Path) -> Iterator[WriteLock]:
    held = WriteLock(tmp_path / "bot.sqlite")
    yield held
    held.conn.close()


def buffered_over(store: SqliteStore | MongoStore, metrics: BotMetrics, **kw: int) -> BufferedStore:
    buffered = BufferedStore(store, metrics, retry_max_s=0.2, **{"flush_ms": 20, "batch_max": 50, **kw})
    buffered.start()
    return buffered


async def test_write_lock_held_elsewhere_then_released_loses_nothing_and_duplicates_nothing(
    sqlite_store: SqliteStore, lock: WriteLock, metrics: BotMetrics
) -> None:
    buffered = buffered_over(sqlite_store, metrics)
    lock.hold()
    for i in range(300):
        buffered.enqueue_price(r.price(i))
    o = r.order()
    sig = r.signal(signal_id=o.signal_id)
    fill = r.update(
        o.client_order_id, OrderStatus.FILLED, filled="0.0027", quote="100", trade_id=1, fee="0.1"
    )

    # The first durable write meets the lock: the call returns "queued", not "durable", and never hangs.
    assert await buffered.record_signal(sig) is False
    assert buffered.healthy is False
    assert await buffered.record_order(o) is False
    assert await buffered.record_update(fill) is False
    await eventually(lambda: sample(metrics, RETRIES) >= 2, what="the writer retrying")
    assert sample(metrics, FAILURES, kind="signal") >= 1
    assert sample(metrics, BUFFERED, kind="signal") == 1
    assert sample(metrics, BUFFERED, kind="order") == 1
    assert sample(metrics, BUFFERED, kind="price") == 300
    assert await sqlite_store.signals(r.BOT) == []  # readers still work in WAL mode; nothing written yet

    lock.release()
    assert await buffered.flush(timeout=30)

    assert buffered.healthy is True
    assert await sqlite_store.signals(r.BOT) == [sig]
    stored = await sqlite_store.get_order(o.client_order_id)
    assert (
        stored is not None
        and stored.status is OrderStatus.FILLED
        and stored.fee == r.update(o.client_order_id, OrderStatus.FILLED, fee="0.1").fee
    )
    assert await sqlite_store.order_updates(o.client_order_id) == [fill]
    assert await sqlite_store.prices(r.BOT, limit=10_000) == [r.price(i) for i in range(300)]
    assert sample(metrics, ENQUEUED, kind="price") == 300
    assert sample(metrics, DROPPED) == 0
    for kind in ("price", "signal", "order", "update"):
        assert sample(metrics, BUFFERED, kind=kind) == 0
    await buffered.close()


async def test_full_buffer_during_an_outage_drops_the_oldest_prices_counts_them_and_keeps_every_signal(
    sqlite_store: SqliteStore, lock: WriteLock, metrics: BotMetrics
) -> None:
    buffered = buffered_over(sqlite_store, metrics, buffer_max=100, batch_max=20)
    lock.hold()
    for i in range(250):
        buffered.enqueue_price(r.price(i))
    signals = [r.signal(i) for i in range(5)]
    for sig in signals:
        await buffered.record_signal(sig)
    await eventually(lambda: sample(metrics, FAILURES, kind="signal") >= 3, what="repeated failures")
    for i in range(250, 260):  # the feed keeps going while the store is down
        buffered.enqueue_price(r.price(i))

    lock.release()
    assert await buffered.flush(timeout=30)

    assert await sqlite_store.signals(r.BOT) == signals
    assert await sqlite_store.prices(r.BOT, limit=10_000) == [r.price(i) for i in range(160, 260)]
    assert buffered.dropped == 160
    assert sample(metrics, DROPPED) == 160
    assert sample(metrics, ENQUEUED, kind="price") == 260
    await buffered.close()


def _chattr(flag: str, *paths: Path) -> bool:
    tool = shutil.which("chattr")
    if tool is None:
        return False
    return subprocess.run([tool, flag, *map(str, paths)], check=False, capture_output=True).returncode == 0


async def test_file_made_immutable_then_writable_again_recovers_every_record(
    tmp_path: Path, sqlite_store: SqliteStore, metrics: BotMetrics
) -> None:
    # The database and its WAL become unwritable (a full or failing disk looks the same to SQLite:
    # an I/O error). The -shm file is left alone: it is memory-mapped, and denying it kills the process.
    buffered = buffered_over(sqlite_store, metrics)
    first = r.signal(0)
    assert await buffered.record_signal(first) is True  # creates the WAL
    files = [tmp_path / "bot.sqlite", tmp_path / "bot.sqlite-wal"]
    if not _chattr("+i", *files):
        pytest.skip("chattr +i does not work on this filesystem (e.g. tmpfs) or without root")
    try:
        late = r.signal(1)
        assert await buffered.record_signal(late) is False
        with pytest.raises(StoreUnavailable, match="I/O error"):
            await sqlite_store.ping()
        for i in range(40):
            buffered.enqueue_price(r.price(i))
        await eventually(lambda: sample(metrics, RETRIES) >= 2, what="the writer retrying")
    finally:
        _chattr("-i", *files)
    assert await buffered.flush(timeout=30)
    assert [s.signal_id for s in await sqlite_store.signals(r.BOT)] == [first.signal_id, late.signal_id]
    assert len(await sqlite_store.prices(r.BOT)) == 40
    await buffered.close()


def unreachable_mongo() -> MongoStore:
    return MongoStore(f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=100", database="tf_test")


async def test_unreachable_mongodb_is_a_temporary_error_on_open_write_and_read() -> None:
    store = unreachable_mongo()
    with pytest.raises(StoreUnavailable, match="unavailable"):
        await store.open()
    with pytest.raises(StoreUnavailable):
        await store.write_prices([r.price(0)])
    with pytest.raises(StoreUnavailable):
        await store.insert_signal(r.signal())
    with pytest.raises(StoreUnavailable):
        await store.get_order("tf-1")
    await store.close()


async def test_shutdown_while_mongodb_is_unreachable_logs_every_unwritten_signal_and_order_in_full(
    metrics: BotMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    buffered = buffered_over(unreachable_mongo(), metrics)
    o = r.order()
    sig = r.signal(signal_id=o.signal_id)
    assert await buffered.record_signal(sig) is False
    assert await buffered.record_order(o) is False
    for i in range(10):
        buffered.enqueue_price(r.price(i))
    await eventually(lambda: sample(metrics, FAILURES, kind="signal") >= 1, what="a failed attempt")

    with caplog.at_level(logging.ERROR, logger="tradefleet.store"):
        await buffered.close(timeout=0.5)

    unwritten = [rec for rec in caplog.records if getattr(rec, "event", None) == "store_unwritten"]
    assert [(rec.kind, rec.record) for rec in unwritten] == [  # type: ignore[attr-defined]
        ("signal", _asdict(sig)),
        ("order", _asdict(o)),
    ]
    summary = [rec for rec in caplog.records if getattr(rec, "event", None) == "store_close_incomplete"]
    assert summary and summary[0].prices_lost == 10  # type: ignore[attr-defined]


def _asdict(record: object) -> dict[str, object]:
    import dataclasses

    return dataclasses.asdict(record)  # type: ignore[call-overload, no-any-return]


async def test_a_probe_notices_an_outage_when_nothing_is_being_written(
    sqlite_store: SqliteStore, lock: WriteLock, metrics: BotMetrics
) -> None:
    buffered = buffered_over(sqlite_store, metrics)
    await buffered.ping()
    assert buffered.healthy
    lock.hold()
    with pytest.raises(StoreUnavailable, match="locked"):
        await buffered.ping()
    assert not buffered.healthy
    lock.release()
    await buffered.ping()
    assert buffered.healthy
    await buffered.close()


async def test_a_write_that_hangs_times_out_is_retried_and_still_lands_exactly_once(
    tmp_path: Path, lock: WriteLock, metrics: BotMetrics
) -> None:
    # The store waits (busy timeout 20 s) far longer than the writer will: each attempt's outcome is
    # unknown when it times out, and the abandoned attempts complete later, after the lock is gone.
    store = SqliteStore(str(tmp_path / "bot.sqlite"), busy_timeout_ms=20_000)
    await store.open()
    buffered = BufferedStore(store, metrics, retry_max_s=0.2, write_timeout_s=0.2)
    buffered.start()
    lock.hold()
    sig = r.signal()
    assert await buffered.record_signal(sig) is False  # answered within the write timeout, not 20 s
    for i in range(30):
        buffered.enqueue_price(r.price(i))
    await eventually(lambda: sample(metrics, RETRIES) >= 2, what="timed-out attempts retried")
    lock.release()

    assert await buffered.flush(timeout=30)
    assert await store.signals(r.BOT) == [sig]
    assert await store.prices(r.BOT) == [r.price(i) for i in range(30)]
    assert buffered.healthy
    await buffered.close()


async def test_an_order_insert_waits_through_a_lock_until_durable_and_lands_once(
    sqlite_store: SqliteStore, lock: WriteLock, metrics: BotMetrics
) -> None:
    """The order manager's rule "stored before sent": while the store cannot be written, the PENDING
    insert does not return (so no request can leave); once it can, it returns the store's answer."""
    buffered = buffered_over(sqlite_store, metrics)
    o = r.order()
    lock.hold()
    insert = asyncio.create_task(buffered.insert_order(o))
    await asyncio.sleep(0.5)
    assert not insert.done(), "an order insert must not return while the store cannot be written"
    assert sample(metrics, "tradefleet_store_write_failures_total", kind="order") >= 1
    lock.release()
    assert await asyncio.wait_for(insert, 10) is True
    assert await buffered.insert_order(o) is False  # that client order id exists: the store says so
    assert [x.client_order_id for x in await buffered.orders(o.bot)] == [o.client_order_id]
    await buffered.close()


async def test_an_order_committed_after_an_outage_never_overtakes_the_reports_recorded_before_it(
    sqlite_store: SqliteStore, lock: WriteLock, metrics: BotMetrics
) -> None:
    """A commit goes straight to the store, but not past what was recorded before it: the fill of a
    BUY queued during an outage is durable by the time the SELL that sells it is (and may be sent).
    Before, the SELL overtook it while the writer was still backing off; a kill -9 then left the
    next leader a BUY without its fill or fee, and a SELL sized from them (a whole step of dust)."""
    buffered = BufferedStore(sqlite_store, metrics, retry_max_s=60, flush_ms=20, batch_max=50)
    buffered.start()
    buy = r.order()
    assert await buffered.insert_order(buy) is True
    fill = r.update(buy.client_order_id, OrderStatus.FILLED, filled="0.0027", quote="100", trade_id=1,
                    fee="0.0000027")  # fmt: skip
    lock.hold()
    assert await buffered.record_update(fill) is False  # queued: the store cannot be written
    # The writer backs off, its pause doubling after each failure (1.6 s after the 6th).
    await eventually(lambda: sample(metrics, FAILURES, kind="update") >= 6, what="the writer backing off")
    lock.release()
    sell = dataclasses.replace(r.order(), side=Side.SELL, quantity=Decimal("0.0027"), quote_amount=None)
    assert await buffered.commit_order(r.signal(signal_id=sell.signal_id), sell) is True
    stored = await sqlite_store.get_order(buy.client_order_id)
    assert stored is not None and (stored.status, stored.fee) == (OrderStatus.FILLED, Decimal("0.0000027"))
    assert buffered.buffered()["update"] == 0
    await buffered.close()


async def test_store_opened_while_its_file_is_read_only_recovers_once_it_is_writable(
    tmp_path: Path, metrics: BotMetrics
) -> None:
    # #11: SQLite opens an unwritable file read-only, without an error, and that connection stayed
    # read-only: every write failed with SQLITE_READONLY long after the file was writable again.
    path = tmp_path / "ro.sqlite"
    first = SqliteStore(str(path))
    await first.open()
    await first.close()  # a clean close: no WAL left, only the database file
    if not _chattr("+i", path):
        pytest.skip("chattr +i does not work on this filesystem (e.g. tmpfs) or without root")
    store = SqliteStore(str(path))
    try:
        await store.open()  # succeeds: read-only
        buffered = buffered_over(store, metrics)
        signal = r.signal(0)
        assert await buffered.record_signal(signal) is False
        with pytest.raises(StoreUnavailable, match="readonly"):
            await store.ping()
    finally:
        _chattr("-i", path)
    assert await buffered.flush(timeout=30)
    await store.ping()
    assert [s.signal_id for s in await store.signals(r.BOT)] == [signal.signal_id]
    await buffered.close()


def test_a_sqlite_file_on_a_network_filesystem_is_refused_and_local_disks_are_not() -> None:
    # #11: the embedded store supports processes on one host's local disk; SQLite's locks do not hold
    # on NFS/CIFS, so two hosts could both write. (A real NFS mount needs a server this machine does
    # not run; the mount table is the input here, the local case reads the real /proc/self/mounts.)
    from tradefleet.store.sqlite import network_filesystem

    mounts = "/dev/vda / ext4 rw 0 0\nserver:/export /mnt/shared nfs4 rw 0 0\n"
    assert network_filesystem("/mnt/shared/bots/bot.sqlite", mounts) == "nfs4"
    assert network_filesystem("/mnt/sharedX/bot.sqlite", mounts) is None
    assert network_filesystem("/var/lib/bot.sqlite", mounts) is None
    assert network_filesystem("/tmp/bot.sqlite") is None  # this machine's real mount table


async def test_opening_a_sqlite_store_on_a_network_filesystem_fails_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tradefleet.store.sqlite as sqlite_mod
    from tradefleet.errors import PermanentError

    monkeypatch.setattr(sqlite_mod, "network_filesystem", lambda path: "nfs4")
    store = SqliteStore(str(tmp_path / "bot.sqlite"))
    with pytest.raises(PermanentError, match=r"nfs4 network filesystem.*use MongoDB to share a store"):
        await store.open()
    await store.close()
