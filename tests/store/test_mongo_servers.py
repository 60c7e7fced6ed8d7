"""What the MongoDB backend does on servers that are not quite MongoDB.

Runs on the session's server: FerretDB 1.x (no time-series, no Decimal128) unless MONGODB_URL names a
real MongoDB, where the same tests check that the full features are used. Expectations follow from
the server's own `buildInfo`, never from how the store answered."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from bson.decimal128 import Decimal128
from pymongo import AsyncMongoClient

from tests.store import records as r
from tradefleet.store.mongo import MongoStore
from tradefleet.store.mongo_docs import Doc, dec, decimals_as_strings

pytestmark = pytest.mark.mongo


@pytest.fixture
async def client(mongodb_url: str) -> AsyncIterator[AsyncMongoClient[Doc]]:
    c: AsyncMongoClient[Doc] = AsyncMongoClient(mongodb_url, tz_aware=True, serverSelectionTimeoutMS=10_000)
    yield c
    await c.close()


@pytest.fixture
async def dbname(client: AsyncMongoClient[Doc]) -> AsyncIterator[str]:
    name = f"tf_test_{uuid.uuid4().hex[:16]}"
    yield name
    await client.drop_database(name)


async def _is_ferretdb_1(client: AsyncMongoClient[Doc]) -> bool:
    info = await client.admin.command("buildInfo")
    return str(info.get("ferretdbVersion", "")).startswith("v1.")


async def test_capabilities_are_detected_and_each_fallback_is_logged_once(
    client: AsyncMongoClient[Doc], mongodb_url: str, dbname: str, caplog: pytest.LogCaptureFixture
) -> None:
    ferret = await _is_ferretdb_1(client)
    store = MongoStore(mongodb_url, database=dbname)
    with caplog.at_level(logging.WARNING, logger="tradefleet.store"):
        await store.open()
        await store.ping()
        await store.write_prices([r.price(0)])

    caps = store.capabilities
    assert caps is not None and caps.decimal128 is not ferret
    events = [getattr(rec, "event", None) for rec in caplog.records]
    assert events.count("mongodb_no_decimal128") == (1 if ferret else 0)
    assert events.count("mongodb_no_timeseries") == (0 if caps.timeseries else 1)
    if ferret:
        assert caps.timeseries is False  # FerretDB 1.x refuses `create` with `timeseries`
    listed = [c async for c in await client[dbname].list_collections(filter={"name": "prices"})]
    assert listed[0].get("type", "collection") == ("timeseries" if caps.timeseries else "collection")
    await store.close()


async def test_an_ordinary_prices_collection_has_a_unique_sample_identity_index(
    client: AsyncMongoClient[Doc], mongodb_url: str, dbname: str
) -> None:
    await client[dbname].create_collection("prices")  # as left by a server without time-series
    store = MongoStore(mongodb_url, database=dbname)
    await store.open()
    assert store.capabilities is not None and store.capabilities.timeseries is False
    indexes = [ix async for ix in await client[dbname]["prices"].list_indexes()]
    unique = [dict(ix["key"]) for ix in indexes if ix.get("unique")]
    assert unique == [{"meta.bot": 1, "local_ts": 1, "update_id": 1}]
    await store.close()


async def test_two_writers_racing_with_the_same_batch_store_each_sample_once_without_time_series(
    client: AsyncMongoClient[Doc], mongodb_url: str, dbname: str
) -> None:
    """The unique index closes the check-then-insert gap that a time-series collection leaves open."""
    await client[dbname].create_collection("prices")
    first, second = MongoStore(mongodb_url, database=dbname), MongoStore(mongodb_url, database=dbname)
    await first.open()
    await second.open()
    for round_ in range(5):
        batch = [r.price(round_ * 40 + i) for i in range(40)]
        await asyncio.gather(first.write_prices(batch), second.write_prices(batch))
    assert await first.prices(r.BOT, limit=10_000) == [r.price(i) for i in range(200)]
    await first.close()
    await second.close()


async def test_decimals_are_stored_in_the_form_the_server_holds_and_read_back_exactly(
    client: AsyncMongoClient[Doc], mongodb_url: str, dbname: str
) -> None:
    ferret = await _is_ferretdb_1(client)
    store = MongoStore(mongodb_url, database=dbname)
    await store.open()
    await store.write_prices([r.price(0)])
    raw = await client[dbname]["prices"].find_one({})
    assert raw is not None
    assert raw["bid_qty"] == ("0.00120000" if ferret else Decimal128("0.00120000"))
    assert (await store.prices(r.BOT))[0].bid_qty.as_tuple() == Decimal("0.00120000").as_tuple()
    await store.close()


@pytest.mark.parametrize(
    "text", ["0.00120000", "37000.01", "1E+3", "-0.0", "123456789012345678901234.5678901234"]
)
def test_a_decimal_stored_as_a_string_reads_back_identical_to_its_decimal128_form(text: str) -> None:
    value = Decimal(text)
    as_string = decimals_as_strings({"v": [Decimal128(value)]})["v"][0]
    assert isinstance(as_string, str)
    assert dec(as_string).as_tuple() == dec(Decimal128(value)).as_tuple() == value.as_tuple()


async def test_two_writers_racing_with_the_same_new_candles_both_succeed_and_store_each_once(
    mongodb_url: str, dbname: str
) -> None:
    """Two bots on one symbol write the same candles at once. On FerretDB 1.x the upserts race into
    a duplicate key whose bulk-write reply PyMongo cannot read (`KeyError: 'nModified'`)."""
    first, second = MongoStore(mongodb_url, database=dbname), MongoStore(mongodb_url, database=dbname)
    await first.open()
    await second.open()
    for round_ in range(30):
        base = round_ * 3
        # Each batch has a closed candle, an in-progress one, and the in-progress one's later version.
        batch = [
            r.candle(base),
            r.candle(base + 1, close="1.0", closed=False),
            r.candle(base + 1, close="1.5", closed=False),
        ]
        late = [r.candle(base + 2, close="2.0", closed=False)]
        closed_then_stale = [r.candle(base + 2, close="2.5"), r.candle(base + 2, close="9.9", closed=False)]
        await asyncio.gather(first.write_candles(batch), second.write_candles(batch))
        await asyncio.gather(first.write_candles(late), second.write_candles(closed_then_stale))
    stored = await first.candles(r.SYMBOL, "1m")
    expected = []
    for round_ in range(30):
        base = round_ * 3
        expected += [
            r.candle(base),
            r.candle(base + 1, close="1.5", closed=False),
            r.candle(base + 2, close="2.5"),
        ]
    assert stored == expected
    await first.close()
    await second.close()
