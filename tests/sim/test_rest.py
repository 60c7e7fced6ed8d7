"""REST market data speaks Binance: field names, string prices, error bodies, weight header."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp

from tradefleet_sim.server import SimServer


async def get(sim: SimServer, path: str) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as s, s.get(sim.rest_url + path) as r:
        return r.status, await r.json(), r.headers


async def test_depth_returns_binance_shape_with_string_levels_best_first(sim: SimServer) -> None:
    status, body, headers = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=50")
    assert status == 200
    assert set(body) == {"lastUpdateId", "bids", "asks"}
    assert isinstance(body["lastUpdateId"], int)
    assert len(body["bids"]) == len(body["asks"]) == 50
    assert all(isinstance(p, str) and isinstance(q, str) for p, q in body["bids"] + body["asks"])
    bids = [Decimal(p) for p, _ in body["bids"]]
    asks = [Decimal(p) for p, _ in body["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0]
    assert all(p % Decimal("0.01") == 0 for p in bids + asks)
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 5


async def test_depth_limit_above_5000_truncates_and_costs_250(make_sim: Any) -> None:
    sim = await make_sim(levels_per_side=6000, depth_rate=1)
    status, body, headers = await get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=6000")
    assert status == 200 and len(body["bids"]) == 5000
    assert int(headers["X-MBX-USED-WEIGHT-1M"]) >= 250


async def test_rest_errors_have_binance_codes(sim: SimServer) -> None:
    cases = {
        "/api/v3/depth?symbol=NOPEUSDT": -1121,
        "/api/v3/depth": -1102,
        "/api/v3/depth?symbol=BTCUSDT&limit=ten": -1100,
        "/api/v3/klines?symbol=BTCUSDT&interval=7m": -1120,
        "/api/v3/klines?symbol=BTCUSDT": -1102,
        "/api/v3/klines?symbol=BTCUSDT&interval=1d&startTime=20&endTime=10": -1023,
        '/api/v3/exchangeInfo?symbols=["BTCUSDT","NOPE"]': -1121,
    }
    for path, code in cases.items():
        status, body, _ = await get(sim, path)
        assert status == 400, path
        assert body["code"] == code and isinstance(body["msg"], str) and body["msg"], (path, body)


async def test_exchange_info_has_current_btcusdt_filters(sim: SimServer) -> None:
    status, body, _ = await get(sim, "/api/v3/exchangeInfo?symbol=BTCUSDT")
    assert status == 200
    (s,) = body["symbols"]
    f = {x["filterType"]: x for x in s["filters"]}
    assert Decimal(f["PRICE_FILTER"]["tickSize"]) == Decimal("0.01")
    assert Decimal(f["LOT_SIZE"]["stepSize"]) == Decimal("0.00001")
    assert Decimal(f["LOT_SIZE"]["minQty"]) == Decimal("0.00001")
    assert Decimal(f["NOTIONAL"]["minNotional"]) == Decimal("5")
    assert (s["baseAsset"], s["quoteAsset"], s["status"]) == ("BTC", "USDT", "TRADING")


async def test_time_follows_sim_clock_and_ping_is_empty(sim: SimServer) -> None:
    _, t, _ = await get(sim, "/api/v3/time")
    assert t["serverTime"] == sim.exchange.now_ms() or abs(t["serverTime"] - sim.exchange.now_ms()) < 60_000
    _, p, _ = await get(sim, "/api/v3/ping")
    assert p == {}


async def test_lower_case_symbols_are_accepted_like_binance(sim: SimServer) -> None:
    status, body, _ = await get(sim, "/api/v3/depth?symbol=btcusdt&limit=5")
    assert status == 200 and len(body["bids"]) == 5
    status, body, _ = await get(sim, "/api/v3/ticker/price?symbol=btcusdt")
    assert status == 200 and body["symbol"] == "BTCUSDT"


async def test_every_coarser_kline_interval_is_derived_from_the_replayed_one(sim: SimServer) -> None:
    _, days, _ = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d&limit=1000")
    _, weeks, _ = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1w&limit=1000")
    _, months, _ = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1M&limit=1000")
    _, hours, _ = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1h&limit=10")
    assert hours == []  # finer than the replayed daily candles: nothing honest to derive
    week = weeks[-2]  # a closed week: its days are all there
    inside = [d for d in days if week[0] <= d[0] <= week[6]]
    assert len(inside) == 7 and (week[0] - 4 * 86_400_000) % (7 * 86_400_000) == 0  # opens on a Monday
    assert week[1] == inside[0][1] and week[4] == inside[-1][4]
    assert Decimal(week[2]) == max(Decimal(d[2]) for d in inside)
    assert Decimal(week[3]) == min(Decimal(d[3]) for d in inside)
    assert Decimal(week[5]) == sum(Decimal(d[5]) for d in inside)
    assert len(months) >= 8 and all(m[6] > m[0] for m in months)


async def test_time_zone_klines_over_rest_and_stream(make_sim: Any) -> None:
    import json

    sim = await make_sim(kline_interval="1h", history=600, speed=50.0)
    _, days, _ = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d&timeZone=%2B08:00&limit=5")
    assert len(days) == 5 and all(d[0] % 86_400_000 == 16 * 3_600_000 for d in days)  # 00:00 in UTC+8
    _, utc, _ = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d&timeZone=0&limit=5")
    assert all(d[0] % 86_400_000 == 0 for d in utc)
    status, body, _ = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d&timeZone=99")
    assert status == 400 and body["code"] == -1100
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@kline_1d@+08:00") as ws:
        frame = json.loads((await ws.receive(timeout=20)).data)
    assert frame["k"]["i"] == "1d" and frame["k"]["t"] % 86_400_000 == 16 * 3_600_000


async def test_time_zone_klines_misaligned_with_the_replayed_candles_are_empty(sim: SimServer) -> None:
    _, rows, _ = await get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d&timeZone=8")
    assert rows == []  # 08:00 boundaries cannot be cut from whole UTC days
