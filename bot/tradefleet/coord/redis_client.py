"""The one module of the bot that imports redis-py, and only the Redis-backed edges import it.

Why: redis-py is ~7 MiB of RSS per process (80 modules). A bot without `redis_url` (the embedded
default: in-process lease, file kill switch, no event stream) never needs it, so `coord.lease`,
`coord.events` and `coord.risk_state` import this module inside their Redis classes, not at the top.
`tests/perf/test_import_diet.py` holds the bot's live path to that.

Every client is built the same way: one attempt per command (`Retry(NoBackoff(), 0)`; the callers'
loops are the retry and redis-py's own retries would only stall them), bounded by the socket
timeouts, replies decoded to `str`.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.connection import parse_url as _parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RedisConnectionError", "RedisError", "RedisTimeoutError", "connect", "is_tls", "parse_url"]


def connect(url: str, *, timeout_s: float) -> aioredis.Redis:
    """A client for `url` (not connected yet: redis-py connects on the first command)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def parse_url(url: str) -> dict[str, Any]:
    """`url` read as `connect` reads it (redis-py's parser): host/port or path, db, username, password,
    `connection_class` and the query options. For `coord.resp`, which connects by itself."""
    return dict(_parse_url(url))


def is_tls(connection_class: object) -> bool:
    """Whether `parse_url`'s `connection_class` is redis-py's TLS connection (`rediss://`)."""
    return isinstance(connection_class, type) and issubclass(connection_class, SSLConnection)
