"""Thin kopf handlers for TradingFleet: mirror the spec into Redis, read the scope back into status.

    create / update(spec) / resume -> `sync_fleet`: validate, write the halt and the limits, status
    timer (every status_interval_s) -> `sync_fleet` again: a Redis that restarted empty gets the
                                     switch back (same halt id), and the status follows the scope
                                     (a bot's loss-limit trip, a `tradefleet halt`, exposure, drawdown)

No Redis configured (TRADEFLEET_OPERATOR_REDIS_URL), or Redis unreachable: the status says so
(Synced False) and the timer tries again; nothing is raised to kopf, whose retries would only repeat
what the timer does. An invalid spec writes nothing: Synced False, InvalidSpec, one Warning Event.
Deleting a TradingFleet leaves its scope's Redis keys as they are: deleting is not resuming.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import kopf

from tradefleet.coord.risk_state import RedisRiskState
from tradefleet.errors import ConfigError
from tradingbot_operator import fleet_switch
from tradingbot_operator.conditions import condition
from tradingbot_operator.fleet import (
    FLEET_PLURAL,
    FleetObservation,
    build_fleet_status,
    fleet_halt_id,
    fleet_status_changed,
    parse_fleet,
)
from tradingbot_operator.settings import GROUP, VERSION


def register_fleet(registry: kopf.OperatorRegistry, ctx: Any) -> None:
    resource = (GROUP, VERSION, FLEET_PLURAL)
    # One sync at a time per TradingFleet: kopf runs the timer beside the change handlers, and a timer
    # that read `halted: true` just before an edit to false must not write the halt back after the
    # handler lifted it. The spec is read after the lock is taken (kopf's body is a live view).
    locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def locked(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
        async with locks[str(body.get("metadata", {}).get("uid"))]:
            await sync_fleet(ctx, body, patch, logger)

    @kopf.on.resume(*resource, id="mirror", registry=registry)
    @kopf.on.create(*resource, id="mirror", registry=registry)
    @kopf.on.update(*resource, field="spec", id="mirror", registry=registry)
    async def mirror(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await locked(body, patch, logger)

    @kopf.timer(*resource, id="resync", interval=ctx.settings.status_interval_s, registry=registry)
    async def resync(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await locked(body, patch, logger)

    @kopf.on.delete(*resource, id="forget", optional=True, registry=registry)
    def forget(uid: str, **_: Any) -> None:
        locks.pop(uid, None)


async def sync_fleet(ctx: Any, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
    meta, status = body.get("metadata", {}), dict(body.get("status") or {})
    generation, uid = int(meta.get("generation") or 0), str(meta.get("uid") or "")
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    try:
        fleet = parse_fleet(name, namespace, body.get("spec") or {})
    except ConfigError as e:
        before = condition(status, "Synced") or {}
        _write(ctx, patch, status, FleetObservation(generation, scope=name, invalid=str(e)))
        if before.get("message") != str(e):
            kopf.event(body, type="Warning", reason="InvalidSpec", message=str(e)[:1000])
        ctx.metrics.reconciles.labels("invalid").inc()
        return
    if not ctx.settings.redis_url:
        why = ("NoRedis", "the operator has no Redis (TRADEFLEET_OPERATOR_REDIS_URL): nothing mirrored")
        _write(ctx, patch, status, FleetObservation(generation, scope=fleet.scope, unsynced=why))
        return
    state = RedisRiskState(ctx.settings.redis_url, fleet.scope, timeout_s=2.0)
    try:
        done, own = await fleet_switch.sync(
            state,
            fleet,
            new_id=fleet_halt_id(uid, generation),
            known_id=status.get("haltId") or None,
            now_ms=int(time.time() * 1000),
        )
        obs = await fleet_switch.observe(state, fleet, generation, own)
    except Exception as e:  # Redis down or refusing: say so, the timer tries again
        ctx.metrics.errors.labels("temporary").inc()
        why = ("RedisUnavailable", f"cannot write the switch to Redis: {e!r}"[:500])
        _write(ctx, patch, status, FleetObservation(generation, scope=fleet.scope, unsynced=why))
        logger.warning(f"TradingFleet not mirrored into Redis: {e!r}")
        return
    finally:
        await state.close()
    if done != "unchanged":
        logger.info(f"fleet kill switch {done} in Redis scope {fleet.scope}")
        kopf.event(body, type="Warning" if fleet.halted else "Normal",
                   reason="Halted" if fleet.halted else "Resumed",
                   message=f"fleet switch {done} in scope {fleet.scope}: {fleet.reason or '-'}")  # fmt: skip
    _write(ctx, patch, status, obs)
    ctx.metrics.reconciles.labels("ok").inc()


def _write(ctx: Any, patch: kopf.Patch, status: dict[str, Any], obs: FleetObservation) -> None:
    new = build_fleet_status(obs, status, ctx.now())
    if fleet_status_changed(status, new):
        patch.status.update(new)
