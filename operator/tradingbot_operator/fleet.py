"""A TradingFleet's spec as a validated `FleetSpec`, and the status it shows. Pure: no I/O, no clock.

A TradingFleet is one risk scope's fleet-wide kill switch and fleet limits, as a Kubernetes resource:
its name is the scope. The operator mirrors it into the scope's Redis keys (`fleet_switch`), where
every bot reads it each poll; this module decides what to write and what the status says.

The halt a TradingFleet writes has an id that is a function of the resource's uid and the generation
that asked for it, kept in `status.haltId`: a retry, a resync or a Redis that lost its keys writes the
same id again, so the flatten each bot derives from it is one order. A change of reason or flatten
while halted is a new generation, hence a new halt (and, with flatten, a new flatten).

It refuses to guess: unknown spec keys are errors, and `halted: false` never lifts a halt this resource
did not set (a person's `tradefleet halt`, a fleet loss limit's trip): the status says who set it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from tradefleet.domain.risk import FleetEquity, Halt, RiskLimits
from tradefleet.errors import ConfigError
from tradingbot_operator.conditions import merge_conditions, previous_conditions
from tradingbot_operator.spec import NAME_RE

FLEET_PLURAL = "tradingfleets"
FLEET_KIND = "TradingFleet"
SPEC_KEYS = frozenset({"halted", "reason", "flatten", "limits"})
LIMITS = {
    "maxFleetQuote": "max_fleet_quote",
    "maxQuoteAssetQuote": "max_quote_asset_quote",
    "maxFleetDailyLossQuote": "max_fleet_daily_loss_quote",
    "maxFleetDrawdownQuote": "max_fleet_drawdown_quote",
}
MAX_REASON = 200
RISK_LIMIT_MARK = "(risk limit)"
CONDITION_TYPES = ("Halted", "Synced")


@dataclass(frozen=True, slots=True)
class FleetSpec:
    name: str
    namespace: str
    halted: bool = False
    reason: str = ""
    flatten: bool = False
    limits: RiskLimits = field(default_factory=RiskLimits)

    @property
    def scope(self) -> str:
        return self.name

    @property
    def by(self) -> str:
        """Who a halt of this resource names (and how its own halt is recognised when lifting)."""
        return f"{FLEET_KIND} {self.namespace}/{self.name} spec.halted"

    def halt(self, halt_id: str, at_ms: int) -> Halt:
        return Halt(halt_id, self.reason or "TradingFleet spec.halted", self.by, at_ms, None, self.flatten)


def parse_fleet(name: str, namespace: str, spec: Mapping[str, Any]) -> FleetSpec:
    """Validate a TradingFleet spec; raises `ConfigError` naming every problem by its spec path."""
    problems = list(_problems(name, spec))
    if problems:
        raise ConfigError("invalid TradingFleet spec: " + "; ".join(problems))
    values = {LIMITS[k]: Decimal(str(v)) for k, v in (spec.get("limits") or {}).items()}
    limits = dataclasses.replace(RiskLimits(), **values)  # type: ignore[arg-type]
    return FleetSpec(
        name=name,
        namespace=namespace,
        halted=spec.get("halted") is True,
        reason=str(spec.get("reason") or ""),
        flatten=spec.get("flatten") is True,
        limits=limits,
    )


def _problems(name: str, spec: Any) -> Iterator[str]:
    if not NAME_RE.match(name) or len(name) > 63:
        yield f"metadata.name {name!r} is the risk scope: a DNS label of at most 63 characters"
    if not isinstance(spec, Mapping):
        yield "spec must be a mapping"
        return
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        yield f"unknown field(s) spec.{', spec.'.join(unknown)}; known: {', '.join(sorted(SPEC_KEYS))}"
    for key in ("halted", "flatten"):
        if not isinstance(spec.get(key, False), bool):
            yield f"spec.{key} {spec[key]!r} must be true or false"
    if spec.get("flatten") is True and spec.get("halted") is not True:
        yield "spec.flatten closes every open position as part of a halt: set spec.halted: true with it"
    reason = spec.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        yield f"spec.reason must be a string of at most {MAX_REASON} characters"
    limits = spec.get("limits", {})
    if not isinstance(limits, Mapping):
        yield "spec.limits must be a mapping"
        return
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        yield f"unknown field(s) spec.limits.{', spec.limits.'.join(unknown)}; known: {', '.join(LIMITS)}"
    for key in sorted(set(limits) & set(LIMITS)):
        raw = limits[key]
        try:
            value = Decimal(str(raw))
            if isinstance(raw, bool) or not value.is_finite() or value < 0:
                raise InvalidOperation
        except InvalidOperation:
            yield f'spec.limits.{key} {raw!r} must be a decimal string >= 0 (0 = no limit), e.g. "5000"'


def fleet_halt_id(uid: str, generation: int) -> str:
    return "tf-" + hashlib.sha256(f"{uid}\x1f{generation}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class FleetObservation:
    """What the operator found in the scope's Redis after mirroring (or why it could not)."""

    generation: int
    scope: str = ""
    invalid: str | None = None
    unsynced: tuple[str, str] | None = None
    """(reason, message) when Redis could not be written or read: NoRedis, RedisUnavailable."""
    own_halt_id: str | None = None
    halts: Sequence[Halt] = ()
    exposure_quote: Decimal | None = None
    bots: int = 0
    equity: FleetEquity | None = None


def build_fleet_status(obs: FleetObservation, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The TradingFleet status as a merge patch (None removes a field)."""
    old = previous_conditions(previous)
    fleet_halt = next((h for h in obs.halts if h.bot is None), None)
    wanted = {"Halted": _halted(obs, fleet_halt, old.get("Halted")), "Synced": _synced(obs)}
    conditions = merge_conditions(CONDITION_TYPES, wanted, old, obs.generation, now)
    new: dict[str, Any] = {"observedGeneration": obs.generation, "conditions": conditions}
    if obs.scope:
        new["scope"] = obs.scope
    if obs.invalid is not None or obs.unsynced is not None:
        return new  # nothing read: the last known numbers stay (the Synced condition says they are old)
    new["haltId"] = obs.own_halt_id
    new["halt"] = (
        None
        if fleet_halt is None
        else {
            "haltId": fleet_halt.halt_id,
            "reason": fleet_halt.reason[:500],
            "by": fleet_halt.by[:300],
            "since": _utc(fleet_halt.at_ms),
            "flatten": fleet_halt.flatten,
        }
    )
    new["botsHalted"] = sum(1 for h in obs.halts if h.bot is not None)
    new["exposureQuote"] = None if obs.exposure_quote is None else format(obs.exposure_quote, "f")
    eq = obs.equity
    members = max(obs.bots, eq.members if eq is not None else 0)
    new["bots"] = members
    known = eq is not None and eq.peak is not None and eq.members > 0
    new["equityQuote"] = format(eq.total, "f") if known and eq is not None else None
    new["peakEquityQuote"] = (
        format(eq.peak, "f") if known and eq is not None and eq.peak is not None else None
    )
    new["drawdownQuote"] = format(eq.drawdown, "f") if known and eq is not None else None
    return new


def _halted(
    obs: FleetObservation, fleet_halt: Halt | None, before: Mapping[str, Any] | None
) -> tuple[str, str, str]:
    if obs.invalid is not None or obs.unsynced is not None:
        if before is not None and before.get("status"):  # what was last read stays, marked by Synced
            return str(before["status"]), str(before.get("reason") or ""), str(before.get("message") or "")
        return "Unknown", "NotRead", "the scope's kill switch has not been read (see Synced)"
    if fleet_halt is None:
        return "False", "Trading", f"no fleet-wide halt in scope {obs.scope}"
    if fleet_halt.halt_id == obs.own_halt_id:
        reason = "FleetSpec"
    elif RISK_LIMIT_MARK in fleet_halt.by:
        reason = "RiskLimit"
    else:
        reason = "Manual"
    msg = f"scope {obs.scope}: {fleet_halt.reason}; by {fleet_halt.by} at {_utc(fleet_halt.at_ms)}"
    if reason != "FleetSpec":
        msg += f" (not this resource's: lift it with `tradefleet resume --scope {obs.scope}`)"
    return "True", reason, msg


def _synced(obs: FleetObservation) -> tuple[str, str, str]:
    if obs.invalid is not None:
        return "False", "InvalidSpec", obs.invalid
    if obs.unsynced is not None:
        return "False", *obs.unsynced
    return "True", "Mirrored", f"spec written to Redis scope {obs.scope}; bots read it every poll"


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fleet_status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return any(old.get(k) != v for k, v in new.items())
