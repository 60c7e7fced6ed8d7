"""A TradingFleet: the spec refused by path, the status it shows, and the mirror into a real Redis
(the same halts hash `tradefleet halt` writes), which lifts only the halt the resource set."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import yaml

from tests.operator.crd_tools import ROOT
from tradefleet.coord.risk_state import RedisRiskState, new_halt
from tradefleet.domain.risk import FLEET_LIMIT_FIELDS, FleetEquity, Halt, RiskLimits
from tradefleet.errors import ConfigError
from tradingbot_operator import fleet_switch
from tradingbot_operator.fleet import (
    LIMITS,
    SPEC_KEYS,
    FleetObservation,
    build_fleet_status,
    fleet_halt_id,
    parse_fleet,
)

NOW = "2026-12-05T05:00:00Z"


def fleet(**spec: Any) -> Any:
    return parse_fleet("desk-a", "trading", spec)


def test_a_valid_spec_parses_into_scope_halt_and_limits() -> None:
    f = fleet(halted=True, reason="exchange down", flatten=True,
              limits={"maxFleetQuote": "5000", "maxFleetDrawdownQuote": "250.5"})  # fmt: skip
    assert (f.scope, f.halted, f.flatten, f.reason) == ("desk-a", True, True, "exchange down")
    assert f.limits == RiskLimits(max_fleet_quote=Decimal(5000), max_fleet_drawdown_quote=Decimal("250.5"))
    h = f.halt("tf-1", 7)
    assert (h.bot, h.by, h.flatten) == (None, "TradingFleet trading/desk-a spec.halted", True)
    assert fleet().limits == RiskLimits() and fleet().halt("x", 0).reason == "TradingFleet spec.halted"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"flatten": True}, "spec.flatten closes every open position as part of a halt"),
        ({"halted": "yes"}, "spec.halted 'yes' must be true or false"),
        ({"reason": "x" * 201}, "spec.reason must be a string of at most 200"),
        ({"limits": {"maxFleetQuote": "-1"}}, "spec.limits.maxFleetQuote '-1' must be a decimal"),
        ({"limits": {"maxFleetQuote": True}}, "spec.limits.maxFleetQuote True must be a decimal"),
        ({"limits": {"maxPositionQuote": "1"}}, "unknown field(s) spec.limits.maxPositionQuote"),
        ({"halt": True}, "unknown field(s) spec.halt"),
    ],
)
def test_bad_specs_are_refused_by_path(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        fleet(**spec)
    assert message in str(e.value)


def test_the_name_is_the_scope_and_must_be_one() -> None:
    with pytest.raises(ConfigError, match=r"metadata\.name 'Desk A' is the risk scope"):
        parse_fleet("Desk A", "trading", {})


def test_the_halt_id_is_a_function_of_the_resource_and_generation() -> None:
    assert fleet_halt_id("uid-1", 3) == fleet_halt_id("uid-1", 3) != fleet_halt_id("uid-1", 4)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_status_says_whose_halt_holds_the_fleet_and_what_it_holds() -> None:
    own = Halt("tf-1", "exchange down", "TradingFleet trading/desk-a spec.halted", 1_780_000_000_000)
    obs = FleetObservation(
        generation=2, scope="desk-a", own_halt_id="tf-1",
        halts=(own, Halt("b1", "daily_loss", "bot x (risk limit)", 1, bot="x")),
        exposure_quote=Decimal("300"), bots=3,
        equity=FleetEquity(total=Decimal(-20), peak=Decimal(15), members=3),
    )  # fmt: skip
    s = build_fleet_status(obs, None, NOW)
    assert conditions(s) == {"Halted": ("True", "FleetSpec"), "Synced": ("True", "Mirrored")}
    assert s["halt"]["reason"] == "exchange down" and s["halt"]["since"].startswith("2026-")
    assert (s["haltId"], s["botsHalted"], s["exposureQuote"], s["bots"]) == ("tf-1", 1, "300", 3)
    assert (s["equityQuote"], s["peakEquityQuote"], s["drawdownQuote"]) == ("-20", "15", "35")

    trip = Halt("t9", "fleet_drawdown: 3 bots 35 below peak 15, limit 30", "bot x (risk limit)", 5)
    s2 = build_fleet_status(FleetObservation(generation=3, scope="desk-a", halts=(trip,)), s, NOW)
    assert conditions(s2)["Halted"] == ("True", "RiskLimit")
    msg = next(c["message"] for c in s2["conditions"] if c["type"] == "Halted")
    assert "tradefleet resume --scope desk-a" in msg
    assert s2["haltId"] is None and s2["drawdownQuote"] is None  # nobody reported equity this time

    off = build_fleet_status(FleetObservation(generation=4, scope="desk-a"), s2, NOW)
    assert conditions(off)["Halted"] == ("False", "Trading") and off["halt"] is None
    # Redis unreachable: the last reading stays, Synced says why; lastTransitionTime moves only on change.
    down = build_fleet_status(
        FleetObservation(generation=4, scope="desk-a", unsynced=("RedisUnavailable", "refused")), off, "later"
    )
    assert conditions(down) == {"Halted": ("False", "Trading"), "Synced": ("False", "RedisUnavailable")}
    assert "halt" not in down and down["conditions"][0]["lastTransitionTime"] == NOW


async def test_mirror_halts_keeps_the_id_replaces_on_a_new_reason_and_lifts_only_its_own(
    redis_server,
) -> None:
    state = RedisRiskState(redis_server.url, "desk-a")
    halted = fleet(halted=True, reason="exchange down", flatten=True, limits={"maxFleetQuote": "500"})
    try:
        done, own = await fleet_switch.sync(state, halted, new_id="tf-g1", known_id=None, now_ms=1)
        assert (done, own) == ("halted", "tf-g1")
        assert (await state.switch())[1] == RiskLimits(max_fleet_quote=Decimal(500))
        # A resync (timer, retry) with the same spec changes nothing, even with a newer generation.
        assert await fleet_switch.sync(state, halted, new_id="tf-g2", known_id="tf-g1", now_ms=2) == (
            "unchanged", "tf-g1",
        )  # fmt: skip
        # Redis restarted empty: the same halt comes back with the same id (no second flatten).
        await state._redis.flushdb()
        assert await fleet_switch.sync(state, halted, new_id="tf-g3", known_id="tf-g1", now_ms=3) == (
            "halted", "tf-g1",
        )  # fmt: skip
        # A new reason while halted: the halt is replaced in one step, with a new id.
        other = fleet(halted=True, reason="desk closed")
        assert await fleet_switch.sync(state, other, new_id="tf-g4", known_id="tf-g1", now_ms=4) == (
            "replaced", "tf-g4",
        )  # fmt: skip
        (h,) = await state.halts()
        assert (h.halt_id, h.reason, h.flatten) == ("tf-g4", "desk closed", False)
        assert (await state.switch())[1] == RiskLimits()  # limits follow the spec: none now
        # halted: false lifts it; then a person's halt is never lifted by the resource.
        assert await fleet_switch.sync(state, fleet(), new_id="tf-g5", known_id="tf-g4", now_ms=5) == (
            "resumed", None,
        )  # fmt: skip
        assert await state.halts() == []
        person = await state.halt(new_halt("manual", "ops@host"))
        assert await fleet_switch.sync(state, fleet(), new_id="tf-g6", known_id=None, now_ms=6) == (
            "unchanged", None,
        )  # fmt: skip
        assert await fleet_switch.sync(state, halted, new_id="tf-g7", known_id=None, now_ms=7) == (
            "unchanged", None,
        )  # fmt: skip
        assert [h.halt_id for h in await state.halts()] == [person.halt_id]
    finally:
        await state.close()


def test_the_crd_columns_point_at_status_fields_and_its_limits_are_the_operators() -> None:
    version = yaml.safe_load((ROOT / "crds" / "tradingfleets.tradefleet.io.yaml").read_text())["spec"][
        "versions"
    ][0]
    schema = version["schema"]["openAPIV3Schema"]
    assert set(schema["properties"]["spec"]["properties"]) == SPEC_KEYS
    assert set(schema["properties"]["spec"]["properties"]["limits"]["properties"]) == set(LIMITS)
    for column in version["additionalPrinterColumns"]:
        node: dict[str, Any] = schema
        for part in column["jsonPath"].split("[")[0].strip(".").split("."):
            node = (
                node["properties"][part] if part != "metadata" else {"properties": {"creationTimestamp": {}}}
            )
    # Every fleet limit is a field the bot knows, so a fleet cannot name a limit no bot applies.
    assert sorted(LIMITS.values()) == sorted(FLEET_LIMIT_FIELDS)
