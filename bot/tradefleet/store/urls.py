"""Reading `store_url`: which backend, which file or database, with errors that say what to write.

Credentials in a MongoDB URL never appear in an error message (`redact_url`).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

from tradefleet.errors import ConfigError
from tradefleet.store.sqlite import DEFAULT_BUSY_TIMEOUT_MS

DEFAULT_MONGO_DATABASE = "tradefleet"
EXAMPLES = (
    "sqlite:///tradefleet.sqlite, sqlite:////var/lib/tradefleet/bot.sqlite or mongodb://host:27017/tradefleet"
)
# MongoDB forbids these in database names; length is limited to 63 bytes.
_BAD_DB_CHARS = re.compile(r'[/\\. "$*<>:|?\x00]')


def redact_url(url: str) -> str:
    """The URL with any user:password replaced, safe to log or put in an error message."""
    return re.sub(r"(://)[^@/]*@", r"\1***@", url)


def parse_sqlite_url(url: str) -> tuple[str, int]:
    """(path, busy_timeout_ms) of a sqlite URL."""
    if not url.startswith("sqlite://"):
        raise ConfigError(f"store_url {url!r}: a SQLite URL starts with sqlite:// (e.g. {EXAMPLES})")
    rest, _, query = url.removeprefix("sqlite://").partition("?")
    busy_timeout_ms = DEFAULT_BUSY_TIMEOUT_MS
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "busy_timeout_ms":
            raise ConfigError(
                f"store_url {url!r}: unknown option {key!r}; the only option is busy_timeout_ms"
            )
        if not value.isdigit():
            raise ConfigError(f"store_url {url!r}: busy_timeout_ms must be a whole number of milliseconds")
        busy_timeout_ms = int(value)
    if rest == ":memory:":
        return ":memory:", busy_timeout_ms
    if not rest.startswith("/"):
        raise ConfigError(
            f"store_url {url!r}: a SQLite URL has no host; write sqlite:///relative/path.sqlite "
            "or sqlite:////absolute/path.sqlite (or sqlite://:memory:)"
        )
    path = unquote(rest[1:])  # sqlite:///a.db -> "a.db"; sqlite:////tmp/a.db -> "/tmp/a.db"
    if not path or path.endswith("/"):
        raise ConfigError(f"store_url {url!r} names no file; e.g. sqlite:///tradefleet.sqlite")
    return path, busy_timeout_ms


def mongo_database(url: str) -> str:
    """The database named in a MongoDB URL's path, `tradefleet` when it names none."""
    rest = url.split("://", 1)[1].partition("?")[0]
    hosts, _, db = rest.partition("/")
    if not hosts.rpartition("@")[2]:
        raise ConfigError(
            f"store_url {redact_url(url)!r} names no host; e.g. mongodb://localhost:27017/tradefleet"
        )
    db = unquote(db)
    if not db:
        return DEFAULT_MONGO_DATABASE
    if _BAD_DB_CHARS.search(db) or len(db.encode()) > 63:
        raise ConfigError(
            f"store_url {redact_url(url)!r}: {db!r} is not a valid MongoDB database name "
            '(at most 63 bytes, none of / \\ . space " $ * < > : | ?)'
        )
    return db
