"""The statistics of a run on hand-computed examples (pure: closes and fills in, figures out)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from tradefleet.domain.models import Side
from tradefleet.domain.performance import Fill, evaluate

DAY = 86_400_000
D = Decimal


def test_one_round_trip_equity_drawdown_return_and_exposure() -> None:
    times = [i * DAY for i in range(5)]
    closes = [D(100), D(100), D(120), D(90), D(150)]
    fills = [
        # BUY 10 at 100 on day 1 (fee 0.01 base), SELL 9.99 at 150 on day 4 (fee 1.4985 quote)
        Fill(1 * DAY, Side.BUY, D(10), D(1000), D("0.01"), True),
        Fill(4 * DAY, Side.SELL, D("9.99"), D("1498.5"), D("1.4985"), False),
    ]
    p = evaluate(times, closes, fills, capital=D(1000), interval_ms=DAY, fee_rate=D("0.001"))
    assert p.equity == pytest.approx([1000.0, 999.0, 1198.8, 899.1, 1497.0015])
    assert p.final_equity == pytest.approx(1497.0015)
    assert p.total_return == pytest.approx(0.4970015)
    assert p.max_drawdown == pytest.approx(899.1 / 1198.8 - 1)
    assert p.exposure == pytest.approx(3 / 5)  # days 1, 2, 3 end holding
    assert p.fees_quote == D("0.01") * 100 + D("1.4985")
    (trip,) = p.round_trips
    assert trip.entry_price == 100 and trip.exit_price == 150 and trip.pnl_quote == D("497.0015")
    assert p.realized_pnl_quote == D("497.0015") and p.win_rate == 1.0
    assert p.buy_and_hold_return == pytest.approx(0.999 * 1.5 - 1)


def test_sharpe_and_sortino_follow_their_definitions() -> None:
    times = [i * DAY for i in range(4)]
    closes = [D(100), D(110), D(99), D(120)]
    fills = [Fill(0, Side.BUY, D(10), D(1000), D(0), True)]
    p = evaluate(times, closes, fills, capital=D(1000), interval_ms=DAY, fee_rate=D(0))
    r = [0.0, 0.1, 99 / 110 - 1, 120 / 99 - 1]
    mean = sum(r) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 3)
    down = math.sqrt(sum(min(x, 0) ** 2 for x in r) / 4)
    assert p.sharpe == pytest.approx(mean / std * math.sqrt(365))
    assert p.sortino == pytest.approx(mean / down * math.sqrt(365))
    assert p.round_trips[0].exit_time is None  # still open: marked to the last close
    assert p.win_rate is None


def test_no_trades_means_flat_equity_and_no_ratios() -> None:
    p = evaluate([0, DAY], [D(1), D(2)], [], capital=D(1000), interval_ms=DAY, fee_rate=D(0))
    assert p.equity == [1000.0, 1000.0] and p.total_return == 0 and p.sharpe is None and p.exposure == 0
    with pytest.raises(ValueError):
        evaluate([], [], [], capital=D(1000), interval_ms=DAY, fee_rate=D(0))
