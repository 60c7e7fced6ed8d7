"""Who may trade: the leader lease among a bot's replicas, with a fencing token.

Several replicas of one bot may run at once (rolling updates surge, or on purpose for fast
failover). They all ingest the feed and keep their candles and SMAs warm; only the lease holder
submits orders. Two implementations of `tradefleet.ports.Lease`:

- `RedisLease`: the key `tradefleet:lease:<bot>:<exchange>:<market_id>` is taken with
  `SET NX PX` inside a Lua script that also hands out the fencing token (`INCR` on the key next to
  it), so taking the key and numbering the holder are one atomic step. Renew, release and confirm
  are Lua scripts that act only when the key still holds *our* value (`<holder>#<fence>`): a
  replica can never extend or delete someone else's lease, whatever its local clock believes.
- `LocalLease`: the embedded default without `REDIS_URL` (one process, always the leader).

Safety rules, in the order they matter:
1. The local validity deadline is computed from a monotonic clock read *before* the SET/renew
   request was sent (the server's TTL starts later than that, never earlier), minus a clock-drift
   allowance, minus a safety margin for an order's own flight time. `may_trade()` compares against
   that deadline on every call, so a process that was paused (SIGSTOP, GC, swapped out) sees
   False the instant it wakes, before its renew loop has even run. The clock is CLOCK_BOOTTIME
   where it exists: unlike CLOCK_MONOTONIC it keeps counting while the machine is suspended, and
   Redis's TTL (on another machine) keeps counting too.
2. Any Redis error makes the state `unknown` and `may_trade()` False at once: no replica trades
   while leadership cannot be proven. Errors are counted; the loop keeps trying and trading resumes
   by itself when Redis answers again.
3. `confirm()` asks Redis, right before an order leaves, whether the key still holds our value
   and has more than the safety margin to live. `start_confirm()` is the same question with the
   request already written to the socket when it returns (`coord.resp`, a connection of its own
   opened by `start()`), so the order manager can overlap its round trip with the order's commit
   even when that commit blocks the event loop.

What this module refuses to do: decide anything about orders (the order manager does, using
`may_trade()`/`confirm()`/`fencing_token`), or retry a Redis call inside one renewal (the next
tick is the retry; a hidden retry would spend the validity window).

Redis without persistence loses the fencing counter on restart; the acquire script therefore
seeds a missing counter from the server clock in milliseconds, so tokens keep increasing across a
Redis restart as long as fewer than one holder change per millisecond happened before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tradefleet.logs import log_event, now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.tasks import stop_task

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from tradefleet.coord import resp

log = logging.getLogger(__name__)

_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def _now() -> float:
    """Seconds on a clock that never goes back and also counts suspended time (Linux)."""
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


LEADER = "leader"
STANDBY = "standby"
UNKNOWN = "unknown"

# Acquire: adopt the key if it already holds our holder id (a reply we lost to a timeout, or a blip
# during which the key never expired), otherwise take it with SET NX PX and number the new holder.
# Returns {1, fence, value} when we hold it, {0, 0, current_value} when someone else does.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local prefix = ARGV[1] .. '#'
  if string.sub(cur, 1, #prefix) == prefix then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, tonumber(string.sub(cur, #prefix + 1)), cur}
  end
  return {0, 0, cur}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.replicate_commands then redis.replicate_commands() end  -- TIME then a write: Redis < 5
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
local fence = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. '#' .. fence
if redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2]) then
  return {1, fence, value}
end
return {0, 0, ''}
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Remaining time to live in ms when the key holds our value, -3 otherwise.
_CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
return -3
"""


def lease_key(bot: str, exchange: str, market_id: str) -> str:
    """The Redis key of one bot's lease; its fencing counter is `<key>:fencing`."""
    return f"tradefleet:lease:{bot}:{exchange}:{market_id}"


def default_holder_id() -> str:
    """Pod name (downward API) or hostname, plus pid and randomness: unique per process even when
    two replicas share a pod name (a restarted container) or a host (tests, compose)."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}:{os.getpid()}:{secrets.token_hex(4)}"


Listener = Callable[[str], None]


class _Transitions:
    """The state plus the listeners told about each change (leader gauge included)."""

    def __init__(self, metrics: BotMetrics | None, on_change: Listener | None) -> None:
        self._state = STANDBY
        self._metrics = metrics
        self._listeners: list[Listener] = [on_change] if on_change else []
        self.became_leader = asyncio.Event()
        if metrics is not None:
            metrics.leader.set(0)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _set(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        if state == LEADER:
            self.became_leader.set()
        else:
            self.became_leader.clear()
        if self._metrics is not None:
            self._metrics.leader.set(1 if state == LEADER else 0)
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                # A listener's bug must not stop the lease loop (that would freeze leadership).
                log.exception("lease listener failed", extra={"event": "lease_listener_error"})


class LocalLease(_Transitions):
    """One process, no coordinator: the leader from `start()` to `stop()`.

    The fencing token is the start time in ms, so it still increases across restarts of the one
    process (what a store that records tokens on orders can check)."""

    def __init__(
        self,
        holder_id: str | None = None,
        *,
        metrics: BotMetrics | None = None,
        on_change: Listener | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(metrics, on_change)
        self.holder = holder_id or default_holder_id()
        self.last_error: str | None = None
        self._fence: int | None = None
        self._clock = clock

    async def start(self) -> None:
        self._fence = self._clock()
        self._set(LEADER)

    async def stop(self) -> None:
        self._set(STANDBY)

    def may_trade(self) -> bool:
        return self._state == LEADER

    def start_confirm(self) -> asyncio.Future[bool]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(self._state == LEADER)
        return done

    async def confirm(self) -> bool:
        return self._state == LEADER

    @property
    def fencing_token(self) -> int | None:
        return self._fence if self._state == LEADER else None

    @property
    def state(self) -> str:
        return self._state

    def remaining_ms(self) -> int:
        """No coordinator, no expiry: Binance's largest recvWindow while leading, 0 otherwise."""
        return 60_000 if self._state == LEADER else 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "holder": self.holder,
            "fencing_token": self.fencing_token,
            "last_error": None,
            "may_trade": self.may_trade(),
        }


class RedisLease(_Transitions):
    """The Redis-backed lease; see the module docstring for the safety rules."""

    def __init__(
        self,
        redis_url: str,
        key: str,
        holder_id: str,
        *,
        ttl_ms: int,
        renew_ms: int,
        metrics: BotMetrics | None = None,
        on_change: Listener | None = None,
        safety_margin_ms: int | None = None,
        drift_factor: float = 0.01,
    ) -> None:
        if ttl_ms <= 0 or renew_ms <= 0:
            raise ValueError("ttl_ms and renew_ms must be positive")
        margin = ttl_ms // 5 if safety_margin_ms is None else safety_margin_ms
        # Clock drift between us and Redis (Redlock's 1% + 2 ms), then the order's flight time.
        self._valid_for_s = (ttl_ms - ttl_ms * drift_factor - 2 - margin) / 1000
        if renew_ms / 1000 >= self._valid_for_s:
            raise ValueError(
                f"renew_ms ({renew_ms}) must be shorter than the usable part of the lease "
                f"(ttl {ttl_ms} - drift - safety margin {margin} = {self._valid_for_s * 1000:.0f} ms)"
            )
        super().__init__(metrics, on_change)
        self.key = key
        self.fence_key = key + ":fencing"
        self.holder_id = holder_id
        self.ttl_ms = ttl_ms
        self.renew_ms = renew_ms
        self.safety_margin_ms = margin
        self.last_error: str | None = None
        self._value: str | None = None  # "<holder>#<fence>" while we hold the key
        self._fence: int | None = None
        self._valid_until = 0.0  # monotonic seconds
        self._other: str | None = None  # holder id of the current leader when it is not us
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # One attempt per call, bounded by the socket timeout: the next tick is the retry.
        timeout = max(0.2, min(renew_ms / 1000, self._valid_for_s / 2))
        from tradefleet.coord import redis_client, resp  # only a bot with Redis loads redis-py

        self._errors: tuple[type[Exception], ...] = (redis_client.RedisError, OSError)
        self._redis: aioredis.Redis = redis_client.connect(redis_url, timeout_s=timeout)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        # The confirmation is on the order path: its own connection, written before it returns.
        self._hot: resp.RespClient = resp.RespClient(redis_url, timeout_s=timeout)
        self._confirm_script = resp.Script.of(_CONFIRM)

    # --- the Lease protocol -------------------------------------------------------------------

    async def start(self) -> None:
        """Try once right away (so a lone replica trades without waiting a tick), then renew or
        retry in the background."""
        if self._task is not None:
            return
        # The confirmation's connection, beside the first attempt, so the first order does not pay
        # for it. Not fatal: the first confirmation connects again (and counts its own failure).
        hot = asyncio.ensure_future(self._hot.connect())
        try:
            await self._tick()
        finally:
            try:
                await hot
            except self._errors as e:
                error = repr(e)[:200]
                log_event(log, "lease_confirm_connect_failed", logging.WARNING, key=self.key, error=error)
        self._task = asyncio.create_task(self._run(), name=f"lease:{self.key}")

    async def stop(self) -> None:
        """Stop renewing and release the key so a standby takes over at its next attempt rather
        than after the TTL."""
        task, self._task = self._task, None
        await stop_task(task)
        value, self._value = self._value, None
        self._valid_until = 0.0
        if value is not None:
            try:
                released = await self._release(keys=[self.key], args=[value])
                log_event(log, "lease_released", key=self.key, released=bool(released))
            except self._errors as e:
                self._error("release", e)
        self._fence = None
        self._set(STANDBY)
        await self._hot.close()
        await self._redis.aclose()

    def may_trade(self) -> bool:
        return self._state == LEADER and _now() < self._valid_until

    def start_confirm(self) -> asyncio.Future[bool]:
        """`confirm()` with its request written to Redis before this returns (nothing to send when
        not leading: then the answer is already there). The future's result is `confirm()`'s, decided
        as the reply is read (no loop turn between the two); cancelling the future does not undo what
        the reply tells the lease."""
        value = self._value
        if value is None or not self.may_trade():
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            answer.set_result(False)
            return answer
        return self._hot.evalsha(self._confirm_script, [self.key], [value], settle=self._confirmed)

    async def confirm(self) -> bool:
        return await self.start_confirm()

    def read_ready(self) -> None:
        """A confirmation's reply already in the socket, read now (`RespClient.read_ready`)."""
        self._hot.read_ready()

    def _confirmed(self, reply: object) -> bool:
        """The confirmation's reply (or the exception that ended it) -> may the order leave."""
        if isinstance(reply, BaseException):
            return self._failed_confirm(reply)
        if isinstance(reply, bool) or not isinstance(reply, int):
            # Never trade on a reply we cannot read.
            return self._failed_confirm(TypeError(f"confirm: an integer expected, not {reply!r:.80}"))
        if reply == -3:
            self._lose(STANDBY)
            return False
        return reply > self.safety_margin_ms and self.may_trade()

    def _failed_confirm(self, error: BaseException) -> bool:
        self._error("confirm", error)
        self._lose(UNKNOWN)
        return False

    @property
    def fencing_token(self) -> int | None:
        return self._fence

    @property
    def state(self) -> str:
        # A leader past its deadline (paused, or Redis slow to answer) cannot prove leadership.
        if self._state == LEADER and _now() >= self._valid_until:
            return UNKNOWN
        return self._state

    # --- more for /status and /readyz ---------------------------------------------------------

    @property
    def holder(self) -> str | None:
        """The current leader's holder id as last seen (ours while we lead)."""
        if self._state == LEADER:
            return self.holder_id
        return self._other

    def remaining_ms(self) -> int:
        """Milliseconds of trading validity left (0 when not the leader). An order request signed
        with recvWindow <= this cannot be accepted after the lease may have passed to another."""
        if self._state != LEADER:
            return 0
        return max(0, int((self._valid_until - _now()) * 1000))

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "holder": self.holder,
            "fencing_token": self.fencing_token,
            "last_error": self.last_error,
            "may_trade": self.may_trade(),
        }

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            delay = self.renew_ms / 1000
            if self._state == UNKNOWN:
                # Retry sooner while leadership is unproven: trading waits for it.
                delay = min(delay, 0.25)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            try:
                await self._tick()
            except Exception as e:
                # Not a Redis error (those are handled in the tick): a bug or a reply we cannot
                # read. Never trade on it, and keep the loop alive so leadership can come back.
                log.exception("lease tick failed", extra={"event": "lease_tick_error"})
                self._error("tick", e)
                self._lose(UNKNOWN)

    async def _tick(self) -> None:
        if self._value is not None and self._state == LEADER:
            await self._do_renew(self._value)
        else:
            await self._do_acquire()

    async def _do_acquire(self) -> None:
        sent = _now()
        try:
            held, fence, current = await self._acquire(
                keys=[self.key, self.fence_key], args=[self.holder_id, self.ttl_ms]
            )
        except self._errors as e:
            self._error("acquire", e)
            self._lose(UNKNOWN)
            return
        self.last_error = None
        if int(held) == 1:
            self._value = str(current)
            self._fence = int(fence)
            self._valid_until = sent + self._valid_for_s
            self._other = None
            if self._state != LEADER:
                log_event(log, "lease_acquired", key=self.key, holder=self.holder_id, fencing_token=fence)
            self._set(LEADER)
        else:
            self._other = str(current).rpartition("#")[0] or None
            self._value = None
            self._fence = None
            self._set(STANDBY)

    async def _do_renew(self, value: str) -> None:
        sent = _now()
        try:
            renewed = await self._renew(keys=[self.key], args=[value, self.ttl_ms])
        except self._errors as e:
            self._error("renew", e)
            self._lose(UNKNOWN)
            return
        self.last_error = None
        if int(renewed) == 1:
            self._valid_until = sent + self._valid_for_s
        else:
            # Expired (we were paused or Redis lost it) and maybe already taken by another replica.
            log_event(log, "lease_lost", logging.WARNING, key=self.key, holder=self.holder_id)
            self._lose(STANDBY)
            self._wake.set()  # try to take it back now if it is free

    def _lose(self, state: str) -> None:
        """Stop trading at once. On `unknown` we keep our value: if the key turns out to still be
        ours when Redis answers again, the acquire script adopts it with the same fencing token."""
        self._valid_until = 0.0
        if state == STANDBY:
            self._value = None
            self._fence = None
        self._set(state)

    def _error(self, op: str, e: BaseException) -> None:
        self.last_error = f"{op}: {type(e).__name__}: {e}"
        if self._metrics is not None:
            self._metrics.lease_errors.inc()
        log_event(log, "lease_error", logging.WARNING, key=self.key, op=op, error=self.last_error)
