"""spec.risk of a TradingBot: limits become the bot's config keys, `halted` becomes the kill-switch file
the bot reads (without rolling its pods), and the pod's grace period covers the order-in-flight bound."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.operator.test_render import SETTINGS, tb
from tradefleet.config import BotConfig
from tradefleet.coord.risk_state import read_halt_file
from tradefleet.errors import ConfigError
from tradingbot_operator.render import CHECKSUM_ANNOTATION, render


def rendered(**risk: Any) -> Any:
    return render(tb(risk=risk), SETTINGS, service_monitor=False)


def test_limits_become_bot_config_keys_the_bot_accepts() -> None:
    r = rendered(maxFleetQuote="500", maxPositionQuote="100.5", maxDailyLossQuote="20", maxOrdersPerMinute=6,
                 scope="desk-a", stopOrderGraceSeconds=30)  # fmt: skip
    config = BotConfig.from_mapping(yaml.safe_load(r.config_map["data"]["bot.yaml"]))
    assert (config.max_fleet_quote, config.max_position_quote, config.max_daily_loss_quote) == (
        500,
        100.5,
        20,
    )
    assert (config.max_orders_per_minute, config.risk_scope, config.stop_order_grace_s) == (6, "desk-a", 30)
    pod = r.deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 50  # longer than the bound on an order in flight


@pytest.mark.parametrize(
    ("risk", "message"),
    [
        ({"maxFleetQuote": "-1"}, "spec.risk.maxFleetQuote"),
        ({"maxOrdersPerMinute": True}, "spec.risk.maxOrdersPerMinute"),
        ({"stopOrderGraceSeconds": 601}, "spec.risk.stopOrderGraceSeconds"),
        ({"scope": "Desk A"}, "spec.risk.scope"),
        ({"halted": "yes"}, "spec.risk.halted"),
        ({"haltReason": "x" * 201}, "spec.risk.haltReason"),
        ({"maxFleet": "1"}, "unknown field(s) spec.risk.maxFleet"),
    ],
)
def test_bad_risk_specs_are_refused_by_path(risk: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rendered(**risk)


def test_halted_writes_the_kill_switch_file_without_rolling_the_pods() -> None:
    running = rendered(maxFleetQuote="500")
    halted = rendered(maxFleetQuote="500", halted=True, haltReason="desk closed", flatten=True)
    assert json.loads(running.config_map["data"]["halt.json"]) == {}
    ann = CHECKSUM_ANNOTATION
    assert (running.deployment["spec"]["template"]["metadata"]["annotations"][ann]
            == halted.deployment["spec"]["template"]["metadata"]["annotations"][ann])  # fmt: skip
    items = running.deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"]
    assert {"key": "halt.json", "path": "halt.json"} in items  # mounted as a directory: updates arrive
    # The bot's own reader understands the file; the id is stable across renders (one flatten).
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "halt.json"
        path.write_text(halted.config_map["data"]["halt.json"])
        (h,) = read_halt_file(path).values()
    assert (h.bot, h.reason, h.flatten) == ("btc-usdt", "desk closed", True)
    assert "spec.risk.halted" in h.by
    again = rendered(maxFleetQuote="500", halted=True, haltReason="desk closed", flatten=True)
    assert again.config_map["data"]["halt.json"] == halted.config_map["data"]["halt.json"]


def test_with_the_redis_lease_a_disruption_budget_evicts_one_replica_at_a_time() -> None:
    import kubernetes_validate

    body = tb(replicas=2, redis={"secretKeyRef": {"name": "r", "key": "url"}})
    r = render(body, SETTINGS, service_monitor=False)
    pdb = r.disruption_budget
    assert pdb is not None and pdb in r.objects()
    kubernetes_validate.validate(pdb, "1.37.0", strict=True)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": r.deployment["spec"]["selector"]}
    assert pdb["metadata"]["ownerReferences"][0]["kind"] == "TradingBot"
    strategy = r.deployment["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    # Without Redis (Recreate, in-process lease) there is nothing to keep available.
    assert render(tb(), SETTINGS, service_monitor=False).disruption_budget is None


async def test_the_operator_mirrors_spec_halted_into_redis_and_lifts_only_its_own_halt(redis_server) -> None:
    from tradefleet.coord.risk_state import RedisRiskState, new_halt
    from tradingbot_operator.risk_switch import sync_with_redis

    halted = rendered(halted=True, haltReason="desk closed", flatten=True).spec
    running = rendered().spec
    state = RedisRiskState(redis_server.url, "default")
    try:
        assert await sync_with_redis(redis_server.url, halted) == "halted"
        assert await sync_with_redis(redis_server.url, halted) == "unchanged"
        (h,) = await state.halts()
        assert h.halt_id == next(iter(halted.halt_file().values()))["halt_id"]  # the file's halt: one flatten
        assert await sync_with_redis(redis_server.url, running) == "resumed"
        assert await state.halts() == []
        # A halt a human (or the bot's own limit) set is not lifted by a spec without halted.
        await state.halt(new_halt("loss", "bot btc-usdt (risk limit)", bot="btc-usdt"))
        assert await sync_with_redis(redis_server.url, running) == "unchanged"
        assert len(await state.halts()) == 1
    finally:
        await state.close()
