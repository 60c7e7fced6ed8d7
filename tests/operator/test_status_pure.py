"""Pure status pieces: conditions from observations, the bot's report, settings, metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tradefleet.errors import ConfigError
from tradingbot_operator.conditions import Observation, build_status, condition
from tradingbot_operator.metrics import OperatorMetrics
from tradingbot_operator.report import ReportInvalid, to_status
from tradingbot_operator.settings import OperatorSettings

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def dep(generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "status": status}


def summary(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(
    ("obs", "phase", "expected"),
    [
        (Observation(generation=1, invalid="bad"), "Degraded",
         {"Ready": ("False", "InvalidSpec"), "Progressing": ("False", "InvalidSpec"),
          "Degraded": ("True", "InvalidSpec"), "Paused": ("False", "NotPaused")}),
        (Observation(generation=1), "Pending",
         {"Ready": ("False", "DeploymentMissing"), "Progressing": ("True", "Creating"),
          "Degraded": ("False", "AsExpected"), "Paused": ("False", "NotPaused")}),
        (Observation(generation=1, deployment=dep(observedGeneration=1, replicas=1)), "Progressing",
         {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("True", "RollingOut"),
          "Degraded": ("False", "AsExpected"), "Paused": ("False", "NotPaused")}),
        (Observation(generation=1, deployment=dep(observedGeneration=1, replicas=1, updatedReplicas=1, readyReplicas=1)),
         "Running", {"Ready": ("True", "ReplicasReady"), "Progressing": ("False", "RolloutComplete"),
                     "Degraded": ("False", "AsExpected"), "Paused": ("False", "NotPaused")}),
        # The Deployment controller has not seen the latest template yet: still rolling.
        (Observation(generation=2, deployment=dep(3, observedGeneration=2, replicas=1, updatedReplicas=1, readyReplicas=1)),
         "Progressing", {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("True", "RollingOut"),
                         "Degraded": ("False", "AsExpected"), "Paused": ("False", "NotPaused")}),
        # A surge pod still running next to the new one: not done.
        (Observation(generation=1, deployment=dep(observedGeneration=1, replicas=2, updatedReplicas=1, readyReplicas=2)),
         "Progressing", {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("True", "RollingOut"),
                         "Degraded": ("False", "AsExpected"), "Paused": ("False", "NotPaused")}),
        (Observation(generation=1, deployment=dep(observedGeneration=1, replicas=1, conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "stuck"}])),
         "Degraded", {"Ready": ("False", "ReplicasNotReady"), "Progressing": ("True", "RollingOut"),
                      "Degraded": ("True", "RolloutStuck"), "Paused": ("False", "NotPaused")}),
        (Observation(generation=1, paused=True, desired_replicas=0, deployment=dep(observedGeneration=1, replicas=1)),
         "Paused", {"Ready": ("False", "Paused"), "Progressing": ("True", "ScalingDown"),
                    "Degraded": ("False", "AsExpected"), "Paused": ("True", "PausedBySpec")}),
        (Observation(generation=1, paused=True, desired_replicas=0, deployment=dep(observedGeneration=1)),
         "Paused", {"Ready": ("False", "Paused"), "Progressing": ("False", "ScaledDown"),
                    "Degraded": ("False", "AsExpected"), "Paused": ("True", "PausedBySpec")}),
    ],
)  # fmt: skip
def test_conditions_follow_what_was_observed(obs: Observation, phase: str, expected: dict[str, Any]):
    status = build_status(obs, None, T0)
    assert status["phase"] == phase
    assert summary(status) == {**expected, "Halted": ("Unknown", "NoReport")}
    assert all(c["observedGeneration"] == obs.generation for c in status["conditions"])
    assert status["observedGeneration"] == obs.generation


def test_last_transition_time_moves_only_when_the_status_flips():
    rolling = Observation(generation=1, deployment=dep(observedGeneration=1, replicas=1))
    ready = Observation(
        generation=1, deployment=dep(observedGeneration=1, replicas=1, updatedReplicas=1, readyReplicas=1)
    )
    first = build_status(rolling, None, T0)
    again = build_status(rolling, first, T1)
    assert again["conditions"] == first["conditions"]
    flipped = build_status(ready, first, T1)
    assert condition(flipped, "Ready")["lastTransitionTime"] == T1
    assert condition(flipped, "Degraded")["lastTransitionTime"] == T0  # still False: unchanged


REPORT = {
    "bot": "btc-usdt", "exchange": "binance", "symbol": "BTC/USDT", "mode": "paper", "role": "leader", "ready": True,
    "position": {"qty": "0.0015", "cost_quote": "99.9", "realized_pnl_quote": "-1.25"},
    "last_signal": {"signal_id": "sig", "side": "SELL", "candle_close_time": 1700000000000, "close": "60000.5"},
    "last_order": {"client_order_id": "tf-1", "status": "FILLED", "side": "SELL", "filled_qty": "0.0015", "avg_price": "60000.1"},
    "holder": "bot-btc-usdt-7d9", "updated_at": 1700000000123,
}  # fmt: skip


def test_bot_report_becomes_camel_case_status_with_decimals_as_strings():
    bot = to_status(REPORT, bot="btc-usdt")
    assert bot == {
        "role": "leader", "holder": "bot-btc-usdt-7d9", "ready": True, "updatedAt": 1700000000123,
        "position": {"qty": "0.0015", "costQuote": "99.9", "realizedPnlQuote": "-1.25"},
        "lastSignal": {"signalId": "sig", "side": "SELL", "candleCloseTime": 1700000000000, "close": "60000.5"},
        "lastOrder": {"clientOrderId": "tf-1", "status": "FILLED", "side": "SELL", "filledQty": "0.0015",
                      "avgPrice": "60000.1"},
        "risk": None,
    }  # fmt: skip


def test_bot_risk_report_carries_the_first_halt_who_why_and_when():
    risk = {
        "halted": True,
        "state_known": True,
        "exposure_quote": "100",
        "halts": [{"halt_id": "h1", "scope": "fleet", "reason": "exchange down", "by": "ops", "at_ms": 5}],
    }
    assert to_status({**REPORT, "risk": risk}, bot="btc-usdt")["risk"] == {
        "halted": True, "stateKnown": True, "scope": "fleet", "reason": "exchange down", "by": "ops",
        "since": 5, "haltId": "h1", "exposureQuote": "100",
    }  # fmt: skip


def test_report_without_signal_or_order_clears_them():
    bot = to_status({**REPORT, "last_signal": None, "last_order": None}, bot="btc-usdt")
    assert bot["lastSignal"] is None and bot["lastOrder"] is None  # None removes them in a merge patch


@pytest.mark.parametrize(
    "report", [{**REPORT, "bot": "eth-usdt"}, {**REPORT, "position": "lots"}, ["not", "a", "map"]]
)
def test_refuses_a_report_that_is_not_this_bots(report: Any):
    with pytest.raises(ReportInvalid):
        to_status(report, bot="btc-usdt")


def test_settings_from_environment_and_unknown_variables_refused():
    s = OperatorSettings.from_env(
        {"TRADEFLEET_BOT_IMAGE": "img:2", "TRADEFLEET_OPERATOR_STATUS_INTERVAL_S": "5"}
    )
    assert (s.bot_image, s.status_interval_s, s.default_store_secret) == ("img:2", 5.0, "tradefleet-store")
    with pytest.raises(ConfigError, match="TRADEFLEET_OPERATOR_STATUS_INTERVALS"):
        OperatorSettings.from_env({"TRADEFLEET_OPERATOR_STATUS_INTERVALS": "5"})
    with pytest.raises(ConfigError, match="must be positive"):
        OperatorSettings.from_env({"TRADEFLEET_OPERATOR_STATUS_TIMEOUT_S": "0"})


def test_bots_by_phase_gauge_counts_each_bot_once():
    m = OperatorMetrics(CollectorRegistry())
    m.set_phase("a", "x", "Progressing")
    m.set_phase("a", "x", "Running")
    m.set_phase("a", "y", "Paused")
    get = lambda phase: m.registry.get_sample_value("tradefleet_operator_bots", {"phase": phase})  # noqa: E731
    assert (get("Running"), get("Paused"), get("Progressing")) == (1.0, 1.0, 0.0)
    m.set_phase("a", "x", None)
    assert get("Running") == 0.0


def test_status_is_rewritten_only_when_something_a_user_sees_changes():
    from tradingbot_operator.conditions import status_changed

    bot = to_status({**REPORT, "last_order": None}, bot="btc-usdt")
    shown = {"phase": "Running", "bot": {k: v for k, v in bot.items() if v is not None}}
    assert not status_changed(shown, {"phase": "Running", "bot": bot})  # None = absent in a merge patch
    assert not status_changed(shown, {"bot": {**bot, "updatedAt": bot["updatedAt"] + 1_000}})
    assert status_changed(shown, {"bot": {**bot, "updatedAt": bot["updatedAt"] + 60_000}})  # keep it fresh
    assert status_changed(shown, {"bot": {**bot, "position": {**bot["position"], "qty": "0"}}})
    assert status_changed(shown, {"phase": "Paused"})


@pytest.mark.parametrize(
    ("risk", "expected"),
    [
        ({"halted": False, "stateKnown": True}, ("False", "NotHalted")),
        ({"halted": True, "scope": "fleet", "reason": "exchange down", "by": "ops"}, ("True", "KillSwitch")),
        ({"halted": True, "scope": "bot b", "reason": "daily_loss: ...", "by": "bot b (risk limit)"},
         ("True", "RiskLimit")),
        ({"halted": False, "stateKnown": False}, ("Unknown", "SwitchUnreadable")),
    ],
)  # fmt: skip
def test_halted_condition_follows_the_bots_reported_risk_state(
    risk: dict[str, Any], expected: tuple[str, str]
):
    status = build_status(Observation(generation=1, risk=risk), None, T0)
    assert summary(status)["Halted"] == expected
    if expected[0] == "True":
        msg = condition(status, "Halted")["message"]  # type: ignore[index]
        assert risk["reason"] in msg and risk["by"] in msg


def test_halted_condition_is_kept_when_no_report_was_read_this_time():
    halted = build_status(
        Observation(generation=1, risk={"halted": True, "reason": "r", "by": "ops"}), None, T0
    )
    again = build_status(Observation(generation=1), halted, T1)
    assert condition(again, "Halted") == condition(halted, "Halted")
