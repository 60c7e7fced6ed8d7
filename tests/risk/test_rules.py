"""The pure risk rules (`domain.risk`): tables for each rule, properties for the reserve arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradefleet.domain.models import Position, Side
from tradefleet.domain.risk import (
    EquityTrack,
    Exposure,
    Halt,
    RiskLimits,
    RiskView,
    check_order,
    equity,
    flatten_signal_id,
    halts_for,
    loss_breach,
    set_exposure,
    track_equity,
    try_reserve,
)

D = Decimal
FLAT = Position("b", "BTC/USDT")
LONG = Position("b", "BTC/USDT", qty=D("0.01"), cost_quote=D("100"))
FLEET_HALT = Halt("h1", "exchange down", "ops", 1000)
BOT_HALT = Halt("h2", "manual", "ops", 1000, bot="b", flatten=True)
NOW = 10_000_000


@pytest.mark.parametrize(
    ("side", "amount", "position", "signal_id", "view", "limits", "want"),
    [
        (Side.BUY, D(100), FLAT, "s", RiskView(), RiskLimits(), None),
        (Side.BUY, D(100), FLAT, "s", RiskView(halts=(FLEET_HALT,)), RiskLimits(), "risk: halted"),
        (Side.SELL, None, LONG, "s", RiskView(halts=(FLEET_HALT,)), RiskLimits(), "risk: halted"),
        # The halt's own flatten SELL passes the halt; a flatten BUY never does.
        (Side.SELL, None, LONG, flatten_signal_id(BOT_HALT, "b"), RiskView(halts=(BOT_HALT,)), RiskLimits(), None),
        (Side.BUY, D(1), FLAT, flatten_signal_id(BOT_HALT, "b"), RiskView(halts=(BOT_HALT,)), RiskLimits(),
         "risk: halted"),
        # Switch state unknown: open nothing, closing is still allowed.
        (Side.BUY, D(100), FLAT, "s", RiskView(state_known=False), RiskLimits(), "risk: risk_state_unknown"),
        (Side.SELL, None, LONG, "s", RiskView(state_known=False), RiskLimits(), None),
        (Side.BUY, D(100), FLAT, "s", RiskView(), RiskLimits(max_position_quote=D(100)), None),
        (Side.BUY, D(101), FLAT, "s", RiskView(), RiskLimits(max_position_quote=D(100)), "risk: position_cap"),
        (Side.SELL, None, LONG, "s", RiskView(), RiskLimits(max_position_quote=D(50)), None),
        (Side.BUY, D(1), FLAT, "s", RiskView(recent_orders_ms=(NOW - 59_000, NOW - 1)),
         RiskLimits(max_orders_per_minute=2), "risk: order_rate"),
        (Side.BUY, D(1), FLAT, "s", RiskView(recent_orders_ms=(NOW - 60_000, NOW - 1)),
         RiskLimits(max_orders_per_minute=2), None),
    ],
)  # fmt: skip
def test_check_order_table(side, amount, position, signal_id, view, limits, want) -> None:
    got = check_order(side, amount, position, signal_id=signal_id, view=view, limits=limits, now_ms=NOW)
    if want is None:
        assert got is None
    else:
        assert got is not None and got.startswith(want), got


def test_halt_denial_names_who_and_why() -> None:
    got = check_order(Side.BUY, D(1), FLAT, signal_id="s", view=RiskView(halts=(FLEET_HALT,)),
                      limits=RiskLimits(), now_ms=NOW)  # fmt: skip
    assert got == "risk: halted (fleet: exchange down; by ops at 1970-01-01T00:00:01Z)"


def test_halts_for_keeps_the_fleet_and_own_halts_fleet_first() -> None:
    other = Halt("h3", "x", "ops", 1, bot="other")
    assert halts_for([BOT_HALT, other, FLEET_HALT], "b") == (FLEET_HALT, BOT_HALT)


@pytest.mark.parametrize(
    ("table", "amount", "limits", "want"),
    [
        ({}, D(100), RiskLimits(max_fleet_quote=D(100)), None),
        ({"x": Exposure(D(100), "USDT", NOW + 1)}, D(1), RiskLimits(max_fleet_quote=D(100)), "risk: fleet_cap"),
        # An expired entry (its bot died) no longer counts.
        ({"x": Exposure(D(100), "USDT", NOW)}, D(100), RiskLimits(max_fleet_quote=D(100)), None),
        ({"x": Exposure(D(100), "BTC", NOW + 1)}, D(100), RiskLimits(max_quote_asset_quote=D(100)), None),
        ({"x": Exposure(D(100), "USDT", NOW + 1)}, D(1), RiskLimits(max_quote_asset_quote=D(100)),
         "risk: quote_asset_cap"),
    ],
)  # fmt: skip
def test_try_reserve_table(table, amount, limits, want) -> None:
    new, denial = try_reserve(table, "b", "USDT", amount, limits=limits, now_ms=NOW, ttl_ms=1000)
    if want is None:
        assert denial is None and new["b"].amount == amount
    else:
        assert denial is not None and denial.startswith(want) and "b" not in new


@settings(max_examples=300, deadline=None)
@given(
    cap=st.integers(1, 1000),
    ops=st.lists(
        st.tuples(st.sampled_from("abcde"), st.sampled_from(["reserve", "release"]), st.integers(1, 400),
                  st.integers(0, 50)),
        max_size=60,
    ),
)  # fmt: skip
def test_live_exposure_never_exceeds_the_fleet_cap(cap: int, ops: list[tuple[str, str, int, int]]) -> None:
    """Whatever the interleaving of reserves, releases and expiries, the live total stays <= cap."""
    limits = RiskLimits(max_fleet_quote=D(cap))
    table: dict[str, Exposure] = {}
    now = 0
    for bot, op, amount, dt in ops:
        now += dt
        if op == "reserve":
            table, _ = try_reserve(table, bot, "USDT", D(amount), limits=limits, now_ms=now, ttl_ms=100)
        else:
            table = set_exposure(table, bot, "USDT", D(0), now_ms=now, ttl_ms=100)
        live = sum((e.amount for e in table.values() if e.expires_ms > now), D(0))
        assert live <= cap


@pytest.mark.parametrize(
    ("start", "peak", "value", "limits", "want"),
    [
        (D(0), D(0), D(-10), RiskLimits(max_daily_loss_quote=D(10)), "daily_loss"),
        (D(0), D(0), D("-9.99"), RiskLimits(max_daily_loss_quote=D(10)), None),
        (D(0), D(50), D(30), RiskLimits(max_drawdown_quote=D(20)), "drawdown"),
        (D(0), D(50), D(31), RiskLimits(max_drawdown_quote=D(20)), None),
        (D(0), D(0), D(-1000), RiskLimits(), None),
    ],
)
def test_loss_breach_table(start, peak, value, limits, want) -> None:
    got = loss_breach(EquityTrack(day=1, day_start=start, peak=peak), value, limits)
    assert (got is None) if want is None else (got is not None and got.startswith(want))


def test_equity_marks_the_open_position_and_days_reset_the_daily_start() -> None:
    pos = Position("b", "BTC/USDT", qty=D(2), cost_quote=D(100), realized_pnl_quote=D(5))
    assert equity(pos, D(40)) == D(5) + D(80) - D(100)
    assert equity(pos, None) == D(5)
    t = track_equity(EquityTrack(), D(10), 0)
    t = track_equity(t, D(30), 1000)
    assert (t.day_start, t.peak) == (D(10), D(30))
    t = track_equity(t, D(20), 86_400_000)  # next UTC day
    assert (t.day, t.day_start, t.peak) == (1, D(20), D(30))


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=50))
def test_peak_is_the_running_maximum_and_drawdown_never_negative(values: list[int]) -> None:
    t = EquityTrack()
    for i, v in enumerate(values):
        t = track_equity(t, D(v), i)
        assert t.peak == max(values[: i + 1])
        assert t.peak - D(v) >= 0


def test_every_denial_reason_is_a_pre_created_metric_label() -> None:
    from tradefleet.domain import risk
    from tradefleet.metrics import RISK_REASONS

    reasons = {
        risk.HALTED,
        risk.STATE_UNKNOWN,
        risk.POSITION_CAP,
        risk.FLEET_CAP,
        risk.QUOTE_ASSET_CAP,
        risk.ORDER_RATE,
    }
    assert reasons == set(RISK_REASONS)
