"""Websocket market data: raw, combined and live-subscribed streams with correct sequencing."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

import aiohttp

from tests.plugins.sim import sim_book
from tradefleet_sim.server import SimServer

TIMEOUT = 30


async def frames(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[Any]:
    out = []
    while len(out) < n:
        msg = await ws.receive(timeout=TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))
    return out


async def test_raw_depth_stream_is_gap_free_with_U_equal_previous_u_plus_1(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth@100ms") as ws:
        got = await frames(ws, 15)
    assert all(f["e"] == "depthUpdate" and f["s"] == "BTCUSDT" for f in got)
    for prev, cur in itertools.pairwise(got):
        assert cur["U"] == prev["u"] + 1
        assert cur["E"] >= prev["E"]
    sizes = [len(f["b"]) + len(f["a"]) for f in got]
    assert 20 <= sum(sizes) / len(sizes) <= 80  # about 20 levels per side per diff


async def test_local_book_from_snapshot_plus_diffs_equals_true_book(sim: SimServer) -> None:
    """The documented sync algorithm, run against the simulator, reproduces /sim/book exactly."""
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth") as ws:
        first = (await frames(ws, 1))[0]
        async with s.get(sim.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=5000") as r:
            snap = await r.json()
        book = {"b": {Decimal(p): Decimal(q) for p, q in snap["bids"]},
                "a": {Decimal(p): Decimal(q) for p, q in snap["asks"]}}  # fmt: skip
        last = snap["lastUpdateId"]
        pending = [first]
        while True:
            for f in pending:
                if f["u"] <= last:
                    continue
                assert f["U"] <= last + 1 <= f["u"] or f["U"] == last + 1
                for side in ("b", "a"):
                    for p, q in f[side]:
                        if Decimal(q) == 0:
                            book[side].pop(Decimal(p), None)
                        else:
                            book[side][Decimal(p)] = Decimal(q)
                last = f["u"]
            truth = await sim_book(sim)
            if truth["lastUpdateId"] == last:
                break
            pending = await frames(ws, 1)
    assert {Decimal(p): Decimal(q) for p, q in truth["bids"]} == book["b"]
    assert {Decimal(p): Decimal(q) for p, q in truth["asks"]} == book["a"]


async def test_combined_stream_wraps_frames_and_book_ticker_reflects_update_id(sim: SimServer) -> None:
    url = sim.ws_url + "/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker"
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        got = await frames(ws, 30)
    assert {f["stream"] for f in got} == {"btcusdt@depth@100ms", "btcusdt@bookTicker"}
    last_u = None
    for f in got:
        d = f["data"]
        if f["stream"].endswith("@depth@100ms"):
            last_u = d["u"]
        elif last_u is not None:
            assert d["u"] == last_u  # bookTicker follows the diff it reflects
            assert Decimal(d["b"]) < Decimal(d["a"])


async def test_subscribe_unsubscribe_and_list_on_bare_ws(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/0") as ws:
        await ws.send_json(
            {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@depth@100ms"], "id": 1}
        )
        replies = []
        seen_depth = False
        while not (replies and seen_depth):
            f = (await frames(ws, 1))[0]
            if "id" in f:
                replies.append(f)
            elif f.get("e") == "depthUpdate":
                seen_depth = True
        assert replies[0] == {"result": None, "id": 1}
        await ws.send_json({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 2})
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 3})
        await ws.send_json({"method": "SUBSCRIBE", "params": ["BTCUSDT@nope"], "id": 4})
        await ws.send_str("{not json")
        answers: dict[Any, Any] = {}
        while len(answers) < 4:
            f = (await frames(ws, 1))[0]
            if "id" in f:
                answers[f["id"]] = f
        assert answers[2] == {"result": None, "id": 2}
        assert answers[3] == {"result": ["btcusdt@trade"], "id": 3}
        assert answers[4]["error"]["code"] == 2
        assert answers[None]["error"]["code"] == 3


async def test_trade_frames_have_binance_fields(make_sim: Any) -> None:
    sim = await make_sim(trade_probability=1.0)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(sim.ws_url + "/ws/btcusdt@trade/btcusdt@aggTrade") as ws,
    ):
        got = await frames(ws, 6)
    kinds = {f["e"] for f in got}
    assert kinds == {"trade", "aggTrade"}
    for f in got:
        assert isinstance(f["p"], str) and isinstance(f["q"], str) and isinstance(f["m"], bool)
        assert isinstance(f["T"], int) and Decimal(f["q"]) > 0


async def test_partial_depth_stream_sends_top_levels_with_last_update_id(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth5@100ms") as ws:
        got = await frames(ws, 3)
    for f in got:
        assert set(f) == {"lastUpdateId", "bids", "asks"}
        assert len(f["bids"]) == len(f["asks"]) == 5
        assert Decimal(f["bids"][0][0]) < Decimal(f["asks"][0][0])
    assert got[0]["lastUpdateId"] < got[1]["lastUpdateId"] < got[2]["lastUpdateId"]


async def test_server_pings_and_closes_a_client_that_never_pongs(make_sim: Any) -> None:
    sim = await make_sim(ping_interval=0.3, pong_timeout=1.0)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(sim.ws_url + "/ws/btcusdt@depth", autoping=False) as ws,
    ):
        kinds = []
        while True:
            msg = await ws.receive(timeout=TIMEOUT)
            kinds.append(msg.type)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    assert kinds.count(aiohttp.WSMsgType.PING) >= 2  # pinged more than once before giving up
    assert kinds[-1] == aiohttp.WSMsgType.CLOSE and ws.close_code == 1008  # a close frame, not a cut


async def test_connection_lifetime_option_closes_like_the_24_hour_cut(make_sim: Any) -> None:
    sim = await make_sim(max_connection_s=0.5)
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth") as ws:
        while (msg := await ws.receive(timeout=TIMEOUT)).type == aiohttp.WSMsgType.TEXT:
            pass
    assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1001


async def test_state_reports_markets_clients_and_replay(sim: SimServer) -> None:
    from tests.plugins.sim import sim_state

    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@bookTicker"):
        state = await sim_state(sim)
    assert state["symbols"] == ["BTCUSDT"]
    m = state["markets"]["BTCUSDT"]
    assert m["source"] == "generated" and m["update_id"] >= 1_000_000
    assert Decimal(m["best_bid"]) < Decimal(m["best_ask"])
    assert state["connected_clients"] == 1 and state["clients"][0]["streams"] == ["btcusdt@bookTicker"]
    assert state["klines"]["started"] is False and state["replay_done"] is False
    assert state["failure"] is None


async def test_a_client_that_stops_reading_is_disconnected_not_fed_a_stream_with_holes(make_sim: Any) -> None:
    import asyncio
    import time

    from tests.plugins.sim import sim_state

    sim = await make_sim(depth_rate=400.0, send_queue=50, levels_per_side=1000, changes_per_side=200)
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth") as ws:
        await ws.receive(timeout=TIMEOUT)  # then never read again: kernel buffers fill, the queue overflows
        deadline = time.monotonic() + 60
        while (await sim_state(sim))["slow_disconnects"] < 1:
            assert time.monotonic() < deadline, "a non-reading client was never disconnected"
            await asyncio.sleep(0.1)
        assert (await sim_state(sim))["connected_clients"] == 0
