"""The proof that the simulator speaks Binance: unmodified ccxt and ccxt.pro work against it."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from bench.ccxt_client import make_binance

from tests.plugins.sim import sim_book
from tradefleet_sim.klines import DEFAULT_KLINES, load_csv

SERIES = load_csv(DEFAULT_KLINES)


async def test_ccxt_loads_markets_and_fetches_the_book(sim: Any) -> None:
    ex = make_binance(rest_url=sim.rest_url, ws_url=sim.ws_url)
    try:
        markets = await ex.load_markets()
        m = markets["BTC/USDT"]
        assert m["id"] == "BTCUSDT" and m["spot"] is True
        assert m["precision"]["price"] == 0.01 and m["precision"]["amount"] == 0.00001
        assert m["limits"]["cost"]["min"] == 5
        ob = await ex.fetch_order_book("BTC/USDT", 1000)
        assert 250 <= len(ob["bids"]) <= 350 and 250 <= len(ob["asks"]) <= 350  # about 300 a side in tests
        assert ob["bids"][0][0] < ob["asks"][0][0]
        assert isinstance(ob["nonce"], int)
        t = await ex.fetch_time()
        assert abs(t - sim.exchange.now_ms()) < 60_000
    finally:
        await ex.close()


async def test_ccxt_fetch_ohlcv_pages_past_1000_with_since(make_sim: Any) -> None:
    sim = await make_sim(history=2500)
    ex = make_binance(rest_url=sim.rest_url)
    try:
        since = SERIES.candles[0].open_time
        got: list[list[Any]] = []
        while True:
            page = await ex.fetch_ohlcv("BTC/USDT", "1d", since=since, limit=1000)
            if not page:
                break
            got += page
            if len(page) < 1000:
                break
            since = page[-1][0] + 1
        assert len(got) == 2501  # 2500 closed + the open candle
        for row, c in zip(got[:2500], SERIES.candles[:2500], strict=True):
            assert row[0] == c.open_time
            assert Decimal(str(row[4])) == c.close
        assert [r[0] for r in got] == sorted({r[0] for r in got})
    finally:
        await ex.close()


async def test_ccxt_pro_watch_order_book_stays_in_sync_with_the_true_book(make_sim: Any) -> None:
    sim = await make_sim(depth_rate=4.0)
    ex = make_binance(rest_url=sim.rest_url, ws_url=sim.ws_url, pro=True)
    try:
        await ex.load_markets()
        matched = 0
        deadline = time.monotonic() + 30
        while matched < 3:
            assert time.monotonic() < deadline, "ccxt.pro never matched the true book"
            ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT", 1000), 30)
            truth = await sim_book(sim, "BTCUSDT", limit=20)
            if truth["lastUpdateId"] != ob["nonce"]:
                continue  # the simulator moved on while we looked; compare at the next update
            assert [[Decimal(p), Decimal(q)] for p, q in truth["bids"]] == [
                [Decimal(str(p)), Decimal(str(q))] for p, q in ob["bids"][:20]
            ]
            assert [[Decimal(p), Decimal(q)] for p, q in truth["asks"]] == [
                [Decimal(str(p)), Decimal(str(q))] for p, q in ob["asks"][:20]
            ]
            matched += 1
    finally:
        await ex.close()


@pytest.mark.parametrize("status", [429, 503])
async def test_ccxt_maps_simulated_rest_failures_to_its_own_errors(sim: Any, status: int) -> None:
    import ccxt

    from tests.plugins.sim import sim_fault

    ex = make_binance(rest_url=sim.rest_url)
    try:
        await ex.load_markets()
        await sim_fault(sim, kind="fail_rest", status=status, count=1)
        expected = (
            ccxt.DDoSProtection if status == 429 else ccxt.ExchangeError
        )  # ccxt maps -1008 to OperationFailed
        with pytest.raises(expected):
            await ex.fetch_order_book("BTC/USDT", 5)
        assert (await ex.fetch_order_book("BTC/USDT", 5))["bids"]
    finally:
        await ex.close()
