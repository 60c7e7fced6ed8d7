"""Kline history and replay: the data the SMA oracle test and the demo depend on."""

from __future__ import annotations

import itertools
import json
import time
from decimal import Decimal
from typing import Any

import aiohttp

from tests.plugins.sim import sim_state
from tradefleet_sim.hub import Hub
from tradefleet_sim.kline_replay import KlineReplay
from tradefleet_sim.klines import DEFAULT_KLINES, KlineSeries, load_csv, select
from tradefleet_sim.server import SimServer

TIMEOUT = 30
SERIES = load_csv(DEFAULT_KLINES)


async def get_json(sim: SimServer, path: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(sim.rest_url + path) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def test_loader_drops_the_unfinished_last_row_and_keeps_real_values() -> None:
    assert len(SERIES.candles) == 3063
    first, last = SERIES.candles[0], SERIES.candles[-1]
    assert (first.open_time, first.open, first.close) == (
        1502928000000,
        Decimal("4261.48"),
        Decimal("4285.08"),
    )
    assert last.open_time == 1767484800000  # 2026-01-04, the last closed day
    assert SERIES.interval == "1d" and SERIES.symbol == "BTCUSDT"


def test_window_rules_follow_binance() -> None:
    rows = list(SERIES.candles[:10])
    t = [c.open_time for c in rows]
    assert select(rows, start=t[2], end=None, limit=3) == rows[2:5]
    assert select(rows, start=None, end=t[5], limit=3) == rows[3:6]
    assert select(rows, start=t[1], end=t[8], limit=100) == rows[1:9]
    assert select(rows, start=None, end=None, limit=4) == rows[6:]


async def test_rest_serves_history_plus_the_open_candle_as_last_row(make_sim: Any) -> None:
    sim = await make_sim(history=260)
    rows = await get_json(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d&limit=1000")
    assert len(rows) == 261
    for row, c in zip(rows[:260], SERIES.candles[:260], strict=True):
        assert row[0] == c.open_time and row[6] == c.close_time
        assert [Decimal(x) for x in row[1:6]] == [c.open, c.high, c.low, c.close, c.volume]
        assert row[8] == c.trades and isinstance(row[7], str) and row[11] == "0"
    open_row = rows[-1]
    assert open_row[0] == SERIES.candles[260].open_time
    assert Decimal(open_row[1]) == SERIES.candles[260].open
    assert sim.exchange.now_ms() < open_row[6]  # still open by the sim clock
    default = await get_json(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d")
    assert len(default) == 261  # default limit 500 > available
    other = await get_json(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1h")
    assert other == []


async def test_replay_sends_progress_then_close_in_order_with_book_recentred_first(make_sim: Any) -> None:
    history = len(SERIES.candles) - 12
    sim = await make_sim(history=history, speed=100.0, depth_rate=5.0)
    streams = "btcusdt@bookTicker/btcusdt@kline_1d"
    closes: list[dict[str, Any]] = []
    last_ticker: dict[str, Any] | None = None
    progress_before_close = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{sim.ws_url}/stream?streams={streams}") as ws:
        while len(closes) < 12:
            msg = await ws.receive(timeout=TIMEOUT)
            f = json.loads(msg.data)
            d = f["data"]
            if f["stream"].endswith("@bookTicker"):
                last_ticker = d
                continue
            k = d["k"]
            if not k["x"]:
                progress_before_close += 1
                assert Decimal(k["l"]) <= Decimal(k["c"]) <= Decimal(k["h"])
                continue
            c = SERIES.candles[history + len(closes)]
            assert (k["t"], k["T"]) == (c.open_time, c.close_time)
            assert [Decimal(k[x]) for x in "ohlcv"] == [c.open, c.high, c.low, c.close, c.volume]
            assert d["E"] >= c.close_time
            assert (
                last_ticker is not None and Decimal(last_ticker["b"]) == c.close
            )  # re-centred BEFORE the close
            assert Decimal(last_ticker["a"]) == c.close + Decimal("0.01")
            closes.append(d)
    assert progress_before_close == 24  # two x=false frames per candle
    state = await sim_state(sim)
    assert state["klines"]["replay_done"] is True and state["replay_done"] is True
    rows = await get_json(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d&limit=20")
    assert rows[-1][0] == SERIES.candles[-1].open_time and Decimal(rows[-1][4]) == SERIES.candles[-1].close


async def test_market_order_right_after_a_close_fills_at_that_close(make_sim: Any) -> None:
    history = len(SERIES.candles) - 6
    sim = await make_sim(history=history, speed=50.0)
    replay = sim.exchange.klines
    market = sim.exchange.markets["BTCUSDT"]
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{sim.ws_url}/ws/btcusdt@kline_1d") as ws:
        fills_seen = 0
        while fills_seen < 3:
            k = json.loads((await ws.receive(timeout=TIMEOUT)).data)["k"]
            if not k["x"]:
                continue
            # No await between reading the position and filling: this is one atomic step of the sim.
            closed = SERIES.candles[replay.position - 1]
            fills = market.take_liquidity("BUY", base_qty=Decimal("0.01"))
            assert fills == [(closed.close + Decimal("0.01"), Decimal("0.01"))]
            sell = market.take_liquidity("SELL", quote_qty=Decimal("100"))
            assert sell[0][0] == closed.close
            fills_seen += 1


async def test_replay_waits_for_a_subscriber_and_obeys_pause_and_start(make_sim: Any) -> None:
    sim = await make_sim(history=300, speed=50.0)
    state = await sim_state(sim)
    assert state["klines"]["started"] is False and state["klines"]["position"] == 300
    async with aiohttp.ClientSession() as s:
        async with s.post(sim.rest_url + "/sim/control/start") as r:
            assert (await r.json())["klines"]["started"] is True
        async with s.ws_connect(f"{sim.ws_url}/ws/btcusdt@kline_1d") as ws:
            await ws.receive(timeout=TIMEOUT)
            async with s.post(sim.rest_url + "/sim/control/pause") as r:
                paused = (await r.json())["klines"]
            assert paused["paused"] is True
            pos = sim.exchange.klines.position
            # While paused, REST and the replay position do not move however long we look.
            rows = await get_json(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1d&limit=1000")
            assert rows[-2][0] == SERIES.candles[pos - 1].open_time
            assert sim.exchange.klines.position == pos
            async with s.post(sim.rest_url + "/sim/control/start") as r:
                assert (await r.json())["klines"]["paused"] is False
            while True:
                k = json.loads((await ws.receive(timeout=TIMEOUT)).data)["k"]
                if k["x"] and k["t"] >= SERIES.candles[pos].open_time:
                    break


async def test_relabelled_interval_serves_daily_closes_as_minute_candles(make_sim: Any) -> None:
    sim = await make_sim(kline_interval="1m", history=200)
    rows = await get_json(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3")
    assert rows[-1][6] - rows[-1][0] == 59_999
    assert Decimal(rows[-2][4]) == SERIES.candles[199].close


async def test_klines_for_a_symbol_not_simulated_are_refused(tmp_path: Any) -> None:
    import pytest

    from tradefleet_sim.exchange import SimExchange
    from tradefleet_sim.options import SimOptions

    csv = tmp_path / "eth.csv"
    csv.write_text(
        "symbol,timeframe,open_time,close_time,open,high,low,close,volume,trades\n"
        "ETHUSDT,1d,1502928000000,1503014399999,300.0,310.0,290.0,305.0,10.0,5\n"
        "ETHUSDT,1d,1503014400000,1503100799999,305.0,310.0,290.0,300.0,10.0,5\n"
        "ETHUSDT,1d,1503100800000,1503187199999,300.0,310.0,290.0,301.0,10.0,5\n"
    )
    with pytest.raises(ValueError, match="holds ETHUSDT candles"):
        SimExchange(SimOptions(klines=csv))
    ex = SimExchange(SimOptions(klines=csv, symbols=("ETHUSDT",), history=1))
    assert ex.klines is not None and ex.klines.current is not None
    assert ex.markets["ETHUSDT"].best_bid()[0] == ex.klines.current.open  # type: ignore[index]


async def test_replay_holds_while_nobody_watches_so_a_reconnecting_client_misses_no_close(
    make_sim: Any,
) -> None:
    import asyncio
    import time

    history = len(SERIES.candles) - 40
    sim = await make_sim(history=history, speed=100.0)
    closes: list[int] = []
    async with aiohttp.ClientSession() as s:
        for _round in range(2):
            async with s.ws_connect(f"{sim.ws_url}/ws/btcusdt@kline_1d") as ws:
                target = len(closes) + 3
                while len(closes) < target:
                    k = json.loads((await ws.receive(timeout=TIMEOUT)).data)["k"]
                    if k["x"]:
                        closes.append(k["t"])
            deadline = time.monotonic() + TIMEOUT
            while (await sim_state(sim))["klines"]["holding"] != "unwatched":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            held_at = sim.exchange.klines.position
            assert (await sim_state(sim))["klines"]["position"] == held_at
    # Closes arrive in order; across the reconnect at most the one close already in flight to the
    # departed client is missing (REST has it), and the replay did not run on without a watcher.
    opens = [c.open_time for c in SERIES.candles[history:]]
    idx = [opens.index(t) for t in closes]
    assert idx[:3] == [0, 1, 2]
    assert idx[3] in (3, 4) and idx[3:] == list(range(idx[3], idx[3] + 3))


async def test_replay_holds_during_a_stall_and_resumes_after(make_sim: Any) -> None:
    import asyncio
    import time

    from tests.plugins.sim import sim_fault

    sim = await make_sim(history=300, speed=200.0, autostart=True)
    await sim_fault(sim, kind="stall", seconds=1.0)
    state = (await sim_state(sim))["klines"]
    assert state["holding"] == "stalled"
    held = state["position"]
    deadline = time.monotonic() + TIMEOUT
    while (await sim_state(sim))["klines"]["position"] <= held:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_looping_replay_never_leaves_a_dead_market_and_keeps_prices_continuous(make_sim: Any) -> None:
    """`--loop` (the compose stack's simulator): after the last candle the series comes back mirrored
    in time, on the next candle times, starting at the price where it stopped; memory stays bounded."""
    history = len(SERIES.candles) - 3
    sim = await make_sim(history=history, speed=200.0, loop=True)
    closes: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{sim.ws_url}/ws/btcusdt@kline_1d") as ws:
        while len(closes) < 8:
            k = json.loads((await ws.receive(timeout=TIMEOUT)).data)["k"]
            if k["x"]:
                closes.append(k)
    recorded = SERIES.candles
    last = recorded[-1]
    # Three recorded closes, then the mirrored lap: newest candle first, open and close swapped.
    assert [(c["t"], Decimal(c["c"])) for c in closes[:3]] == [(c.open_time, c.close) for c in recorded[-3:]]
    day = 86_400_000
    for i, k in enumerate(closes[3:]):
        source = recorded[-1 - i]
        assert k["t"] == last.open_time + (i + 1) * day and k["T"] == k["t"] + day - 1
        assert (Decimal(k["o"]), Decimal(k["c"])) == (source.close, source.open)
        assert (Decimal(k["h"]), Decimal(k["l"])) == (source.high, source.low)
    for before, after in itertools.pairwise(closes):
        assert after["t"] == before["T"] + 1
    assert Decimal(closes[3]["o"]) == Decimal(closes[2]["c"])  # no price jump at the turn
    state = (await sim_state(sim))["klines"]
    assert state["replay_done"] is False and state["laps"] == 1 and state["loop"] is True


def test_looping_replay_keeps_only_the_newest_two_laps() -> None:
    # Candles 170-179 hold Binance's short 2018-02-08 candle (an outage): laps must stay on the grid.
    series = KlineSeries(SERIES.symbol, SERIES.interval, SERIES.candles[170:180])
    assert any(c.close_time - c.open_time != 86_399_999 for c in series.candles)
    replay = KlineReplay(series, history=10, speed=1.0, progress_frames=0, hub=Hub(queue_size=10, stalled_until=lambda: 0.0), market=None,
                         generator=None, loop=True)  # fmt: skip
    times = [c.open_time for c in replay.candles]
    for lap in range(1, 6):
        replay._append_lap()
        replay.position = len(replay.candles)  # as the replay loop leaves it after the lap's last close
        assert len(replay.candles) <= 20 and replay.laps == lap
        times = [c.open_time for c in replay.candles]
        assert all(b - a == 86_400_000 for a, b in itertools.pairwise(times))
        assert all(c.open_time <= c.close_time < c.open_time + 86_400_000 for c in replay.candles)
        closes = [c.close for c in replay.candles[-10:]]
        if lap % 2:  # mirrored: newest first, each candle's open is the recorded close
            assert closes == [c.open for c in reversed(series.candles)]
        else:
            assert closes == [c.close for c in series.candles]


async def test_closing_frames_are_timed_before_their_write_only_when_asked(make_sim: Any) -> None:
    """With record_arrivals each closing frame's write is timed on the host's monotonic clock, before
    and after, both before the client read it (tick -> order's start); progress frames and a simulator
    not asked are not timed, and the times are served with the order arrivals."""
    history = len(SERIES.candles) - 6
    recording = await make_sim(history=history, speed=50.0, record_arrivals=True)
    quiet = await make_sim(history=history, speed=50.0)
    received: dict[int, int] = {}
    async with aiohttp.ClientSession() as s:
        for sim in (recording, quiet):
            async with s.ws_connect(f"{sim.ws_url}/ws/btcusdt@kline_1d") as ws:
                closes = 0
                while closes < 2:
                    k = json.loads((await ws.receive(timeout=TIMEOUT)).data)["k"]
                    if k["x"]:
                        closes += 1
                        if sim is recording:
                            received.setdefault(k["t"], time.monotonic_ns())
        async with s.get(f"{recording.rest_url}/sim/orders/arrivals") as r:
            served = (await r.json())["closes"]
    replay = recording.exchange.klines
    assert served == {k: list(v) for k, v in recording.exchange.hub.sent_at.items()}
    assert sorted(served) == sorted(replay.close_key(t) for t in received)
    for t, at in received.items():
        before, after = served[replay.close_key(t)]
        assert 0 < before < after < at  # written whole: on the client's socket when the write returned
    assert quiet.exchange.hub.sent_at == {}
