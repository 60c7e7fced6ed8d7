"""The MongoDB store's collections and indexes, and what the server behind the URL can do.

Not every server that answers on `mongodb://` is MongoDB. AWS DocumentDB, Azure Cosmos DB for
MongoDB and FerretDB speak the wire protocol but lack features, and real users run the bot on them:

- Time-series collections (MongoDB 5.0+). Where `create` with `timeseries` is refused, `prices`
  becomes an ordinary collection with a unique index on the sample's identity (bot, local_ts,
  update_id) plus the same (bot, ts) index the reads use. Everything the store does with prices works
  the same; only MongoDB's bucketed storage (smaller on disk, faster range scans) is missing.
  The capability is detected by trying, because servers answer with different error codes; an
  existing `prices` is used as it is (its type is read, never changed), so a database created on
  one server keeps working after a move to another.
- BSON Decimal128. FerretDB 1.x cannot store it: it drops the connection, which the driver reports
  as a network error, so a probe cannot tell that from an outage. It is therefore identified by
  `buildInfo.ferretdbVersion` (1.x), and decimals are stored as their exact decimal strings there
  (`mongo_docs.decimals_as_strings`). No query of the store compares decimal fields; reads accept
  both forms, so nothing is lost or rounded either way.

Each fallback is logged once, as a warning, when the store opens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, OperationFailure

from tradefleet.store.mongo_docs import Doc

log = logging.getLogger("tradefleet.store")

NAMESPACE_EXISTS = 48
_UNAUTHORIZED = frozenset({13, 18})  # Unauthorized, AuthenticationFailed: never a missing feature
# Server error codes that mean "not now": shutdown, stepdown, not primary, network, time limits.
TRANSIENT_CODES = frozenset({6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


@dataclass(frozen=True)
class Capabilities:
    """What the store may use on this server."""

    timeseries: bool
    """`prices` is a time-series collection; else an ordinary one with a unique identity index."""
    decimal128: bool
    """Decimals are stored as BSON Decimal128; else as exact decimal strings."""
    bulk_upserts: bool = True
    """Upserts may go in one ordered bulk write. FerretDB 1.x answers a duplicate key raised by a
    racing upsert inside a bulk write without `nModified`, which PyMongo cannot read (KeyError), so
    there they are sent one at a time, where the duplicate key arrives as a DuplicateKeyError."""


async def ensure_schema(db: AsyncDatabase[Doc], where: str) -> Capabilities:
    """Create what is missing (idempotent, safe for replicas racing) and report the capabilities."""
    ferretdb_1 = await _is_ferretdb_1(db)
    decimal128 = not ferretdb_1
    if ferretdb_1:
        log.warning(
            "mongodb_no_decimal128",
            extra={
                "event": "mongodb_no_decimal128",
                "where": where,
                "detail": "FerretDB 1.x cannot store BSON Decimal128: decimals are stored as exact strings "
                "(and candle upserts are sent one at a time)",
            },
        )
    timeseries = await _prices_collection(db, where)
    prices = db["prices"]
    await prices.create_index([("meta.bot", ASCENDING), ("ts", DESCENDING)])
    if not timeseries:
        await prices.create_index(
            [("meta.bot", ASCENDING), ("local_ts", ASCENDING), ("update_id", ASCENDING)], unique=True
        )
    await db["candles"].create_index(
        [("symbol", ASCENDING), ("interval", ASCENDING), ("open_time", ASCENDING)], unique=True
    )
    await db["signals"].create_index([("bot", ASCENDING), ("created_at", ASCENDING)])
    await db["orders"].create_index([("bot", ASCENDING), ("created_at", ASCENDING)])
    await db["orders"].create_index([("bot", ASCENDING), ("status", ASCENDING)])
    await db["events"].create_index([("bot", ASCENDING), ("at_ms", ASCENDING)])
    await db["order_updates"].create_index(
        [("client_order_id", ASCENDING), ("event_time", ASCENDING), ("received_ns", ASCENDING)]
    )
    return Capabilities(timeseries=timeseries, decimal128=decimal128, bulk_upserts=not ferretdb_1)


async def _is_ferretdb_1(db: AsyncDatabase[Doc]) -> bool:
    info = await db.command("buildInfo")
    return str(info.get("ferretdbVersion", "")).startswith("v1.")


async def _listed_type(db: AsyncDatabase[Doc]) -> str | None:
    found = [c async for c in await db.list_collections(filter={"name": "prices"})]
    return str(found[0].get("type", "collection")) if found else None


async def _prices_collection(db: AsyncDatabase[Doc], where: str) -> bool:
    """Whether `prices` is a time-series collection, creating it (time-series if possible)."""
    if (kind := await _listed_type(db)) is not None:
        return kind == "timeseries"
    try:
        await db.create_collection(
            "prices", timeseries={"timeField": "ts", "metaField": "meta", "granularity": "seconds"}
        )
        return True
    except CollectionInvalid:
        return await _listed_type(db) == "timeseries"  # created meanwhile by another replica
    except OperationFailure as e:
        if e.code == NAMESPACE_EXISTS:
            return await _listed_type(db) == "timeseries"
        if e.code in _UNAUTHORIZED or e.code in TRANSIENT_CODES or e.has_error_label("RetryableWriteError"):
            raise
        refusal = f"{e.code} {(e.details or {}).get('codeName', '')}: {str(e)[:300]}"
    log.warning(
        "mongodb_no_timeseries",
        extra={
            "event": "mongodb_no_timeseries",
            "where": where,
            "detail": "time-series collections refused; prices is an ordinary collection "
            "with a unique (bot, local_ts, update_id) index",
            "error": refusal,
        },
    )
    try:
        await db.create_collection("prices")
    except CollectionInvalid:
        pass
    except OperationFailure as e:
        if e.code != NAMESPACE_EXISTS:
            raise
    return False
