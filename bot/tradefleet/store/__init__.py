"""Where a bot's history lives: `open_store(url)` picks the backend from `store_url`.

    sqlite:///relative/path.sqlite        a file relative to the working directory (the default)
    sqlite:////absolute/path.sqlite       an absolute path (four slashes)
    sqlite://:memory:                     a private in-memory database (tests, throwaway demos)
    mongodb://host:27017/dbname           MongoDB; dbname defaults to `tradefleet`
    mongodb+srv://cluster.example/dbname  MongoDB Atlas style

A SQLite file belongs to one process at a time (`sqlite_lock`: a lock file next to it); replicas that
run at once share MongoDB. SQLite URLs accept one option, `?busy_timeout_ms=N` (how long a write waits
for SQLite's own lock, e.g. a `sqlite3` shell writing). MongoDB options are MongoDB's own and are
validated by the driver when the store opens.

This package refuses to guess: an URL it cannot read is a `ConfigError` saying what to write
instead, and credentials in a MongoDB URL never appear in that message. Writes from the hot path go
through `BufferedStore`, never straight to a backend.
"""

from __future__ import annotations

from tradefleet.errors import ConfigError
from tradefleet.ports import Store
from tradefleet.store.buffered import BufferedStore
from tradefleet.store.sqlite import SqliteStore
from tradefleet.store.urls import EXAMPLES, mongo_database, parse_sqlite_url, redact_url

__all__ = ["BufferedStore", "SqliteStore", "open_store", "redact_url"]


def open_store(url: str, *, lock: str = "refuse") -> Store:
    """A store for `url`, not yet opened: call `await store.open()` before use.

    `lock` is what a SQLite store does when another process holds its file (`sqlite_lock`): `wait`
    (the bot: a cold standby), `refuse` (the default), `none` (readers only)."""
    if url.startswith("sqlite:"):
        path, busy_timeout_ms = parse_sqlite_url(url)
        return SqliteStore(path, busy_timeout_ms=busy_timeout_ms, lock=lock)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from tradefleet.store.mongo import MongoStore  # pymongo is only imported when asked for

        return MongoStore(url, database=mongo_database(url))
    raise ConfigError(f"store_url {redact_url(url)!r} is not understood; use {EXAMPLES}")
