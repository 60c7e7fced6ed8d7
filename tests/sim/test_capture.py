"""Replay of the real 2021 captures: the recorded bytes, and a true book a correct client matches."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tests.plugins.sim import sim_book, sim_state
from tradefleet_sim.capture import load_capture

TIMEOUT = 30


def apply(book: dict[str, dict[Decimal, Decimal]], d: dict[str, Any]) -> None:
    for side in ("b", "a"):
        for p, q in d[side]:
            if Decimal(q) == 0:
                book[side].pop(Decimal(p), None)
            else:
                book[side][Decimal(p)] = Decimal(q)


def check_ticker(book: dict[str, dict[Decimal, Decimal]], d: dict[str, Any]) -> int:
    assert max(book["b"]) == Decimal(d["b"]) and book["b"][Decimal(d["b"])] == Decimal(d["B"])
    assert min(book["a"]) == Decimal(d["a"]) and book["a"][Decimal(d["a"])] == Decimal(d["A"])
    return 1


@pytest.mark.parametrize(("name", "symbol"), [("2021-10-12", "NKNUSDT"), ("2021-08-14", "FTMUSDT")])
async def test_client_following_the_docs_ends_with_the_true_book_and_tickers_match(
    make_sim: Any, name: str, symbol: str
) -> None:
    sim = await make_sim(replay_capture=name, capture_speed=0, symbols=())
    s_low = symbol.lower()
    async with aiohttp.ClientSession() as s:
        # Snapshot first (the replay has not started: nobody subscribed yet), then the stream.
        async with s.get(f"{sim.rest_url}/api/v3/depth?symbol={symbol}&limit=5000") as r:
            snap = await r.json()
        book = {"b": {Decimal(p): Decimal(q) for p, q in snap["bids"]},
                "a": {Decimal(p): Decimal(q) for p, q in snap["asks"]}}  # fmt: skip
        last = snap["lastUpdateId"]
        url = f"{sim.ws_url}/stream?streams={s_low}@depth@100ms/{s_low}@bookTicker"
        tickers_checked = 0
        tickers: dict[int, dict[str, Any]] = {}
        first = True
        async with s.ws_connect(url) as ws:
            while True:
                state = await sim_state(sim)
                if state["capture"]["replay_done"] and sim.exchange.hub.backlog() == 0:
                    # Drain whatever is still in flight, then stop.
                    try:
                        msg = await ws.receive(timeout=1.0)
                    except TimeoutError:
                        break
                else:
                    msg = await ws.receive(timeout=TIMEOUT)
                f = json.loads(msg.data)
                d = f["data"]
                if f["stream"].endswith("@bookTicker"):
                    # Real bookTicker is per update and often arrives before the 100 ms diff that
                    # contains its update id: check it when the book reaches exactly that id.
                    tickers[d["u"]] = d
                    if d["u"] == last:
                        tickers_checked += check_ticker(book, d)
                    continue
                if d["u"] <= last:
                    continue
                if first:
                    assert d["U"] <= last + 1 <= d["u"]
                    first = False
                else:
                    assert d["U"] == last + 1
                apply(book, d)
                last = d["u"]
                if last in tickers:
                    tickers_checked += check_ticker(book, tickers.pop(last))
    truth = await sim_book(sim, symbol)
    assert truth["lastUpdateId"] == last
    assert {Decimal(p): Decimal(q) for p, q in truth["bids"]} == book["b"]
    assert {Decimal(p): Decimal(q) for p, q in truth["asks"]} == book["a"]
    assert tickers_checked >= 3


def test_capture_loader_keeps_only_frames_after_each_snapshot() -> None:
    cap = load_capture("2021-10-12")
    assert set(cap.symbols) == {"NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"}
    nkn = [f for f in cap.frames if f.stream == "nknusdt@depth@100ms"]
    assert nkn[0].data["U"] == 499869753  # the straddling/older events before the snapshot are dropped
    assert all(f.data["u"] > 499869752 for f in nkn)


async def test_capture_rules_come_from_the_recorded_exchange_info(make_sim: Any) -> None:
    sim = await make_sim(replay_capture="2021-08-14", symbols=())
    rules = sim.exchange.rules("FTMUSDT")
    assert rules.tick_size == Decimal("0.00001") and rules.step_size == Decimal("0.1")
