"""Pure status: what the operator observed in, a TradingBot `status` out.

Conditions are shaped like `metav1.Condition` (type, status, reason, message,
lastTransitionTime, observedGeneration), so `kubectl wait --for=condition=Ready tb/x` and any
generic tooling understand them. A condition's lastTransitionTime moves only when its status
changes; reasons are CamelCase words a script can match on, messages are for humans.

The five types, always all present:
    Ready        the Deployment has all desired replicas updated and ready
    Progressing  a rollout (create, spec change, resume) is under way
    Degraded     something needs a human: an invalid spec, a stuck rollout
    Paused       spec.paused scaled the bot to zero
    Halted       the bot reports a halt in force (kill switch: KillSwitch; its own loss or order-rate
                 limit: RiskLimit), with who and why; Unknown until the bot has reported

No I/O and no clock: `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "Paused", "Halted")
PHASES = ("Pending", "Progressing", "Running", "Paused", "Degraded")


@dataclass(frozen=True, slots=True)
class Observation:
    generation: int
    paused: bool = False
    desired_replicas: int = 1
    invalid: str | None = None
    """Why the spec cannot be deployed (a validation message, the API server's refusal)."""
    invalid_reason: str = "InvalidSpec"
    deployment: Mapping[str, Any] | None = None
    """The live Deployment (metadata + status), None when it does not exist (yet)."""
    risk: Mapping[str, Any] | None = None
    """The bot's reported risk state (`status.bot.risk`); None when no report was read this time
    (then the Halted condition keeps what it said)."""


def build_status(obs: Observation, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The status fields the operator owns (everything but `bot`), as a merge patch."""
    phase, wanted = _evaluate(obs)
    old = previous_conditions(previous)
    wanted["Halted"] = _halted(obs.risk, old.get("Halted"))
    conditions = merge_conditions(CONDITION_TYPES, wanted, old, obs.generation, now)
    dep_status = (obs.deployment or {}).get("status") or {}
    return {
        "observedGeneration": obs.generation,
        "phase": phase,
        "replicas": obs.desired_replicas if obs.invalid is None else 0,
        "readyReplicas": int(dep_status.get("readyReplicas") or 0),
        "conditions": conditions,
    }


def previous_conditions(previous: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The conditions of a stored status, by type."""
    conditions = (previous or {}).get("conditions") or []
    return {str(c.get("type")): c for c in conditions if isinstance(c, Mapping)}


def merge_conditions(
    types: Sequence[str],
    wanted: Mapping[str, tuple[str, str, str]],
    old: Mapping[str, Mapping[str, Any]],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """The conditions to store, in `types` order, from the wanted (status, reason, message) of each:
    `lastTransitionTime` moves only when a condition's status does (Kubernetes' convention), and a
    message is cut to 1,000 characters."""
    conditions = []
    for ctype in types:
        status, reason, message = wanted[ctype]
        before = old.get(ctype)
        moved = before is None or before.get("status") != status or not before.get("lastTransitionTime")
        conditions.append(
            {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message[:1000],
                "lastTransitionTime": now if moved or before is None else before["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    return conditions


def condition(status: Mapping[str, Any] | None, ctype: str) -> Mapping[str, Any] | None:
    for c in (status or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return None


def _evaluate(obs: Observation) -> tuple[str, dict[str, tuple[str, str, str]]]:
    paused = (
        "True",
        "PausedBySpec",
        "spec.paused is true: the bot is scaled to 0 replicas, its data is kept",
    )
    running = ("False", "NotPaused", "spec.paused is false")
    if obs.invalid is not None:
        why = obs.invalid_reason
        return "Degraded", {
            "Ready": ("False", why, "the spec cannot be deployed as it is (see Degraded)"),
            "Progressing": ("False", why, "waiting for a corrected spec"),
            "Degraded": ("True", why, obs.invalid),
            "Paused": paused if obs.paused else running,
        }
    dep = obs.deployment
    dep_status: Mapping[str, Any] = (dep or {}).get("status") or {}
    ready = int(dep_status.get("readyReplicas") or 0)
    updated = int(dep_status.get("updatedReplicas") or 0)
    total = int(dep_status.get("replicas") or 0)
    want = obs.desired_replicas
    if obs.paused:
        gone = total == 0
        return "Paused", {
            "Ready": ("False", "Paused", "the bot is paused"),
            "Progressing": (
                ("False", "ScaledDown", "all replicas are stopped")
                if gone
                else ("True", "ScalingDown", f"{total} replica(s) still stopping")
            ),
            "Degraded": ("False", "AsExpected", "no problem detected"),
            "Paused": paused,
        }
    if dep is None:
        return "Pending", {
            "Ready": ("False", "DeploymentMissing", "the bot's Deployment does not exist yet"),
            "Progressing": ("True", "Creating", "creating the bot's Deployment"),
            "Degraded": ("False", "AsExpected", "no problem detected"),
            "Paused": running,
        }
    generation = int((dep.get("metadata") or {}).get("generation") or 0)
    seen = int(dep_status.get("observedGeneration") or 0)
    current = seen >= generation
    stuck = _dep_condition(dep_status, "Progressing")
    stuck_msg = None
    if (
        stuck is not None
        and stuck.get("status") == "False"
        and stuck.get("reason") == "ProgressDeadlineExceeded"
    ):
        stuck_msg = str(stuck.get("message") or "the rollout exceeded its progress deadline")
    degraded = (
        ("True", "RolloutStuck", stuck_msg) if stuck_msg else ("False", "AsExpected", "no problem detected")
    )
    if current and ready >= want and updated >= want and total <= want:
        return "Running", {
            "Ready": ("True", "ReplicasReady", f"{ready}/{want} replica(s) ready"),
            "Progressing": ("False", "RolloutComplete", "the latest spec is rolled out"),
            "Degraded": degraded,
            "Paused": running,
        }
    return ("Degraded" if stuck_msg else "Progressing"), {
        "Ready": ("False", "ReplicasNotReady", f"{ready}/{want} replica(s) ready, {updated} updated"),
        "Progressing": ("True", "RollingOut", "rolling out the latest spec"),
        "Degraded": degraded,
        "Paused": running,
    }


def _halted(risk: Mapping[str, Any] | None, before: Mapping[str, Any] | None) -> tuple[str, str, str]:
    if risk is None:
        if before is not None and before.get("status"):
            return str(before["status"]), str(before.get("reason") or ""), str(before.get("message") or "")
        return "Unknown", "NoReport", "the bot has not reported its risk state yet"
    if risk.get("halted"):
        reason = "RiskLimit" if "(risk limit)" in str(risk.get("by") or "") else "KillSwitch"
        msg = f"{risk.get('scope') or 'fleet'}: {risk.get('reason') or ''}; by {risk.get('by') or '?'}"
        return "True", reason, msg[:1000]
    if risk.get("stateKnown") is False:
        return "Unknown", "SwitchUnreadable", "the bot cannot read the kill switch: it opens no position"
    return "False", "NotHalted", "no halt in force"


def _dep_condition(status: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    items: Sequence[Any] = status.get("conditions") or []
    for c in items:
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return None


BOT_REPORT_MAX_AGE_MS = 60_000
"""A bot report that differs only in its timestamp is written at most this often: one status write
per bot per minute instead of per resync, while `updatedAt` still shows the report is fresh."""


def status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether writing `new` (a merge patch) would change what `old` shows."""
    for key, value in new.items():
        if key == "bot" and isinstance(value, Mapping):
            before = _present(old.get("bot") or {})
            after = _present(value)
            age = int(after.get("updatedAt") or 0) - int(before.get("updatedAt") or 0)
            before["updatedAt"] = after.get("updatedAt")
            if before != after or age >= BOT_REPORT_MAX_AGE_MS:
                return True
        elif old.get(key) != value:
            return True
    return False


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch's None means absent."""
    return {k: v for k, v in values.items() if v is not None}
