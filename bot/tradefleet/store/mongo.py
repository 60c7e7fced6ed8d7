"""The MongoDB store, for compose, Helm and production: PyMongo's native async API.

`AsyncMongoClient` is MongoDB's own successor to Motor (end of life May 2026): same vendor, real
asyncio, no thread pool.

Collections (in the database named by the URL, default `tradefleet`):
- `prices`: a time-series collection (timeField `ts`, metaField `meta` = {bot, symbol}, granularity
  seconds), or an ordinary collection with a unique sample-identity index where the server has no
  time-series (DocumentDB, Cosmos DB, FerretDB: see `mongo_schema`). `ts` is the LOCAL receive
  time (`local_ts`), because (bot, update_id, local_ts) is a sample's identity and the newest-first
  read sorts on it; the exchange time is kept as a field.
- `candles`, `signals`, `orders`, `order_updates`, `positions`, `events`: ordinary collections whose `_id` is
  the natural key (see `mongo_docs`), plus secondary indexes for the reads and a unique index on
  candles' (symbol, interval, open_time).

Idempotency. Ordinary collections get it from `_id`: a retried insert raises DuplicateKeyError,
which means "already there". Time-series collections cannot have unique indexes, so `write_prices`
first asks which of the batch's (bot, update_id, local_ts) keys are already stored, reading only the
batch's time range of the batch's bots (the time-series' own meta + time index serves that), and
inserts the rest. A batch retried after a lost reply is therefore written once. The check and the
insert are not one atomic step: only two writers racing with the very same samples could both
insert, and a bot has exactly one writer task, which never sends a batch while its previous attempt
is still running.

One write between a signal and its order. `commit_order` inserts the order document with the signal
(carrying its action) embedded: one single-document insert, atomic on every server without a
transaction (FerretDB 1.x and standalone servers have none), so the PENDING order, its signal and the
action are stored together or not at all. `after_commit_order` (after the request has left) copies
the signal into `signals`, folds in reports that arrived first, and drops the embedded copy. Until it
has run (or forever, if the process died first) `signals()` reads the embedded copy where the
signal's document is missing or still `pending`, and `update_signal_action` creates the missing
document from it, so a reader never sees the difference.

Order documents only move forward: each update is folded with `merge.advance` under optimistic
concurrency (a `rev` field checked by the update), with the folded update keys kept in `applied`,
so two replicas, a retry or a crash between the history insert and the document update can neither
lose an update nor count a fee twice.

Errors: AutoReconnect (so NotPrimary and ServerSelectionTimeout), NetworkTimeout, connection
failures and retryable server errors become `StoreUnavailable`; DuplicateKeyError is handled as an
idempotent no-op where expected; an invalid URL is a `ConfigError`; the rest is `PermanentError`.
Needs MongoDB 6.0 or newer (time-series secondary indexes on the metaField), or a look-alike whose
gaps `mongo_schema` detects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, cast

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidURI,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    WaitQueueTimeoutError,
    WTimeoutError,
)

from tradefleet.domain.models import (
    SIGNAL_PENDING,
    BotEvent,
    Candle,
    Order,
    OrderStatus,
    OrderUpdate,
    Position,
    PriceSample,
    Signal,
)
from tradefleet.errors import ConfigError, PermanentError, StoreUnavailable
from tradefleet.store import mongo_docs as docs
from tradefleet.store.merge import advance, order_fee, update_key
from tradefleet.store.mongo_schema import TRANSIENT_CODES, Capabilities, ensure_schema
from tradefleet.store.urls import redact_url

Doc = dict[str, Any]
DEFAULT_SERVER_SELECTION_MS = 5000
"""How long an operation waits for a usable server before the store counts as unavailable
(the driver's default is 30 s, which would stall the buffered writer for that long per attempt)."""

_DUPLICATE_KEY = 11000
_EMBEDDED_SIGNAL = "signal"
"""The field of an order document that carries its signal from `commit_order` to `after_commit_order`."""

_OPEN_STATUSES = [OrderStatus.PENDING.value, OrderStatus.NEW.value, OrderStatus.PARTIALLY_FILLED.value]
_FOLD_ATTEMPTS = 20
_UPSERT_ATTEMPTS = 5
_CandleOp = tuple[Doc, Doc, bool]
"""(filter, replacement document or update, upsert) of one candle write."""


def translate(error: PyMongoError, where: str) -> Exception:
    if isinstance(
        error,
        AutoReconnect | NetworkTimeout | ConnectionFailure | WaitQueueTimeoutError | ExecutionTimeout,
    ):
        return StoreUnavailable(f"mongodb store {where} unavailable: {error}", retry_after=1.0)
    if isinstance(error, WTimeoutError):
        return StoreUnavailable(f"mongodb store {where}: write concern timed out: {error}", retry_after=1.0)
    if isinstance(error, OperationFailure) and (
        error.code in TRANSIENT_CODES or error.has_error_label("RetryableWriteError")
    ):
        return StoreUnavailable(f"mongodb store {where} unavailable: {error}", retry_after=1.0)
    if isinstance(error, BulkWriteError):
        codes = {w.get("code") for w in (error.details or {}).get("writeErrors", [])}
        if codes & TRANSIENT_CODES or (error.details or {}).get("writeConcernErrors"):
            return StoreUnavailable(f"mongodb store {where}: batch partly failed: {error}", retry_after=1.0)
    if isinstance(error, ConfigurationError | InvalidURI):
        return ConfigError(f"store_url for {where} is not valid: {error}")
    return PermanentError(f"mongodb store {where}: {type(error).__name__}: {error}")


class MongoStore:
    """`Store` on MongoDB. `url` is passed to the driver as is; `database` is the one to use."""

    def __init__(
        self,
        url: str,
        *,
        database: str = "tradefleet",
        server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_MS,
    ) -> None:
        self.url = url
        self.database_name = database
        self.where = f"{redact_url(url)} (database {database})"
        self.server_selection_timeout_ms = server_selection_timeout_ms
        self._client: AsyncMongoClient[Doc] | None = None
        self._caps: Capabilities | None = None

    def __repr__(self) -> str:
        return f"MongoStore({self.where!r})"

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except DuplicateKeyError:
            raise  # the caller decides: usually "already stored"
        except PyMongoError as e:
            raise translate(e, self.where) from e

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def db(self) -> AsyncDatabase[Doc]:
        if self._client is None:
            raise RuntimeError(f"{self!r} is not open; call `await store.open()` first")
        return self._client[self.database_name]

    def _col(self, name: str) -> AsyncCollection[Doc]:
        return self.db[name]

    async def open(self) -> None:
        """Create the client and the collections; raises StoreUnavailable if the server is down
        (the client stays, and the schema is created by the first write that succeeds)."""
        if self._client is None:
            options: dict[str, Any] = {"tz_aware": True}
            if "serverselectiontimeoutms" not in self.url.lower():
                options["serverSelectionTimeoutMS"] = self.server_selection_timeout_ms
            try:
                self._client = AsyncMongoClient(self.url, **options)
            except (ConfigurationError, InvalidURI, ValueError, TypeError) as e:
                raise ConfigError(f"store_url {self.where} is not valid: {e}") from e
        await self._ensure_schema()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def _ensure_schema(self) -> None:
        if self._caps is not None:
            return
        with self._translated():
            self._caps = await ensure_schema(self.db, self.where)

    @property
    def capabilities(self) -> Capabilities | None:
        """What the server supports (None until the schema has been ensured)."""
        return self._caps

    def _out(self, doc: Doc) -> Doc:
        """`doc` as this server can store it (decimals as strings where Decimal128 is missing)."""
        if self._caps is None or self._caps.decimal128:
            return doc
        return cast(Doc, docs.decimals_as_strings(doc))

    async def ping(self) -> None:
        await self._ensure_schema()
        with self._translated():
            await self.db.command("ping")

    # -- writes -----------------------------------------------------------------------------------

    async def write_prices(self, samples: Sequence[PriceSample]) -> None:
        if not samples:
            return
        await self._ensure_schema()
        prices = self._col("prices")
        bots = sorted({s.bot for s in samples})
        window = {
            "$gte": docs.ms_to_date(min(s.local_ts for s in samples)),
            "$lte": docs.ms_to_date(max(s.local_ts for s in samples)),
        }
        with self._translated():
            stored = {
                (d["meta"]["bot"], int(d["update_id"]), int(d["local_ts"]))
                async for d in prices.find(
                    {
                        "meta.bot": {"$in": bots},
                        "ts": window,
                    },
                    {"meta.bot": 1, "update_id": 1, "local_ts": 1, "_id": 0},
                )
            }
            fresh: list[Doc] = []
            for s in samples:
                key = (s.bot, s.update_id, s.local_ts)
                if key not in stored:
                    stored.add(key)  # the same sample twice in one batch is written once
                    fresh.append(self._out(docs.price_doc(s)))
            if fresh:
                try:
                    await prices.insert_many(fresh, ordered=False)
                except BulkWriteError as e:
                    # Only an ordinary `prices` has a unique identity index: a duplicate there is a
                    # sample another writer stored between our check and insert, i.e. "already there".
                    if not _only_duplicates(e):
                        raise

    async def write_candles(self, candles: Sequence[Candle]) -> None:
        if not candles:
            return
        await self._ensure_schema()
        ops: list[_CandleOp] = []
        for c in candles:
            doc = self._out(docs.candle_doc(c))
            if c.closed:
                ops.append(({"_id": doc["_id"]}, doc, True))
            else:
                # An in-progress candle never replaces a closed one: insert it only if absent, then
                # update it only if not closed.
                fields = {k: v for k, v in doc.items() if k != "_id"}
                ops.append(({"_id": doc["_id"]}, {"$setOnInsert": fields}, True))
                ops.append(({"_id": doc["_id"], "closed": {"$ne": True}}, {"$set": fields}, False))
        candles_col = self._col("candles")
        if self._caps is not None and not self._caps.bulk_upserts:
            for op in ops:  # in order: several versions of one candle in a batch apply in their order
                await self._write_candle_op(candles_col, op)
            return
        bulk = [
            UpdateOne(f, u, upsert=upsert) if _is_update(u) else ReplaceOne(f, u, upsert=upsert)
            for f, u, upsert in ops
        ]
        with self._translated():
            try:
                # Ordered: several versions of one candle in a batch must apply in their order.
                await candles_col.bulk_write(bulk, ordered=True)
            except BulkWriteError as e:
                if not _only_duplicates(e):
                    raise
                # Two writers inserted the same new candle at once: every op is idempotent, so the
                # batch is simply applied again (now without the race).
                await candles_col.bulk_write(bulk, ordered=True)

    async def _write_candle_op(self, candles_col: AsyncCollection[Doc], op: _CandleOp) -> None:
        """One candle write; a duplicate key means another writer inserted the same candle between
        our upsert's match and insert, so the write is applied again and now matches it."""
        query, update, upsert = op
        for _ in range(_UPSERT_ATTEMPTS):
            with self._translated():
                try:
                    if _is_update(update):
                        await candles_col.update_one(query, update, upsert=upsert)
                    else:
                        await candles_col.replace_one(query, update, upsert=upsert)
                    return
                except DuplicateKeyError:
                    continue
        raise StoreUnavailable(
            f"candle {query['_id']} is being inserted concurrently; gave up after {_UPSERT_ATTEMPTS} tries",
            retry_after=0.1,
        )

    async def insert_signal(self, signal: Signal) -> bool:
        await self._ensure_schema()
        with self._translated():
            try:
                await self._col("signals").insert_one(self._out(docs.signal_doc(signal)))
            except DuplicateKeyError:
                return False
        return True

    async def update_signal_action(self, signal_id: str, action: str) -> None:
        await self._ensure_schema()
        with self._translated():
            result = await self._col("signals").update_one({"_id": signal_id}, {"$set": {"action": action}})
            if result.matched_count:
                return
            # No document yet: the signal may live only inside its order (committed, and the process
            # died before `after_commit_order`). Its document is created from that copy.
            found = await self._col("orders").find_one(
                {"signal_id": signal_id, _EMBEDDED_SIGNAL: {"$exists": True}}, {_EMBEDDED_SIGNAL: 1}
            )
        if found is not None:
            embedded = docs.signal_from(found[_EMBEDDED_SIGNAL])
            await self._put_signal(dataclasses.replace(embedded, action=action))

    async def insert_order(self, order: Order) -> bool:
        await self._ensure_schema()
        with self._translated():
            try:
                await self._col("orders").insert_one(self._out(docs.order_doc(order)))
            except DuplicateKeyError:
                return False
        await self._fold_early(order)
        return True

    async def commit_order(self, signal: Signal, order: Order) -> bool:
        await self._ensure_schema()
        doc = self._out(docs.order_doc(order) | {_EMBEDDED_SIGNAL: docs.signal_doc(signal)})
        with self._translated():
            try:
                await self._col("orders").insert_one(doc)
            except DuplicateKeyError:
                return False
        return True

    async def after_commit_order(self, signal: Signal, order: Order) -> None:
        await self._ensure_schema()
        await self._put_signal(signal)
        await self._fold_early(order)
        with self._translated():
            await self._col("orders").update_one(
                {"_id": order.client_order_id}, {"$unset": {_EMBEDDED_SIGNAL: ""}}
            )

    async def _put_signal(self, signal: Signal) -> None:
        """The signal's document with `signal.action`, created if missing (idempotent)."""
        fields = self._out(docs.signal_doc(signal))
        action = fields.pop("action")
        del fields["_id"]
        signals = self._col("signals")
        for _ in range(_UPSERT_ATTEMPTS):
            with self._translated():
                try:
                    await signals.update_one(
                        {"_id": signal.signal_id},
                        {"$set": {"action": action}, "$setOnInsert": fields},
                        upsert=True,
                    )
                    return
                except DuplicateKeyError:
                    continue  # another writer created it between our match and insert: match it now
        raise StoreUnavailable(
            f"signal {signal.signal_id} is being inserted concurrently; "
            f"gave up after {_UPSERT_ATTEMPTS} tries",
            retry_after=0.1,
        )

    async def _fold_early(self, order: Order) -> None:
        """Reports that arrived before the order document (kept in the history) are folded in now."""
        early = await self._history(order.client_order_id)
        if early:
            await self._fold(order.client_order_id, early, fee_from_history=True)

    async def _folded_fee(
        self, client_order_id: str, applied: set[str], updates: Sequence[OrderUpdate]
    ) -> Decimal:
        folded = {update_key(u): u for u in await self._history(client_order_id) if update_key(u) in applied}
        folded.update((update_key(u), u) for u in updates)
        return order_fee(folded.values())

    async def _history(self, client_order_id: str) -> list[OrderUpdate]:
        with self._translated():
            return [
                docs.update_from(d)
                async for d in self._col("order_updates")
                .find({"client_order_id": client_order_id})
                .sort([("event_time", ASCENDING), ("received_ns", ASCENDING)])
            ]

    async def apply_order_update(self, update: OrderUpdate) -> Order | None:
        await self._ensure_schema()
        with self._translated():
            try:
                history = self._out(docs.update_doc(update, time.time_ns()))
                await self._col("order_updates").insert_one(history)
            except DuplicateKeyError:
                pass  # already in the history; folding again below is a no-op for the document
        return await self._fold(update.client_order_id, [update], fee_from_history=update.fee > 0)

    async def _fold(
        self, client_order_id: str, updates: Sequence[OrderUpdate], *, fee_from_history: bool = False
    ) -> Order | None:
        """Fold `updates` into the order document. `fee_from_history`: the order's fee is recomputed
        (`merge.order_fee`: a QUERY's total or the TRADEs' sum) from the reports folded into this
        document and `updates`. Only those: the history may also hold reports the document never
        took (a writer killed between the history insert and the fold; in paper mode that was
        another process's execution of the same id, which the next leader sends again)."""
        orders = self._col("orders")
        for _ in range(_FOLD_ATTEMPTS):
            with self._translated():
                found = await orders.find_one({"_id": client_order_id})
            if found is None:
                return None
            current = docs.order_from(found)
            applied = set(found.get("applied", []))
            fee = await self._folded_fee(client_order_id, applied, updates) if fee_from_history else None
            new = current
            keys: list[str] = []
            for u in updates:
                key = update_key(u)
                new = advance(new, u, first_seen=key not in applied, fee=fee)
                if key not in applied:
                    applied.add(key)
                    keys.append(key)
            if new == current and not keys:
                return current
            with self._translated():
                result = await orders.update_one(
                    # A missing rev matches null, so a document without one can still be updated.
                    {"_id": client_order_id, "rev": found.get("rev")},
                    {
                        "$set": self._out(docs.order_state(new)),
                        "$inc": {"rev": 1},
                        "$addToSet": {"applied": {"$each": keys}},
                    },
                )
            if result.matched_count == 1:
                return new
            # Another writer moved the document between our read and write: read it again.
        raise StoreUnavailable(
            f"order {client_order_id} is being updated concurrently; gave up after {_FOLD_ATTEMPTS} tries",
            retry_after=0.1,
        )

    async def save_position(self, position: Position) -> None:
        await self._ensure_schema()
        doc = self._out(docs.position_doc(position))
        with self._translated():
            await self._col("positions").replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def insert_event(self, event: BotEvent) -> bool:
        await self._ensure_schema()
        with self._translated():
            try:
                await self._col("events").insert_one(docs.event_doc(event))
            except DuplicateKeyError:
                return False
        return True

    # -- reads ------------------------------------------------------------------------------------

    async def events(self, bot: str, limit: int = 100) -> list[BotEvent]:
        """The newest `limit` events, oldest first."""
        found = await self._find("events", {"bot": bot}, [("at_ms", DESCENDING), ("_id", DESCENDING)], limit)
        return [docs.event_from(d) for d in reversed(found)]

    async def _find(self, name: str, query: Doc, sort: list[tuple[str, int]], limit: int = 0) -> list[Doc]:
        await self._ensure_schema()
        with self._translated():
            return [d async for d in self._col(name).find(query).sort(sort).limit(limit)]

    async def get_order(self, client_order_id: str) -> Order | None:
        await self._ensure_schema()
        with self._translated():
            found = await self._col("orders").find_one({"_id": client_order_id})
        return None if found is None else docs.order_from(found)

    async def open_orders(self, bot: str) -> list[Order]:
        found = await self._find(
            "orders",
            {"bot": bot, "status": {"$in": _OPEN_STATUSES}},
            [("created_at", ASCENDING), ("_id", ASCENDING)],
        )
        return [docs.order_from(d) for d in found]

    async def order_updates(self, client_order_id: str) -> list[OrderUpdate]:
        found = await self._find(
            "order_updates",
            {"client_order_id": client_order_id},
            [("event_time", ASCENDING), ("received_ns", ASCENDING)],
        )
        return [docs.update_from(d) for d in found]

    async def orders(self, bot: str) -> list[Order]:
        found = await self._find("orders", {"bot": bot}, [("created_at", ASCENDING), ("_id", ASCENDING)])
        return [docs.order_from(d) for d in found]

    async def signals(self, bot: str) -> list[Signal]:
        found = await self._find("signals", {"bot": bot}, [("created_at", ASCENDING), ("_id", ASCENDING)])
        stored = {d["_id"]: docs.signal_from(d) for d in found}
        # Signals committed with their order whose own document is not written yet (see the module
        # docstring): the order's copy is what was committed.
        with self._translated():
            embedded = [
                docs.signal_from(d[_EMBEDDED_SIGNAL])
                async for d in self._col("orders").find(
                    {"bot": bot, _EMBEDDED_SIGNAL: {"$exists": True}}, {_EMBEDDED_SIGNAL: 1}
                )
            ]
        if not embedded:
            return list(stored.values())
        for s in embedded:
            current = stored.get(s.signal_id)
            if current is None or current.action == SIGNAL_PENDING:
                stored[s.signal_id] = s
        return sorted(stored.values(), key=lambda s: (s.created_at, s.signal_id))

    async def candles(self, symbol: str, interval: str) -> list[Candle]:
        found = await self._find(
            "candles", {"symbol": symbol, "interval": interval}, [("open_time", ASCENDING)]
        )
        return [docs.candle_from(d) for d in found]

    async def prices(self, bot: str, limit: int = 1000) -> list[PriceSample]:
        """The newest `limit` samples, oldest first."""
        found = await self._find(
            "prices", {"meta.bot": bot}, [("ts", DESCENDING), ("update_id", DESCENDING)], limit
        )
        return [docs.price_from(d) for d in reversed(found)]

    async def bots(self) -> list[str]:
        await self._ensure_schema()
        with self._translated():
            names = set(await self._col("signals").distinct("bot"))
            names |= set(await self._col("orders").distinct("bot"))
        return sorted(str(n) for n in names)

    async def load_position(self, bot: str, symbol: str) -> Position | None:
        await self._ensure_schema()
        with self._translated():
            found = await self._col("positions").find_one({"_id": docs.position_id(bot, symbol)})
        return None if found is None else docs.position_from(found)


def _is_update(doc: Doc) -> bool:
    """An update (`$set`...) rather than a replacement document (whose keys never start with `$`)."""
    return any(k.startswith("$") for k in doc)


def _only_duplicates(error: BulkWriteError) -> bool:
    details = error.details or {}
    errors = details.get("writeErrors", [])
    return not details.get("writeConcernErrors") and all(w.get("code") == _DUPLICATE_KEY for w in errors)
