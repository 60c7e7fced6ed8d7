"""The fleet's event streams: signals, orders and status of every bot, in Redis.

Other services (dashboards, the operator, audit consumers) follow the fleet by reading three
Redis Streams, one per kind, each entry naming its bot:

    tradefleet:signals   every crossover signal, whether or not an order followed
    tradefleet:orders    every order on creation and every update (fills, cancels, rejects)
    tradefleet:status    the bot's /status JSON each time it is published

Entry fields: `bot`, `kind`, `ts` (ms) and `json` (the payload; Decimals as strings, never floats).
Streams are capped with `XADD MAXLEN ~` (approximate trimming is O(1) amortised).
A bot's latest status is also kept in the hash `tradefleet:status:<bot>` (fields `json`,
`updated_at` in ms, plus `role` and `holder`): the operator reads exactly that to fill the
TradingBot's status. All replicas write it, so the write is a Lua script that lets the leader's
view win: a non-leader's status replaces a leader's only once that is `status_stale_ms` old (the
leader died or lost Redis), otherwise `kubectl get tradingbots` would flap between replicas.

What this module refuses to do: block or fail the caller. `publish()` and `set_status()` only
append to bounded in-memory buffers; one task drains them in pipelined batches. While Redis is
down entries wait; when a buffer is full the oldest entries go first and are counted
(`tradefleet_events_dropped_total{stream}`). Status entries get a small buffer (only the newest
matters and the hash always gets the newest); signals and orders get a large one.
Every replica of a bot computes the same signals and sees the same order reports, so each would
publish them. Signals and order updates are therefore written through a Lua script that adds the
entry only if its identity (`signal_id`; `client_order_id` + status + cumulative fill + fee) was not
seen in the last `dedupe_ttl_s` (a `SET NX EX` marker next to the stream): one entry per fact,
whichever replica publishes first, and a batch re-sent after a dropped connection adds nothing twice.
Status entries are per replica (they say which replica is what) and are not deduplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import json
import logging
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tradefleet.logs import log_event, now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.tasks import stop_task

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)

SIGNALS_STREAM = "tradefleet:signals"
ORDERS_STREAM = "tradefleet:orders"
STATUS_STREAM = "tradefleet:status"

# kind given to publish() -> stream. Singular and plural both accepted; anything else is a bug.
KIND_STREAMS: dict[str, str] = {
    "signal": SIGNALS_STREAM,
    "signals": SIGNALS_STREAM,
    "order": ORDERS_STREAM,
    "order_update": ORDERS_STREAM,
    "orders": ORDERS_STREAM,
    "status": STATUS_STREAM,
    "position_mismatch": STATUS_STREAM,  # engine.position_check: stored position vs the account
}

BATCH_MAX = 500

# KEYS[1] stream, KEYS[2] marker of this entry's identity; ARGV[1] maxlen, ARGV[2] marker TTL (s),
# ARGV[3..] field/value pairs. Returns the entry id, or false when the fact was already published.
_XADD_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return false
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
"""

# KEYS[1] status hash; ARGV: json, updated_at (ms), role, holder, stale_ms. 1 = written, 0 = kept.
_SET_STATUS = """
if ARGV[3] ~= 'leader' then
  local cur = redis.call('HMGET', KEYS[1], 'role', 'holder', 'updated_at')
  if cur[1] == 'leader' and cur[2] ~= ARGV[4]
     and (tonumber(cur[3]) or 0) + tonumber(ARGV[5]) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'updated_at', ARGV[2], 'role', ARGV[3], 'holder', ARGV[4])
return 1
"""


def identity(stream: str, payload: dict[str, object]) -> str | None:
    """What makes two entries the same fact, whichever replica publishes it (None: no dedupe)."""
    if stream == SIGNALS_STREAM and payload.get("signal_id"):
        return f"signal:{payload['signal_id']}"
    if stream == ORDERS_STREAM and payload.get("client_order_id"):
        parts = (payload.get(k) for k in ("client_order_id", "status", "filled_qty", "cum_quote", "fee"))
        return "order:" + ":".join(str(p) for p in parts)
    return None


def status_key(bot: str) -> str:
    """The hash holding a bot's latest status (`json`, `updated_at`); the operator reads it."""
    return f"tradefleet:status:{bot}"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot publish a {type(value).__name__}")


def to_json(payload: object) -> str:
    """Compact JSON with Decimals as strings (exact), enums as values, dataclasses as objects."""
    return json.dumps(payload, default=_default, separators=(",", ":"))


@dataclass(slots=True)
class _Entry:
    stream: str
    fields: dict[str, str]
    identity: str | None = None


class NullPublisher:
    """No Redis: events go nowhere (the store and the logs still have everything)."""

    async def publish(self, kind: str, payload: dict[str, object]) -> None:
        if kind not in KIND_STREAMS:
            raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(KIND_STREAMS)}")

    async def set_status(self, status: dict[str, object]) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisEventPublisher:
    """Publishes to the fleet streams and the status hash without ever blocking the caller."""

    def __init__(
        self,
        redis_url: str,
        bot: str,
        metrics: BotMetrics | None = None,
        *,
        maxlen: int = 100_000,
        buffer_max: int = 100_000,
        status_buffer_max: int = 100,
        retry_max_s: float = 5.0,
        flush_timeout_s: float = 2.0,
        dedupe_ttl_s: int = 7 * 86400,
        status_stale_ms: int = 10_000,
    ) -> None:
        if maxlen < 1 or buffer_max < 1 or status_buffer_max < 1:
            raise ValueError("maxlen and buffer sizes must be positive")
        self.bot = bot
        self.maxlen = maxlen
        self.buffer_max = buffer_max
        self.status_buffer_max = status_buffer_max
        self.retry_max_s = retry_max_s
        self.flush_timeout_s = flush_timeout_s
        self.dedupe_ttl_s = dedupe_ttl_s
        self.status_stale_ms = status_stale_ms
        self.duplicates = 0  # entries another replica (or an earlier attempt) had published
        self.metrics = metrics
        self.dropped: dict[str, int] = {s: 0 for s in (SIGNALS_STREAM, ORDERS_STREAM, STATUS_STREAM)}
        self.published = 0
        self.last_error: str | None = None
        self._main: deque[_Entry] = deque()  # signals and orders
        self._status: deque[_Entry] = deque()
        # For the hash, newest only: (json, updated_at ms, role, holder)
        self._latest_status: tuple[str, int, str, str] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # The drain loop is the retry (with backoff); redis-py's own retries would only stall it.
        from tradefleet.coord import redis_client  # only a bot with Redis loads redis-py

        self._lost: tuple[type[Exception], ...] = (
            redis_client.RedisConnectionError,
            redis_client.RedisTimeoutError,
            OSError,
        )
        self._refused: type[Exception] = redis_client.RedisError
        self._redis: aioredis.Redis = redis_client.connect(redis_url, timeout_s=2.0)
        self._xadd_once = self._redis.register_script(_XADD_ONCE)
        self._set_status = self._redis.register_script(_SET_STATUS)

    # --- the EventPublisher protocol ----------------------------------------------------------

    async def publish(self, kind: str, payload: dict[str, object]) -> None:
        stream = KIND_STREAMS.get(kind)
        if stream is None:
            raise ValueError(f"unknown event kind {kind!r}; known: {', '.join(KIND_STREAMS)}")
        entry = self._entry(stream, kind, to_json(payload))
        entry.identity = identity(stream, payload)
        if stream == STATUS_STREAM:
            self._push(self._status, entry, self.status_buffer_max)
        else:
            self._push(self._main, entry, self.buffer_max)
        self._kick()

    async def set_status(self, status: dict[str, object]) -> None:
        """Keep the status hash current and append the status to its stream."""
        body = to_json(status)
        ts = now_ms()
        role, holder = str(status.get("role") or "unknown"), str(status.get("holder") or "")
        self._latest_status = (body, ts, role, holder)
        self._push(self._status, self._entry(STATUS_STREAM, "status", body, ts), self.status_buffer_max)
        self._kick()

    async def close(self) -> None:
        """Flush what waits (for at most `flush_timeout_s`), then stop. What is still waiting
        after that is counted as dropped."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_timeout_s):
                    await self._idle.wait()
            await stop_task(self._task)
        for buf in (self._main, self._status):
            while buf:
                self._count_drop(buf.popleft().stream)
        self._gauge()
        await self._redis.aclose()

    # --- buffers ------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._main) + len(self._status)

    @property
    def idle(self) -> bool:
        """True when everything published so far has been written (or dropped)."""
        return self._idle.is_set()

    def _entry(self, stream: str, kind: str, body: str, ts: int | None = None) -> _Entry:
        stamp = now_ms() if ts is None else ts
        return _Entry(stream, {"bot": self.bot, "kind": kind, "ts": str(stamp), "json": body})

    def _push(self, buf: deque[_Entry], entry: _Entry, bound: int) -> None:
        if self._closed:
            self._count_drop(entry.stream)
            return
        buf.append(entry)
        self._trim(buf, bound)

    def _trim(self, buf: deque[_Entry], bound: int) -> None:
        while len(buf) > bound:
            self._count_drop(buf.popleft().stream)

    def _count_drop(self, stream: str) -> None:
        self.dropped[stream] += 1
        if self.metrics is not None:
            self.metrics.events_dropped.labels(stream).inc()

    def _gauge(self) -> None:
        if self.metrics is None:
            return
        counts = {SIGNALS_STREAM: 0, ORDERS_STREAM: 0, STATUS_STREAM: len(self._status)}
        for e in self._main:
            counts[e.stream] += 1
        for stream, n in counts.items():
            self.metrics.events_buffered.labels(stream).set(n)

    def _kick(self) -> None:
        if self._closed:
            return
        self._idle.clear()
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"events:{self.bot}")

    # --- the one writer -----------------------------------------------------------------------

    async def _drain(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._main or self._status or self._latest_status is not None:
                if await self._send_batch():
                    backoff = 0.1
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.retry_max_s)
            self._gauge()
            self._idle.set()

    async def _send_batch(self) -> bool:
        """Send one batch; True when Redis took it (or it can never be taken), False to retry."""
        main = [self._main.popleft() for _ in range(min(len(self._main), BATCH_MAX))]
        room = BATCH_MAX - len(main)
        status = [self._status.popleft() for _ in range(min(len(self._status), room))]
        latest = self._latest_status
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for e in main + status:
                    if e.identity is None:
                        pipe.xadd(e.stream, e.fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
                    else:
                        marker = f"{e.stream}:seen:{self.bot}:{e.identity}"
                        flat = [x for kv in e.fields.items() for x in kv]
                        args: list[str | int] = [self.maxlen, self.dedupe_ttl_s, *flat]
                        await self._xadd_once(keys=[e.stream, marker], args=args, client=pipe)
                if latest is not None:
                    body, ts, role, holder = latest
                    await self._set_status(
                        keys=[status_key(self.bot)],
                        args=[body, ts, role, holder, self.status_stale_ms],
                        client=pipe,
                    )
                results = await pipe.execute()
        except self._lost as e:
            # Put the batch back in front, in order; the bounds then drop the oldest if needed.
            self._main.extendleft(reversed(main))
            self._status.extendleft(reversed(status))
            self._trim(self._main, self.buffer_max)
            self._trim(self._status, self.status_buffer_max)
            self._failed(e)
            return False
        except self._refused as e:
            # Redis refused the commands themselves (wrong key type, out of memory policy):
            # resending cannot help, and holding the batch would block every later entry.
            for entry in main + status:
                self._count_drop(entry.stream)
            if self._latest_status is latest:
                self._latest_status = None
            self._failed(e)
            return True
        if self._latest_status is latest:
            self._latest_status = None
        skipped = sum(1 for r in results[: len(main) + len(status)] if r is None)
        self.duplicates += skipped
        self.published += len(main) + len(status) - skipped
        self.last_error = None
        self._gauge()
        return True

    def _failed(self, e: BaseException) -> None:
        first = self.last_error is None
        self.last_error = f"{type(e).__name__}: {e}"
        if self.metrics is not None:
            self.metrics.event_errors.inc()
            self._gauge()
        if first:
            log_event(
                log, "events_unavailable", logging.WARNING, error=self.last_error, buffered=self.buffered
            )
