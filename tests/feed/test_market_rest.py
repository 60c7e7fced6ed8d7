"""BinanceMarketRest: aiohttp against the simulator (and a bare server for the answers the
simulator never gives), plus the exchangeInfo filters of a real 2021 Binance response. Exact decimal strings survive, history pages
past 1,000 candles and stops at the last closed one, and every error comes out as ours."""

from __future__ import annotations

import asyncio
import csv
import json
from decimal import Decimal

import pytest

from tests.conftest import free_port
from tests.feed.captures import DATA
from tests.plugins.sim import MakeSim, sim_fault
from tradefleet.adapters.market_rest import BinanceMarketRest, rules_from_exchange_info
from tradefleet.errors import ExchangeUnavailable, PermanentError, RateLimited
from tradefleet_sim.klines import DEFAULT_KLINES

DAY_MS = 86_400_000


@pytest.fixture
async def sim_rest(make_sim: MakeSim):
    sim = await make_sim(history=1200)
    rest = BinanceMarketRest(rest_url=sim.rest_url)
    yield sim, rest
    await rest.close()


async def test_depth_snapshot_keeps_exact_strings_and_last_update_id(sim_rest) -> None:
    _sim, rest = sim_rest
    snap = await rest.fetch_depth_snapshot("BTCUSDT", 100)
    assert snap.symbol == "BTCUSDT" and snap.last_update_id > 0
    assert len(snap.bids) == len(snap.asks) == 100
    price, qty = snap.bids[0]
    assert isinstance(price, str) and isinstance(qty, str)
    assert Decimal(snap.bids[0][0]) < Decimal(snap.asks[0][0])
    assert [Decimal(p) for p, _ in snap.bids] == sorted((Decimal(p) for p, _ in snap.bids), reverse=True)


async def test_candles_page_past_1000_and_stop_at_last_closed_with_exact_decimals(sim_rest) -> None:
    _sim, rest = sim_rest
    with DEFAULT_KLINES.open() as f:
        recorded = {int(r["open_time"]): r for r in csv.DictReader(f)}
    first = min(recorded)
    candles = await rest.fetch_candles("BTC/USDT", "1d", first, first + 5000 * DAY_MS)
    assert len(candles) == 1200  # the simulator's closed history; its open candle is left out
    assert [c.open_time for c in candles] == [first + i * DAY_MS for i in range(1200)]
    for c in (candles[0], candles[999], candles[1000], candles[-1]):
        row = recorded[c.open_time]
        assert (c.open, c.high, c.low, c.close, c.volume) == tuple(
            Decimal(row[k]) for k in ("open", "high", "low", "close", "volume")
        )
        assert c.closed and c.symbol == "BTC/USDT" and c.interval == "1d"
    window = await rest.fetch_candles("BTCUSDT", "1d", first + 10 * DAY_MS, first + 13 * DAY_MS)
    assert [c.open_time for c in window] == [first + d * DAY_MS for d in (10, 11, 12)]  # [since, until)


async def test_symbol_rules_from_simulator_exchange_info(sim_rest) -> None:
    _, rest = sim_rest
    rules = await rest.fetch_symbol_rules("BTC/USDT")
    assert rules.market_id == "BTCUSDT" and rules.base_asset == "BTC" and rules.quote_asset == "USDT"
    assert rules.step_size > 0 and rules.tick_size > 0 and rules.min_notional > 0


def test_symbol_rules_from_real_2021_exchange_info() -> None:
    body = json.loads((DATA / "exchangeInfo_2021-10-12_trimmed.json").read_text())["response"]
    r = rules_from_exchange_info(body, "BTCUSDT")
    assert (r.step_size, r.min_qty, r.tick_size, r.min_notional) == (
        Decimal("0.00001"), Decimal("0.00001"), Decimal("0.01"), Decimal("10"))  # fmt: skip
    assert r.max_qty == Decimal("100.05381873")  # MARKET_LOT_SIZE is tighter than LOT_SIZE's 9000
    with pytest.raises(PermanentError):
        rules_from_exchange_info(body, "NOPEUSDT")


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [(429, RateLimited, 2.0), (418, RateLimited, 3.0), (500, ExchangeUnavailable, None),
     (503, ExchangeUnavailable, None)],
)  # fmt: skip
async def test_rest_failures_become_our_temporary_errors(sim_rest, status, error, retry_after) -> None:
    sim, rest = sim_rest
    await sim_fault(sim, kind="fail_rest", status=status, count=1, retry_after=int(retry_after or 1))
    with pytest.raises(error) as info:
        await rest.fetch_depth_snapshot("BTCUSDT", 100)
    if retry_after is not None:
        assert info.value.retry_after == retry_after
    assert (await rest.fetch_depth_snapshot("BTCUSDT", 5)).last_update_id > 0  # next call is fine


async def test_unknown_symbol_is_permanent(sim_rest) -> None:
    _, rest = sim_rest
    with pytest.raises(PermanentError):
        await rest.fetch_depth_snapshot("NOPEUSDT", 100)


async def test_unreachable_exchange_is_temporary() -> None:
    rest = BinanceMarketRest(rest_url=f"http://127.0.0.1:{free_port()}", timeout_ms=5000)
    try:
        with pytest.raises(ExchangeUnavailable):
            await rest.fetch_depth_snapshot("BTCUSDT", 100)
    finally:
        await rest.close()


@pytest.fixture
async def bare_server():
    """A real HTTP server answering `/api/v3/depth` with whatever the test puts in `answer`
    (status, body, headers), or never answering when `answer` is None."""
    from aiohttp import web

    state: dict[str, object] = {"answer": None}
    never = asyncio.Event()

    async def depth(request: web.Request) -> web.Response:
        answer = state["answer"]
        if answer is None:
            await never.wait()
        status, body, headers = answer  # type: ignore[misc]
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/api/v3/depth", depth)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    rest = BinanceMarketRest(rest_url=f"http://127.0.0.1:{port}", timeout_ms=300)
    yield state, rest
    await rest.close()
    never.set()
    await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "retry_after"),
    [
        (400, b'{"code":-1121,"msg":"Invalid symbol."}', {}, PermanentError, None),
        (400, b'{"code":-1003,"msg":"Too many requests."}', {}, RateLimited, 1.0),
        (429, b"", {"Retry-After": "7"}, RateLimited, 7.0),
        (503, b'{"code":-1008,"msg":"Server is currently overloaded"}', {}, ExchangeUnavailable, None),
        (403, b"<html>Forbidden by a WAF</html>", {}, ExchangeUnavailable, None),  # no Binance body
        (404, b"not found", {}, ExchangeUnavailable, None),
        (200, b"<html>maintenance</html>", {}, ExchangeUnavailable, 1.0),  # 200 but not JSON
        (200, b'{"bids":[],"asks":[]}', {}, ExchangeUnavailable, 1.0),  # JSON without lastUpdateId
        (200, b'{"lastUpdateId":1,"bids":[[1.5,"2"]],"asks":[]}', {}, ExchangeUnavailable, 1.0),  # a number
    ],
)  # fmt: skip
async def test_every_answer_becomes_ours(bare_server, status, body, headers, error, retry_after) -> None:
    state, rest = bare_server
    state["answer"] = (status, body, headers)
    with pytest.raises(error) as info:
        await rest.fetch_depth_snapshot("BTCUSDT", 100)
    assert type(info.value) is error
    assert getattr(info.value, "retry_after", None) == retry_after
    assert "depth snapshot BTCUSDT" in str(info.value)


async def test_a_server_that_never_answers_is_temporary(bare_server) -> None:
    _state, rest = bare_server
    with pytest.raises(ExchangeUnavailable):
        await rest.fetch_depth_snapshot("BTCUSDT", 100)


def test_a_rest_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(PermanentError, match="http:// or https://"):
        BinanceMarketRest(rest_url="ws://127.0.0.1:1")
