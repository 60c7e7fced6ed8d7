"""The fleet's shared risk state: the kill switch and the exposure table, in Redis (or in-process).

Keys, per scope S (a fleet: every bot with the same `risk_scope`):
- `tradefleet:risk:S:halts`: hash, field `*` for the whole scope or a bot name, value the halt as JSON
  (id, reason, by, at, flatten). Written by `tradefleet halt` / the operator / a bot tripping its own
  loss or rate limit; read by every bot every `risk_poll_ms`. A halt stays until `tradefleet resume`.
- `tradefleet:risk:S:exposure`: hash, field a bot, value `units|quote_asset|expires_ms`: the quote that
  bot holds or has reserved for an order in flight, in 1e-8 units (integers, so Lua's doubles add them
  exactly up to 2^53 units, about 90 million quote per scope). `_RESERVE` drops expired entries, sums
  the rest and adds the new amount only if every cap still holds, in one script: two bots buying at
  once cannot both fit into the last room. Bots renew their entry while alive; a bot killed while
  holding a reservation stops counting after `ttl_ms`, so it never blocks the fleet forever.
- `tradefleet:risk:S:events`: stream of halts and resumes (who, what, when), the audit trail.
- `tradefleet:risk:S:limits`: hash, field a fleet limit (`max_fleet_quote`, ...), value a decimal
  string: the limits a TradingFleet sets for the scope (the operator writes them; bots read them with
  the halts, in the same round trip, and apply the stricter of theirs and these).
- `tradefleet:risk:S:equity` and `...:equity_peak`: each leader's equity (realized + unrealized P&L,
  expiring unless renewed) and the fleet's peak, kept by `_EQUITY` in one step (the drawdown limit).

Expiry uses the Redis server's clock (`TIME`), the one clock every bot shares.

`LocalRiskState` is the same contract in one process (no `REDIS_URL`): the table is a dict driven by
the same pure functions (`domain.risk.try_reserve`), and the kill switch is a file (`risk_halt_file`)
that `tradefleet halt --file PATH` writes and `tradefleet resume --file PATH` removes.

What this module refuses to do: decide whether an order may go (that is `domain.risk` plus the gate).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradefleet.domain.risk import (
    FLEET_CAP,
    FLEET_LIMIT_FIELDS,
    QUOTE_ASSET_CAP,
    Exposure,
    FleetEquity,
    Halt,
    RiskLimits,
    deny,
    report_equity,
    set_exposure,
    try_reserve,
)

UNIT = Decimal("0.00000001")
FLEET_FIELD = "*"

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local total, same, own = 0, 0, 0
for i = 1, #all, 2 do
  local amt, quote, exp = string.match(all[i + 1], '^(%d+)|([^|]*)|(%d+)$')
  amt = tonumber(amt)
  if amt == nil or tonumber(exp) <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    total = total + amt
    if quote == ARGV[2] then same = same + amt end
    if all[i] == ARGV[1] then own = amt end
  end
end
local amount, fcap, qcap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if fcap > 0 and total + amount > fcap then
  return {'fleet_cap', string.format('%.0f', total)}
end
if qcap > 0 and same + amount > qcap then
  return {'quote_asset_cap', string.format('%.0f', same)}
end
local expires = now + tonumber(ARGV[6])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f|%s|%.0f', own + amount, ARGV[2], expires))
return {'ok', string.format('%.0f', total + amount)}
"""

# Replace one bot's entry (renew, release, re-register after a restart); 0 deletes it.
_SET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[3]) > 0 then
  local expires = string.format('%.0f', now + tonumber(ARGV[4]))
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. '|' .. ARGV[2] .. '|' .. expires)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return now
"""


_SET_PNL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. string.format('%.0f', now + tonumber(ARGV[3])))
return now
"""


# A bot reports its equity; returns the fleet's sum and peak. Entries that expired leave the peak with
# their equity, a bot that joins brings its own (see `domain.risk.report_equity`, the same rule).
_EQUITY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local stored = redis.call('GET', KEYS[2])
local peak = nil
if stored then peak = tonumber(stored) end
local total, known = 0, false
for i = 1, #all, 2 do
  local amt, exp = string.match(all[i + 1], '^(%-?%d+)|(%d+)$')
  amt = tonumber(amt)
  if amt == nil or tonumber(exp) <= now then
    redis.call('HDEL', KEYS[1], all[i])
    if peak and amt then peak = peak - amt end
  elseif all[i] == ARGV[1] then
    known = true
  else
    total = total + amt
  end
end
local value = tonumber(ARGV[2])
if peak and not known then peak = peak + value end
total = total + value
if peak == nil or total > peak then peak = total end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. string.format('%.0f', now + tonumber(ARGV[3])))
redis.call('SET', KEYS[2], string.format('%.0f', peak))
return {string.format('%.0f', total), string.format('%.0f', peak), tostring(redis.call('HLEN', KEYS[1]))}
"""


_REPLACE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or cjson.decode(current)['halt_id'] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def to_units(amount: Decimal) -> int:
    return int((amount / UNIT).to_integral_value())


def from_units(units: int | str) -> Decimal:
    """Units back to a decimal as people write it: 250, not 2.5E+2 (what `normalize` alone makes of
    a whole number ending in zeros, which reached the stored denial reasons)."""
    d = (Decimal(int(units)) * UNIT).normalize()
    return d.quantize(Decimal(1)) if d.as_tuple().exponent > 0 else d  # type: ignore[operator]


def halt_to_json(h: Halt) -> str:
    return json.dumps(
        {"halt_id": h.halt_id, "reason": h.reason, "by": h.by, "at_ms": h.at_ms, "bot": h.bot,
         "flatten": h.flatten},
        sort_keys=True,
    )  # fmt: skip


def halt_from_json(text: str) -> Halt:
    d = json.loads(text)
    return Halt(
        halt_id=str(d["halt_id"]),
        reason=str(d.get("reason", "")),
        by=str(d.get("by", "")),
        at_ms=int(d.get("at_ms", 0)),
        bot=d.get("bot"),
        flatten=bool(d.get("flatten", False)),
    )


def limits_from_fields(fields: dict[str, str]) -> RiskLimits:
    """The fleet limits in the scope's `limits` hash; a field that is not a fleet limit or not a
    decimal >= 0 is skipped (the operator validated it; a hand-written typo must not stop the fleet)."""
    values: dict[str, Decimal] = {}
    for name in FLEET_LIMIT_FIELDS:
        try:
            value = Decimal(fields.get(name, "0"))
        except ArithmeticError:
            continue
        if value.is_finite() and value > 0:
            values[name] = value
    return RiskLimits(**values)  # type: ignore[arg-type]


def limits_to_fields(limits: RiskLimits) -> dict[str, str]:
    return {n: format(getattr(limits, n), "f") for n in FLEET_LIMIT_FIELDS if getattr(limits, n) > 0}


def new_halt(reason: str, by: str, *, bot: str | None = None, flatten: bool = False) -> Halt:
    at = int(time.time() * 1000)
    return Halt(
        halt_id=f"{at}-{secrets.token_hex(4)}", reason=reason, by=by, at_ms=at, bot=bot, flatten=flatten
    )


class RedisRiskState:
    """`ports.RiskState` on Redis: one round trip per call, no retries inside (the caller's next
    poll is the retry, and a failed read makes the switch state unknown, which opens nothing)."""

    def __init__(
        self, redis_url: str, scope: str, *, timeout_s: float = 0.5, halt_file: str | None = None
    ) -> None:
        self.scope = scope
        # The operator's switch (spec.risk.halted, a mounted file) is read next to Redis's.
        self.halt_file = Path(halt_file) if halt_file else None
        self.prefix = f"tradefleet:risk:{scope}"
        # decode_responses=True: every reply is str; the stubs cannot say so, hence Any.
        from tradefleet.coord import redis_client, resp  # only a bot with Redis loads redis-py

        self._redis: Any = redis_client.connect(redis_url, timeout_s=timeout_s)
        # The fleet reserve is on the order path (a BUY waits for it): its own lean connection.
        self._hot = resp.RespClient(redis_url, timeout_s=timeout_s)
        self._reserve_script = resp.Script.of(_RESERVE)
        self._set = self._redis.register_script(_SET)
        self._set_pnl = self._redis.register_script(_SET_PNL)
        self._equity = self._redis.register_script(_EQUITY)
        self._replace = self._redis.register_script(_REPLACE)

    def read_ready(self) -> None:
        """A reserve's reply already in the socket, read now (`RespClient.read_ready`)."""
        self._hot.read_ready()

    async def open(self) -> None:
        """Connect the order path's connection now, so the first BUY does not pay for it (a failure
        here is the first reserve's to report: it connects again)."""
        from tradefleet.coord import redis_client

        with contextlib.suppress(redis_client.RedisError, OSError):
            await self._hot.connect()

    @property
    def halts_key(self) -> str:
        return f"{self.prefix}:halts"

    @property
    def exposure_key(self) -> str:
        return f"{self.prefix}:exposure"

    @property
    def events_key(self) -> str:
        return f"{self.prefix}:events"

    @property
    def limits_key(self) -> str:
        return f"{self.prefix}:limits"

    async def halts(self) -> list[Halt]:
        raw: dict[str, str] = await self._redis.hgetall(self.halts_key)
        return [*(halt_from_json(v) for v in raw.values()), *read_halt_file(self.halt_file).values()]

    async def switch(self) -> tuple[list[Halt], RiskLimits]:
        """The halts in force and the fleet's limits, in one round trip (what a bot polls)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self.halts_key)
        pipe.hgetall(self.limits_key)
        raw, limits = await pipe.execute()
        halts = [*(halt_from_json(v) for v in raw.values()), *read_halt_file(self.halt_file).values()]
        return halts, limits_from_fields(limits)

    async def set_fleet_limits(self, limits: RiskLimits) -> None:
        """Replace the scope's fleet limits (only the fleet fields; none set removes them all)."""
        fields = limits_to_fields(limits)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self.limits_key)
        if fields:
            pipe.hset(self.limits_key, mapping=fields)
        await pipe.execute()

    async def report_equity(self, bot: str, value: Decimal, ttl_ms: int) -> FleetEquity:
        total, peak, members = await self._equity(
            keys=[f"{self.prefix}:equity", f"{self.prefix}:equity_peak"],
            args=[bot, to_units(value), ttl_ms],
        )
        return FleetEquity(total=from_units(total), peak=from_units(peak), members=int(members))

    async def fleet_equity(self) -> FleetEquity:
        """The fleet's equity as last reported (live entries only; the peak as last kept)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(f"{self.prefix}:equity")
        pipe.get(f"{self.prefix}:equity_peak")
        pipe.time()
        raw, peak, (sec, usec) = await pipe.execute()
        now = sec * 1000 + usec // 1000
        live = [int(v.split("|")[0]) for v in raw.values() if int(v.split("|")[1]) > now]
        return FleetEquity(
            total=from_units(sum(live)), peak=None if peak is None else from_units(peak), members=len(live)
        )

    async def halt(self, h: Halt) -> Halt:
        """Set a halt unless one of the same scope is already in force (then that one is kept, so a
        second `halt` or a bot re-tripping never changes the halt id a flatten was keyed on)."""
        field = h.bot or FLEET_FIELD
        if await self._redis.hsetnx(self.halts_key, field, halt_to_json(h)):
            await self._event("halt", h)
            return h
        current = await self._redis.hget(self.halts_key, field)
        return halt_from_json(current) if current else h

    async def replace_halt(self, old_id: str, h: Halt) -> bool:
        """Put `h` in place of the halt in force of its scope if that one's id is `old_id`, in one step
        (no instant without a halt, and never over a halt someone else set meanwhile)."""
        field = h.bot or FLEET_FIELD
        done = await self._replace(keys=[self.halts_key], args=[field, old_id, halt_to_json(h)])
        if done:
            await self._event("halt", h, replaces=old_id)
        return bool(done)

    async def resume(self, bot: str | None, by: str) -> Halt | None:
        field = bot or FLEET_FIELD
        current = await self._redis.hget(self.halts_key, field)
        if current is None:
            return None
        await self._redis.hdel(self.halts_key, field)
        if bot is None:  # resuming the fleet accepts its drawdown so far: a new peak starts now
            await self._redis.delete(f"{self.prefix}:equity_peak")
        h = halt_from_json(current)
        await self._event("resume", h, by=by)
        return h

    async def _event(self, kind: str, h: Halt, **extra: str) -> None:
        fields = {"kind": kind, "halt": halt_to_json(h), "at_ms": str(int(time.time() * 1000)), **extra}
        await self._redis.xadd(self.events_key, fields, maxlen=10_000, approximate=True)  # type: ignore[arg-type]

    async def events(self, count: int = 100) -> list[dict[str, Any]]:
        rows = await self._redis.xrevrange(self.events_key, count=count)
        return [dict(fields) for _, fields in rows]

    async def reserve(
        self, bot: str, quote_asset: str, amount: Decimal, limits: RiskLimits, ttl_ms: int
    ) -> str | None:
        return await self.start_reserve(bot, quote_asset, amount, limits, ttl_ms)

    def start_reserve(
        self, bot: str, quote_asset: str, amount: Decimal, limits: RiskLimits, ttl_ms: int
    ) -> asyncio.Future[str | None]:
        """`reserve`, its request on the wire when this returns (`coord.resp`): the order manager
        reads the answer after the order's commit, which runs meanwhile."""

        def outcome(reply: Any) -> Any:
            if isinstance(reply, BaseException):
                return reply
            status, held = str(reply[0]), from_units(reply[1])
            if status == "ok":
                return None
            # The same words as `domain.risk.try_reserve` (the in-process twin) says them.
            if status == "fleet_cap":
                return deny(FLEET_CAP, f"{held} held + {amount} > {limits.max_fleet_quote}")
            return deny(QUOTE_ASSET_CAP, f"{quote_asset}: {held} + {amount} > {limits.max_quote_asset_quote}")

        answer: asyncio.Future[str | None] = self._hot.evalsha(
            self._reserve_script,
            [self.exposure_key],
            [bot, quote_asset, to_units(amount), to_units(limits.max_fleet_quote),
             to_units(limits.max_quote_asset_quote), ttl_ms],
            settle=outcome,
        )  # fmt: skip
        return answer

    async def set_exposure(self, bot: str, quote_asset: str, amount: Decimal, ttl_ms: int) -> None:
        await self._set(keys=[self.exposure_key], args=[bot, quote_asset, to_units(amount), ttl_ms])

    async def exposure(self) -> dict[str, Exposure]:
        """Every live entry (expired ones are left for the next reserve to purge)."""
        raw: dict[str, str] = await self._redis.hgetall(self.exposure_key)
        sec, usec = await self._redis.time()
        now = sec * 1000 + usec // 1000
        out: dict[str, Exposure] = {}
        for bot, value in raw.items():
            units, quote, expires = value.split("|")
            if int(expires) > now:
                out[bot] = Exposure(from_units(units), quote, int(expires))
        return out

    async def report_pnl(self, bot: str, pnl: Decimal, ttl_ms: int) -> None:
        await self._set_pnl(keys=[f"{self.prefix}:pnl"], args=[bot, str(pnl), ttl_ms])

    async def fleet_pnl(self) -> dict[str, Decimal]:
        raw: dict[str, str] = await self._redis.hgetall(f"{self.prefix}:pnl")
        sec, usec = await self._redis.time()
        now = sec * 1000 + usec // 1000
        out: dict[str, Decimal] = {}
        for bot, value in raw.items():
            pnl, expires = value.rsplit("|", 1)
            if int(expires) > now:
                out[bot] = Decimal(pnl)
        return out

    async def close(self) -> None:
        await self._hot.close()
        await self._redis.aclose()


class LocalRiskState:
    """`ports.RiskState` in one process: the exposure table in memory, the switch in a file (or in
    memory when no file is configured: then only the bot's own trips can halt it)."""

    def __init__(self, halt_file: str | None = None) -> None:
        self.halt_file = Path(halt_file) if halt_file else None
        self._halts: dict[str, Halt] = {}
        self._table: dict[str, Exposure] = {}
        self._pnl: dict[str, tuple[Decimal, int]] = {}
        self._limits = RiskLimits()
        self._equity: dict[str, tuple[Decimal, int]] = {}
        self._peak: Decimal | None = None

    async def open(self) -> None:
        """Nothing to connect."""

    async def halts(self) -> list[Halt]:
        out = dict(self._halts)
        out.update(read_halt_file(self.halt_file))
        return list(out.values())

    async def switch(self) -> tuple[list[Halt], RiskLimits]:
        return await self.halts(), self._limits

    async def set_fleet_limits(self, limits: RiskLimits) -> None:
        self._limits = limits_from_fields(limits_to_fields(limits))

    async def report_equity(self, bot: str, value: Decimal, ttl_ms: int) -> FleetEquity:
        self._equity, fleet = report_equity(self._equity, self._peak, bot, value, now_ms=_ms(), ttl_ms=ttl_ms)
        self._peak = fleet.peak
        return fleet

    async def fleet_equity(self) -> FleetEquity:
        now = _ms()
        live = [a for a, exp in self._equity.values() if exp > now]
        return FleetEquity(total=sum(live, Decimal(0)), peak=self._peak, members=len(live))

    async def halt(self, h: Halt) -> Halt:
        field = h.bot or FLEET_FIELD
        current = {**self._halts, **read_halt_file(self.halt_file)}.get(field)
        if current is not None:
            return current
        self._halts[field] = h
        if self.halt_file is not None:
            write_halt_file(self.halt_file, h)
        return h

    async def resume(self, bot: str | None, by: str) -> Halt | None:
        field = bot or FLEET_FIELD
        h = self._halts.pop(field, None)
        if bot is None:
            self._peak = None  # as with Redis: a new peak starts when the fleet resumes
        if self.halt_file is not None:
            h = remove_from_halt_file(self.halt_file, field) or h
        return h

    async def reserve(
        self, bot: str, quote_asset: str, amount: Decimal, limits: RiskLimits, ttl_ms: int
    ) -> str | None:
        return await self.start_reserve(bot, quote_asset, amount, limits, ttl_ms)

    def start_reserve(
        self, bot: str, quote_asset: str, amount: Decimal, limits: RiskLimits, ttl_ms: int
    ) -> asyncio.Future[str | None]:
        """`reserve`, answered at once (in this process): the future is done when returned."""
        self._table, denial = try_reserve(
            self._table, bot, quote_asset, amount, limits=limits, now_ms=_ms(), ttl_ms=ttl_ms
        )
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        answer.set_result(denial)
        return answer

    async def set_exposure(self, bot: str, quote_asset: str, amount: Decimal, ttl_ms: int) -> None:
        self._table = set_exposure(self._table, bot, quote_asset, amount, now_ms=_ms(), ttl_ms=ttl_ms)

    async def exposure(self) -> dict[str, Exposure]:
        now = _ms()
        return {b: e for b, e in self._table.items() if e.expires_ms > now}

    async def report_pnl(self, bot: str, pnl: Decimal, ttl_ms: int) -> None:
        self._pnl[bot] = (pnl, _ms() + ttl_ms)

    async def fleet_pnl(self) -> dict[str, Decimal]:
        now = _ms()
        return {b: p for b, (p, exp) in self._pnl.items() if exp > now}

    async def close(self) -> None:
        return None


def _ms() -> int:
    return int(time.time() * 1000)


def read_halt_file(path: Path | None) -> dict[str, Halt]:
    """The halts in the kill-switch file: a JSON object {field: halt}. A file that exists but cannot
    be read as that halts the whole scope: an operator who wrote *something* there meant to stop."""
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text() or "{}")
        return {str(k): halt_from_json(json.dumps(v)) for k, v in data.items()}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return {FLEET_FIELD: Halt("file", f"unreadable kill-switch file {path}", "file", 0)}


def write_halt_file(path: Path, h: Halt) -> None:
    current = {k: json.loads(halt_to_json(v)) for k, v in read_halt_file(path).items()}
    current.setdefault(h.bot or FLEET_FIELD, json.loads(halt_to_json(h)))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(current, sort_keys=True))
    os.replace(tmp, path)  # atomic: a bot never reads half a file


def remove_from_halt_file(path: Path, field: str) -> Halt | None:
    current = read_halt_file(path)
    h = current.pop(field, None)
    if not current:
        path.unlink(missing_ok=True)
    else:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(
            json.dumps({k: json.loads(halt_to_json(v)) for k, v in current.items()}, sort_keys=True)
        )
        os.replace(tmp, path)
    return h
