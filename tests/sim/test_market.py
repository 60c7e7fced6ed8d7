"""The true book: generator invariants and market-order matching the orders module relies on."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradefleet_sim.book import Book
from tradefleet_sim.generator import BookGenerator, GeneratorShape

TICK, STEP = Decimal("0.01"), Decimal("0.00001")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), price=st.decimals("100", "150000", places=2), jumps=st.lists(
    st.decimals("50", "200000", places=2), max_size=3))  # fmt: skip
def test_generated_book_never_crosses_stays_on_ticks_and_keeps_its_depth(
    seed: int, price: Decimal, jumps: list[Decimal]
) -> None:
    gen = BookGenerator(TICK, STEP, random.Random(seed), GeneratorShape(levels_per_side=200))
    book = Book()
    book.replace(*gen.seed(price))
    targets = iter(jumps)
    for i in range(300):
        if i % 100 == 50 and (target := next(targets, None)) is not None:
            bids, asks = gen.recentre(book, target)
            book.apply(bids, asks)
            assert book.bids.best() is not None and book.bids.best()[0] == target  # type: ignore[index]
        else:
            bids, asks = gen.next_diff(book)
            book.apply(bids, asks)
        assert not book.crossed()
        for p, q in bids + asks:
            assert p % TICK == 0 and q % STEP == 0 and q >= 0
    assert 150 <= len(book.bids) <= 260 and 150 <= len(book.asks) <= 260


async def test_take_liquidity_walks_levels_removes_them_and_publishes_diff_ticker_trades(
    make_sim: Any,
) -> None:
    sim = await make_sim(depth_rate=0.5, trade_probability=0.0)
    market = sim.exchange.markets["BTCUSDT"]
    streams = "btcusdt@depth/btcusdt@bookTicker/btcusdt@trade"
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{sim.ws_url}/stream?streams={streams}") as ws:
        asks = market.levels("BUY", 3)
        want = asks[0][1] + asks[1][1] + asks[2][1] / 2
        before = market.update_id
        fills = market.take_liquidity("BUY", base_qty=want)
        assert fills == [asks[0], asks[1], (asks[2][0], asks[2][1] - asks[2][1] / 2)]
        assert market.best_ask() == (asks[2][0], asks[2][1] / 2)
        got: dict[str, list[Any]] = {}
        while len(got.get("btcusdt@trade", [])) < 3:
            f = json.loads((await ws.receive(timeout=30)).data)
            got.setdefault(f["stream"], []).append(f["data"])
    diff = got["btcusdt@depth"][0]
    assert diff["U"] == before + 1
    assert [[Decimal(p), Decimal(q)] for p, q in diff["a"]] == [[asks[0][0], 0], [asks[1][0], 0],
                                                                [asks[2][0], asks[2][1] / 2]]  # fmt: skip
    assert Decimal(got["btcusdt@bookTicker"][0]["a"]) == asks[2][0]
    assert [Decimal(t["p"]) for t in got["btcusdt@trade"]] == [a[0] for a in asks]
    assert all(t["m"] is False for t in got["btcusdt@trade"])  # the taker bought


async def test_take_liquidity_by_quote_amount_buys_whole_steps_only(sim: Any) -> None:
    market = sim.exchange.markets["BTCUSDT"]
    bid = market.best_bid()
    fills = market.take_liquidity("SELL", quote_qty=bid[0] * Decimal("0.001"))
    assert fills == [(bid[0], Decimal("0.00100"))]
    with pytest.raises(ValueError, match="exactly one"):
        market.take_liquidity("BUY")
    with pytest.raises(ValueError, match="positive"):
        market.take_liquidity("BUY", base_qty=Decimal(0))
    assert market.take_liquidity("BUY", quote_qty=Decimal("0.001")) == []  # not one step affordable
