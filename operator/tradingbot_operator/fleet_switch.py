"""Mirror a TradingFleet into its scope's Redis keys, and read the scope back for the status.

The keys are the bots' own (`coord.risk_state`): the fleet halt is field `*` of the halts hash that
`tradefleet halt` writes, the limits the `limits` hash every bot reads with the halts. So the switch
works through Redis alone: a bot honours a halt that is there whether the operator runs or not, and
`tradefleet halt` / `resume` act on the same state the resource shows.

What this module refuses to do: lift a fleet halt it did not write (see `fleet`), or decide anything
the pure `fleet` module decides.
"""

from __future__ import annotations

from decimal import Decimal

from tradefleet.coord.risk_state import RedisRiskState
from tradingbot_operator.fleet import FleetObservation, FleetSpec


async def sync(
    state: RedisRiskState, fleet: FleetSpec, *, new_id: str, known_id: str | None, now_ms: int
) -> tuple[str, str | None]:
    """Write the fleet's limits and its halt. Returns (what was done, the id of this resource's halt in
    force or None). `known_id` is the halt this resource wrote before (status.haltId): written again
    with that id if Redis lost it, so no flatten is asked twice; `new_id` names a halt asked anew."""
    await state.set_fleet_limits(fleet.limits)
    current = next((h for h in await state.halts() if h.bot is None), None)
    ours = current is not None and current.by == fleet.by
    if fleet.halted:
        if current is None:
            written = await state.halt(fleet.halt(known_id or new_id, now_ms))
            return "halted", written.halt_id if written.by == fleet.by else None
        if not ours:
            return "unchanged", None  # someone else's halt holds the fleet: it stays, status says whose
        assert current is not None
        if (current.reason, current.flatten) == (fleet.halt("", 0).reason, fleet.flatten):
            return "unchanged", current.halt_id
        replaced = await state.replace_halt(current.halt_id, fleet.halt(new_id, now_ms))
        return ("replaced", new_id) if replaced else ("unchanged", None)
    if ours:
        assert current is not None
        await state.resume(None, f"operator: {fleet.by} false")
        return "resumed", None
    return "unchanged", None


async def observe(
    state: RedisRiskState, fleet: FleetSpec, generation: int, own: str | None
) -> FleetObservation:
    halts = await state.halts()
    exposure = await state.exposure()
    equity = await state.fleet_equity()
    return FleetObservation(
        generation=generation,
        scope=fleet.scope,
        own_halt_id=own,
        halts=tuple(halts),
        exposure_quote=sum((e.amount for e in exposure.values()), Decimal(0)),
        bots=len(exposure),
        equity=equity,
    )
