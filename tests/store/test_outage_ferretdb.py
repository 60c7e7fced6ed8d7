"""MongoDB-protocol outages made real: the server process (FerretDB, our own per test) is killed with
SIGKILL in the middle of a stream of writes and started again on the same port and data.

Whatever was in flight at the kill (a batch committed whose reply never came, or never committed)
ends up stored exactly once; signals, orders and fills recorded during the outage are written when
the server is back; no price is dropped while the buffer has room."""

from __future__ import annotations

import asyncio

import pytest

from tests.plugins.ferretdb import FerretDB
from tests.store import records as r
from tests.store.test_outage import BUFFERED, DROPPED, ENQUEUED, FAILURES, RETRIES, buffered_over
from tests.store.waiting import eventually, sample
from tradefleet.domain.models import OrderStatus
from tradefleet.errors import PermanentError
from tradefleet.metrics import BotMetrics
from tradefleet.store import BufferedStore
from tradefleet.store.mongo import MongoStore

pytestmark = pytest.mark.mongo


def store_on(server: FerretDB) -> MongoStore:
    # Short server selection: each attempt during the outage fails fast instead of waiting 5 s.
    return MongoStore(f"{server.url}&serverSelectionTimeoutMS=300&connectTimeoutMS=300", database="tf_outage")


async def test_server_killed_mid_stream_and_restarted_loses_nothing_and_duplicates_nothing(
    ferretdb: FerretDB, metrics: BotMetrics
) -> None:
    store = store_on(ferretdb)
    await store.open()
    buffered = buffered_over(store, metrics, flush_ms=5, batch_max=25)
    before = r.signal(0)
    assert await buffered.record_signal(before) is True

    async def feed() -> None:
        for i in range(600):
            buffered.enqueue_price(r.price(i))
            await asyncio.sleep(0.002)

    feeding = asyncio.create_task(feed())
    await eventually(lambda: sample(metrics, ENQUEUED, kind="price") >= 200, what="the stream running")
    ferretdb.kill()  # batches are being written right now

    o = r.order()
    during = r.signal(1, signal_id=o.signal_id)
    fill = r.update(
        o.client_order_id, OrderStatus.FILLED, filled="0.0027", quote="100", trade_id=1, fee="0.1"
    )
    assert await buffered.record_signal(during) is False
    assert await buffered.record_order(o) is False
    assert await buffered.record_update(fill) is False
    await eventually(lambda: sample(metrics, FAILURES, kind="signal") >= 1, what="a failed attempt")
    assert buffered.healthy is False
    await feeding

    ferretdb.start()
    assert await buffered.flush(timeout=60)

    assert buffered.healthy is True
    assert await store.signals(r.BOT) == [before, during]
    stored = await store.get_order(o.client_order_id)
    assert stored is not None and stored.status is OrderStatus.FILLED
    assert await store.order_updates(o.client_order_id) == [fill]
    assert await store.prices(r.BOT, limit=10_000) == [r.price(i) for i in range(600)]
    assert sample(metrics, DROPPED) == 0
    for kind in ("price", "signal", "order", "update"):
        assert sample(metrics, BUFFERED, kind=kind) == 0
    await buffered.close()
    await store.close()


async def test_an_order_insert_waits_while_the_server_is_down_and_lands_once_when_it_is_back(
    ferretdb: FerretDB, metrics: BotMetrics
) -> None:
    """ "Stored before sent": the PENDING insert does not return while no server answers."""
    store = store_on(ferretdb)
    await store.open()
    buffered = buffered_over(store, metrics)
    o = r.order()
    ferretdb.kill()
    insert = asyncio.create_task(buffered.insert_order(o))
    await eventually(lambda: sample(metrics, FAILURES, kind="order") >= 2, what="failed order attempts")
    assert not insert.done(), "an order insert must not return while the store cannot be written"

    ferretdb.start()
    assert await asyncio.wait_for(insert, 30) is True
    assert await buffered.insert_order(o) is False  # that client order id exists: the store says so
    assert [x.client_order_id for x in await buffered.orders(o.bot)] == [o.client_order_id]
    await buffered.close()
    await store.close()


async def test_data_written_before_a_kill_is_there_after_the_restart(ferretdb: FerretDB) -> None:
    store = store_on(ferretdb)
    await store.open()
    await store.write_prices([r.price(i) for i in range(50)])
    await store.write_candles([r.candle(0), r.candle(1, closed=False)])
    ferretdb.kill()
    ferretdb.start()
    reopened = store_on(ferretdb)
    await reopened.open()
    assert await reopened.prices(r.BOT) == [r.price(i) for i in range(50)]
    assert await reopened.candles(r.SYMBOL, "1m") == [r.candle(0), r.candle(1, closed=False)]
    await reopened.close()
    await store.close()


async def test_a_wrong_password_is_a_permanent_error_that_does_not_show_the_password(
    ferretdb: FerretDB,
) -> None:
    wrong = "not-" + ferretdb.password
    store = MongoStore(ferretdb.url.replace(ferretdb.password, wrong), database="tf_outage")
    with pytest.raises(PermanentError, match="Authentication failed") as raised:
        await store.open()
    assert wrong not in str(raised.value) and ferretdb.password not in str(raised.value)
    await store.close()


async def test_a_server_that_hangs_then_wakes_up_applies_every_abandoned_attempt_exactly_once(
    ferretdb: FerretDB, metrics: BotMetrics
) -> None:
    """SIGSTOP: requests already sent sit in the socket unanswered, the writer gives up on them after
    its write timeout and tries again; on SIGCONT the server works through what it still holds and
    the retries. Each record must be stored once. (Which request a pause catches is up to timing; the
    deterministic proof that a price insert is idempotent is the racing-writers test in
    test_mongo_servers.py, which fails every time without the unique identity index.)"""
    store = store_on(ferretdb)
    await store.open()
    buffered = BufferedStore(store, metrics, retry_max_s=0.2, write_timeout_s=0.3, flush_ms=5, batch_max=20)
    buffered.start()
    for i in range(40):
        buffered.enqueue_price(r.price(i))
    assert await buffered.flush(timeout=30)

    ferretdb.pause()
    sig = r.signal()
    assert await buffered.record_signal(sig) is False  # answered within the write timeout
    for i in range(40, 120):
        buffered.enqueue_price(r.price(i))
    await eventually(lambda: sample(metrics, RETRIES) >= 3, what="timed-out attempts retried")
    ferretdb.resume()

    assert await buffered.flush(timeout=60)
    assert await store.signals(r.BOT) == [sig]
    assert await store.prices(r.BOT, limit=10_000) == [r.price(i) for i in range(120)]
    assert buffered.healthy
    await buffered.close()
    await store.close()
