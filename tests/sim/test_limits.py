"""Binance's limits, enforced by default on a clock the test controls (`ManualClock`): weight per
minute -> 429 with Retry-After, repeat offenders -> 418 bans; order counts and their headers;
5 websocket messages a second; and the switch that relaxes all of it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tradefleet_sim.clock import ManualClock

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000  # a minute boundary


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], Any]:
    async with session.get(url) as r:
        return r.status, dict(r.headers), await r.json()


async def test_weight_over_the_minute_is_429_then_a_418_ban_then_free_after_it(make_sim: Any) -> None:
    clock = ManualClock(T0)
    sim = await make_sim(clock=clock, klines=None, depth_rate=1.0)
    url = f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5000"  # weight 250
    async with aiohttp.ClientSession() as s:
        for i in range(24):  # 24 x 250 = 6000: exactly the limit
            status, headers, _ = await _get(s, url)
            assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == str(250 * (i + 1))
        clock.advance(15_000)
        status, headers, body = await _get(s, url)
        assert status == 429 and body["code"] == -1003 and headers["Retry-After"] == "45"
        for _ in range(5):  # keeps hammering inside the same minute
            status, _, _ = await _get(s, url)
        assert status == 429
        status, headers, body = await _get(s, url)
        assert status == 418 and "banned until" in body["msg"] and headers["Retry-After"] == "120"
        clock.advance(61_000)  # a new minute, still banned
        assert (await _get(s, f"{sim.rest_url}/api/v3/ping"))[0] == 418
        clock.advance(60_000)
        status, headers, _ = await _get(s, f"{sim.rest_url}/api/v3/ping")
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "1"


async def test_relaxed_limits_count_but_never_refuse(make_sim: Any) -> None:
    sim = await make_sim(clock=ManualClock(T0), klines=None, enforce_limits=False, weight_limit=10)
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            status, headers, _ = await _get(s, f"{sim.rest_url}/api/v3/exchangeInfo")
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "100"


async def test_order_counts_in_headers_and_the_rate_limit_order_endpoint(make_sim: Any) -> None:
    from bench.ccxt_client import make_binance

    from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

    sim = await make_sim(klines=None)
    ex = make_binance(rest_url=sim.rest_url, api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET)
    ex.options["fetchMargins"] = False
    try:
        await ex.load_markets()
        await ex.create_order("BTC/USDT", "market", "buy", None, None, {"quoteOrderQty": "50"})
        headers = ex.last_response_headers
        assert headers["X-MBX-ORDER-COUNT-10S"] == "1" and headers["X-MBX-ORDER-COUNT-1D"] == "1"
        limits = await ex.private_get_ratelimit_order()
        assert [x["count"] for x in limits] == [1, 1]
    finally:
        await ex.close()


async def test_more_than_five_messages_a_second_closes_the_socket(make_sim: Any) -> None:
    sim = await make_sim(clock=ManualClock(T0), klines=None)
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{sim.ws_url}/ws") as ws:
        for i in range(6):
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        replies = [await ws.receive(timeout=5) for _ in range(6)]
    assert [r.type for r in replies[:5]] == [aiohttp.WSMsgType.TEXT] * 5
    assert replies[5].type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


@pytest.mark.parametrize("path", ["/ws/btcusdt@nonsense", "/ws/BTCUSDT@trade"])
async def test_unknown_raw_stream_gets_an_error_and_a_close_not_silence(make_sim: Any, path: str) -> None:
    sim = await make_sim(klines=None)
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{sim.ws_url}{path}") as ws:
        first = await ws.receive(timeout=5)
        assert first.type == aiohttp.WSMsgType.TEXT and json.loads(first.data)["error"]["code"] == 2
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1008
