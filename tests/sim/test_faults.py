"""Faults on demand: each one observable by a real client, counted by /sim/state."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.plugins.sim import sim_fault, sim_state
from tradefleet_sim.server import SimServer

TIMEOUT = 30


async def wait_for(predicate: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_drop_cuts_every_websocket_and_is_counted(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth") as ws:
        await ws.receive(timeout=TIMEOUT)
        result = await sim_fault(sim, kind="drop")
        assert result["applied"][0]["dropped"] == 1
        while True:
            msg = await ws.receive(timeout=TIMEOUT)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
    assert (await sim_state(sim))["faults"]["counters"]["drop"] == 1


async def test_gap_withholds_diffs_so_the_next_U_jumps(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth@100ms") as ws:
        prev = json.loads((await ws.receive(timeout=TIMEOUT)).data)
        await sim_fault(sim, kind="gap", diffs=3, symbol="BTCUSDT")
        jumps = 0
        for _ in range(20):
            cur = json.loads((await ws.receive(timeout=TIMEOUT)).data)
            if cur["U"] != prev["u"] + 1:
                assert cur["U"] > prev["u"] + 1
                jumps += 1
            prev = cur
            if jumps:
                break
    assert jumps == 1
    state = await sim_state(sim)
    assert state["markets"]["BTCUSDT"]["diffs_withheld"] == 3


async def test_malformed_frames_arrive_between_intact_frames(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/stream?streams=btcusdt@depth") as ws:
        await ws.receive(timeout=TIMEOUT)
        await sim_fault(sim, kind="malformed", count=3, shape="mixed")
        bad: list[str] = []
        good: list[dict[str, Any]] = []
        while len(bad) < 3 or len(good) < 3:
            text = (await ws.receive(timeout=TIMEOUT)).data
            try:
                f = json.loads(text)
            except ValueError:
                bad.append("unparseable")
                continue
            if not isinstance(f["data"].get("U"), int):
                bad.append("wrong types")
                continue
            good.append(f["data"])
    assert sorted(bad) == ["unparseable", "unparseable", "wrong types"]
    for a, b in itertools.pairwise(good):
        assert b["U"] == a["u"] + 1  # the real stream is intact around the garbage


async def test_stall_keeps_connection_open_and_silent_then_resumes_without_loss(make_sim: Any) -> None:
    sim = await make_sim(depth_rate=50.0)
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth") as ws:
        prev = json.loads((await ws.receive(timeout=TIMEOUT)).data)
        await sim_fault(sim, kind="stall", seconds=2)
        client = next(iter(sim.exchange.hub.clients.values()))
        sent_at_stall = client.sent

        async def queued() -> bool:
            return client.queue.qsize() >= 5

        await wait_for(queued)
        assert client.sent <= sent_at_stall + 1  # nothing (but a frame already in flight) left
        assert not ws.closed
        for _ in range(20):
            cur = json.loads((await ws.receive(timeout=TIMEOUT)).data)
            assert cur["U"] == prev["u"] + 1
            prev = cur
    assert (await sim_state(sim))["faults"]["counters"]["stall"] == 1


async def test_failing_rest_returns_binance_bodies_for_the_next_n_requests(sim: SimServer) -> None:
    await sim_fault(sim, kind="fail_rest", status=429, count=2, retry_after=3)
    await sim_fault(sim, kind="fail_rest", status=418, count=1)
    await sim_fault(sim, kind="fail_rest", status=503, count=1)
    await sim_fault(sim, kind="fail_rest", status=500, count=1)
    seen = []
    async with aiohttp.ClientSession() as s:
        for _ in range(6):
            async with s.get(sim.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=5") as r:
                body = await r.json()
                seen.append((r.status, body.get("code") if isinstance(body, dict) else None,
                             r.headers.get("Retry-After")))  # fmt: skip
                assert "X-MBX-USED-WEIGHT-1M" in r.headers
    assert seen[:5] == [(429, -1003, "3"), (429, -1003, "3"), (418, -1003, "1"), (503, -1008, None),
                        (500, -1001, None)]  # fmt: skip
    assert seen[5][0] == 200


async def test_slow_rest_delays_replies_for_count_requests(sim: SimServer) -> None:
    await sim_fault(sim, kind="slow_rest", delay_ms=400, count=1)
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        async with s.get(sim.rest_url + "/api/v3/ping") as r:
            assert r.status == 200
        assert time.monotonic() - t0 >= 0.4  # a lower bound only: a slow machine cannot break it
    assert (await sim_state(sim))["faults"]["rest_delay_ms"] == 0


async def test_server_shutdown_event_then_close_1001(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth") as ws:
        await sim_fault(sim, kind="server_shutdown", close_after=0.2)
        event = None
        while True:
            msg = await ws.receive(timeout=TIMEOUT)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            f = json.loads(msg.data)
            if f.get("e") == "serverShutdown":
                event = f
        assert event is not None and isinstance(event["E"], int)
        assert ws.close_code == 1001


async def test_bad_fault_requests_are_rejected_and_change_nothing(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as s:
        for body in ({"kind": "explode"}, {"kind": "gap", "dfifs": 3}, {"kind": "fail_rest", "status": 404},
                     [{"kind": "stall", "seconds": 5}, {"kind": "gap", "diffs": -1}]):  # fmt: skip
            async with s.post(sim.rest_url + "/sim/faults", json=body) as r:
                assert r.status == 400
                assert "error" in await r.json()
    state = await sim_state(sim)
    assert state["faults"]["counters"] == {} and state["faults"]["stalled_for"] == 0


async def test_fault_every_injects_random_faults_periodically(make_sim: Any) -> None:
    sim = await make_sim(fault_every=0.2)

    async def two_faults() -> bool:
        return (await sim_state(sim))["faults"]["counters"].get("random", 0) >= 2

    await wait_for(two_faults)


@pytest.mark.parametrize("shape", ["invalid_json", "truncated", "wrong_types"])
async def test_each_malformed_shape_is_not_a_valid_depth_update(sim: SimServer, shape: str) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(sim.ws_url + "/ws/btcusdt@depth") as ws:
        await ws.receive(timeout=TIMEOUT)
        await sim_fault(sim, kind="malformed", count=1, shape=shape)
        while True:
            text = (await ws.receive(timeout=TIMEOUT)).data
            try:
                f = json.loads(text)
            except ValueError:
                assert shape in ("invalid_json", "truncated")
                return
            if not isinstance(f.get("U"), int):
                assert shape == "wrong_types"
                return


async def test_rest_faults_can_spare_the_signed_trading_endpoints(make_sim: Any) -> None:
    sim = await make_sim(rest_faults_on_orders=False)
    await sim_fault(sim, kind="fail_rest", status=503, count=1)
    async with aiohttp.ClientSession() as s:
        # An order request (unsigned here, so refused by the trading API itself) is not the fault's target...
        async with s.post(sim.rest_url + "/api/v3/order?symbol=BTCUSDT") as r:
            assert r.status != 503
        # ...the next market-data request is.
        async with s.get(sim.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=5") as r:
            assert r.status == 503
        async with s.get(sim.rest_url + "/api/v3/depth?symbol=BTCUSDT&limit=5") as r:
            assert r.status == 200
