"""The SQLite schema and its migrations, versioned with `PRAGMA user_version`.

Each entry of MIGRATIONS moves the file from version i to i + 1 and runs inside one write
transaction together with the version bump, so two processes opening a fresh file at the same time
cannot both migrate it, and a crash mid-migration leaves the old version intact. A file written by
a newer tradefleet (a higher version) is refused rather than guessed at.

Money and prices are TEXT holding the Decimal's exact value (never REAL: a binary float would change
it). Every table has the natural key that makes a repeated write a no-op.
"""

from __future__ import annotations

import sqlite3

from tradefleet.errors import PermanentError

_V1 = (
    """
    CREATE TABLE prices (
        bot TEXT NOT NULL,
        exchange TEXT NOT NULL,
        symbol TEXT NOT NULL,
        exchange_ts INTEGER NOT NULL,
        local_ts INTEGER NOT NULL,
        update_id INTEGER NOT NULL,
        bid TEXT NOT NULL,
        bid_qty TEXT NOT NULL,
        ask TEXT NOT NULL,
        ask_qty TEXT NOT NULL,
        mid TEXT NOT NULL,
        spread TEXT NOT NULL,
        PRIMARY KEY (bot, update_id, local_ts)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX prices_by_time ON prices (bot, local_ts)",
    """
    CREATE TABLE candles (
        symbol TEXT NOT NULL,
        interval TEXT NOT NULL,
        open_time INTEGER NOT NULL,
        close_time INTEGER NOT NULL,
        open TEXT NOT NULL,
        high TEXT NOT NULL,
        low TEXT NOT NULL,
        close TEXT NOT NULL,
        volume TEXT NOT NULL,
        closed INTEGER NOT NULL,
        trades INTEGER NOT NULL,
        PRIMARY KEY (symbol, interval, open_time)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE signals (
        signal_id TEXT PRIMARY KEY,
        bot TEXT NOT NULL,
        exchange TEXT NOT NULL,
        symbol TEXT NOT NULL,
        interval TEXT NOT NULL,
        side TEXT NOT NULL,
        candle_open_time INTEGER NOT NULL,
        candle_close_time INTEGER NOT NULL,
        close TEXT NOT NULL,
        sma_short TEXT NOT NULL,
        sma_long TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        action TEXT NOT NULL
    )
    """,
    "CREATE INDEX signals_by_bot ON signals (bot, created_at)",
    """
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        bot TEXT NOT NULL,
        exchange TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL,
        signal_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        quantity TEXT,
        quote_amount TEXT,
        exchange_order_id TEXT,
        filled_qty TEXT NOT NULL,
        cum_quote TEXT NOT NULL,
        fee TEXT NOT NULL,
        fee_asset TEXT,
        fencing_token INTEGER,
        reason TEXT
    )
    """,
    "CREATE INDEX orders_by_bot ON orders (bot, created_at)",
    """
    CREATE TABLE order_updates (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        client_order_id TEXT NOT NULL,
        update_key TEXT NOT NULL,
        status TEXT NOT NULL,
        event_time INTEGER NOT NULL,
        exchange_order_id TEXT,
        filled_qty TEXT NOT NULL,
        cum_quote TEXT NOT NULL,
        last_qty TEXT NOT NULL,
        last_price TEXT NOT NULL,
        fee TEXT NOT NULL,
        fee_asset TEXT,
        trade_id INTEGER,
        exec_type TEXT NOT NULL,
        reason TEXT,
        source TEXT NOT NULL,
        UNIQUE (client_order_id, update_key)
    )
    """,
    """
    CREATE TABLE positions (
        bot TEXT NOT NULL,
        symbol TEXT NOT NULL,
        qty TEXT NOT NULL,
        cost_quote TEXT NOT NULL,
        realized_pnl_quote TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (bot, symbol)
    )
    """,
    # One row that `ping` rewrites: proof that a write reaches the file, not just that a lock is free.
    "CREATE TABLE store_health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at INTEGER NOT NULL)",
)

# v2 (#11, #16): notable events a bot observed (position mismatch episodes, halts and resumes).
# `fields` is a JSON object of exact strings.
_V2 = (
    """
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        bot TEXT NOT NULL,
        kind TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        summary TEXT NOT NULL,
        fields TEXT NOT NULL
    )
    """,
    "CREATE INDEX events_by_bot ON events (bot, at_ms)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, where: str) -> None:
    """Bring the file to SCHEMA_VERSION. `conn` must be in autocommit mode (isolation_level=None)."""
    if user_version(conn) == SCHEMA_VERSION:
        return  # the common case needs no write lock, so opening never waits for a busy writer
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = user_version(conn)  # again, under the lock: another process may have migrated
        if version > SCHEMA_VERSION:
            raise PermanentError(
                f"{where} has schema version {version}, newer than this tradefleet understands "
                f"({SCHEMA_VERSION}); upgrade tradefleet or point store_url at another file"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            # PRAGMA takes no parameters; target is our own integer.
            conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
