"""The SMA crossover core: exact means, one signal per cross, nothing during warm-up."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradefleet.domain.models import Candle, Side
from tradefleet.domain.sma_cross import RollingMean, SmaCrossover, signal_id

DAY = 86_400_000


def candle(i: int, close: str | Decimal) -> Candle:
    c = Decimal(close)
    return Candle("BTC/USDT", "1d", i * DAY, (i + 1) * DAY - 1, c, c, c, c, Decimal(1))


def crosses(closes: list[str], short: int, long: int) -> list[tuple[int, Side]]:
    sma = SmaCrossover(short, long)
    out = []
    for i, c in enumerate(closes):
        update = sma.on_close(candle(i, c))
        if update.cross:
            out.append((i, update.cross.side))
    return out


prices = st.decimals(min_value="0.01", max_value="100000", places=2, allow_nan=False, allow_infinity=False)


@given(st.lists(prices, min_size=1, max_size=80), st.integers(min_value=1, max_value=20))
def test_rolling_mean_equals_naive_mean_at_every_step(values: list[Decimal], window: int) -> None:
    mean = RollingMean(window)
    for i, v in enumerate(values):
        got = mean.push(v)
        if i + 1 < window:
            assert got is None
        else:
            assert got == sum(values[i + 1 - window : i + 1], Decimal(0)) / window


@given(st.lists(prices, min_size=0, max_size=120))
def test_crossings_equal_naive_sign_changes_and_alternate(values: list[Decimal]) -> None:
    short, long = 3, 7
    got = crosses([str(v) for v in values], short, long)
    # Naive: sign of (short - long) over full windows; zero keeps the previous sign.
    expected, prev = [], None
    for i in range(long - 1, len(values)):
        s = sum(values[i + 1 - short : i + 1], Decimal(0)) / short
        lng = sum(values[i + 1 - long : i + 1], Decimal(0)) / long
        rel = Side.BUY if s > lng else Side.SELL if s < lng else prev
        if prev is not None and rel is not None and rel != prev:
            expected.append((i, rel))
        prev = rel
    assert got == expected
    sides = [side for _, side in got]
    assert all(a != b for a, b in itertools.pairwise(sides)), "a crossover fires once per cross"


def test_starting_with_short_above_long_is_not_a_buy() -> None:
    rising = [str(100 + i) for i in range(30)]
    assert crosses(rising, 3, 7) == []


def test_no_signal_before_long_window_is_full() -> None:
    closes = ["10", "1", "10", "1", "10", "1"]
    sma = SmaCrossover(2, 5)
    updates = [sma.on_close(candle(i, c)) for i, c in enumerate(closes)]
    assert [u.sma_long is None for u in updates] == [True] * 4 + [False] * 2
    assert all(u.cross is None for u in updates[:5])


def test_buy_on_cross_up_then_sell_on_cross_down() -> None:
    closes = ["10"] * 5 + ["5", "5", "20", "20", "20", "1", "1", "1", "1"]
    got = crosses(closes, 2, 4)
    assert [side for _, side in got] == [Side.BUY, Side.SELL]


def test_touching_without_crossing_is_not_a_signal() -> None:
    # short dips to equal long, then goes back above: no SELL, no BUY.
    sma = SmaCrossover(1, 2)
    closes = ["1", "2", "3", "3", "4"]
    assert [sma.on_close(candle(i, c)).cross for i, c in enumerate(closes)] == [None] * 5


def test_refuses_a_candle_twice_or_out_of_order() -> None:
    sma = SmaCrossover(1, 2)
    sma.on_close(candle(1, "1"))
    with pytest.raises(ValueError, match="not after"):
        sma.on_close(candle(1, "1"))
    with pytest.raises(ValueError, match="not after"):
        sma.on_close(candle(0, "1"))


def test_refuses_short_window_not_below_long() -> None:
    with pytest.raises(ValueError):
        SmaCrossover(5, 5)


def test_signal_id_is_deterministic_and_distinguishes_every_component() -> None:
    base = ("bot", "binance", "BTC/USDT", "1d", 1_600_000_000_000, Side.BUY)
    assert signal_id(*base) == signal_id(*base)
    variants = {
        signal_id("bot2", *base[1:]),
        signal_id(base[0], "okx", *base[2:]),
        signal_id(*base[:2], "ETH/USDT", *base[3:]),
        signal_id(*base[:3], "1h", *base[4:]),
        signal_id(*base[:4], base[4] + 1, base[5]),
        signal_id(*base[:5], Side.SELL),
    }
    assert signal_id(*base) not in variants and len(variants) == 6
    assert len(signal_id(*base)) <= 64
