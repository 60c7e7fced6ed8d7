"""Mirror a TradingBot's `spec.risk.halted` into the fleet's Redis kill switch, so the bot stops within
its poll (~200 ms) instead of waiting for the kubelet to refresh the mounted `halt.json` (up to about a
minute). The file stays the durable path: a bot honours it with the operator or Redis down.

The halt written is the one the file holds (same id: `BotSpec.halt_file`), so a flatten asked both ways
is one order. Resuming lifts only a halt this spec set ("... spec.risk.halted"): a bot's own loss or
order-rate trip, or a `tradefleet halt` from a human, is never lifted by an unrelated spec edit.
"""

from __future__ import annotations

from typing import Any

from tradefleet.coord.risk_state import RedisRiskState, halt_from_json
from tradingbot_operator.spec import BotSpec

SPEC_MARK = "spec.risk.halted"


async def sync_halt(state: Any, spec: BotSpec) -> str:
    """`state` is a `RiskState` of the bot's scope. Returns what was done: halted|resumed|unchanged."""
    mine = [h for h in await state.halts() if h.bot == spec.name]
    if spec.halted:
        if mine:
            return "unchanged"
        import json

        (want,) = spec.halt_file().values()
        await state.halt(halt_from_json(json.dumps(want)))
        return "halted"
    if any(h.by.endswith(SPEC_MARK) for h in mine):
        await state.resume(spec.name, f"operator: {spec.namespace}/{spec.name} {SPEC_MARK} false")
        return "resumed"
    return "unchanged"


async def sync_with_redis(redis_url: str, spec: BotSpec) -> str:
    state = RedisRiskState(redis_url, str(spec.risk.get("risk_scope", "default")), timeout_s=2.0)
    try:
        return await sync_halt(state, spec)
    finally:
        await state.close()
