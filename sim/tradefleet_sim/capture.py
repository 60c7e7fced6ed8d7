"""Replay of a real recorded Binance session (REST depth snapshot + combined-stream frames).

Why: a bot's book sync must work on the exchange's real bytes, not only on our generator's.
Each captured symbol becomes a market whose true book starts as the recorded REST snapshot
(`lastUpdateId` = the snapshot's). The recorded frames are then sent unchanged, in recorded
order, with the recorded pauses divided by `capture_speed`; depth diffs are also applied to the
true book, so `/sim/book` and `GET /api/v3/depth` always equal what a correct client holds.

Frames recorded before the snapshot are skipped (depth/bookTicker with `u` <= lastUpdateId, and
trades/klines received before the first kept diff): a client starts from our snapshot, exactly
as Binance documents. The first kept diff may straddle the snapshot (U <= id+1 <= u), as in the
real capture. When the frames run out the market goes quiet (`done`); nothing is looped or
invented. It refuses unknown capture names.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradefleet_sim.book import Level
from tradefleet_sim.market import SimMarket

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Frame:
    recv_ts: float
    stream: str
    data: dict[str, Any]

    @property
    def symbol(self) -> str:
        return self.stream.split("@", 1)[0].upper()


@dataclass(frozen=True)
class Capture:
    name: str
    snapshots: dict[str, dict[str, Any]]  # symbol -> REST depth body
    frames: tuple[Frame, ...]  # already filtered to what follows each snapshot
    exchange_info: Path

    @property
    def symbols(self) -> list[str]:
        return list(self.snapshots)


def _levels(rows: list[list[str]]) -> list[Level]:
    return [(Decimal(p), Decimal(q)) for p, q in rows]


def load_capture(name: str) -> Capture:
    name = name.removeprefix("capture_")
    depth_path = DATA_DIR / f"capture_{name}_rest_depth.json"
    ws_path = DATA_DIR / f"capture_{name}_ws.jsonl"
    if not depth_path.exists():
        raise ValueError(f"unknown capture {name!r}")
    snapshots = {sym: entry["response"] for sym, entry in json.loads(depth_path.read_text()).items()}
    frames: list[Frame] = []
    started: dict[str, bool] = {}
    with ws_path.open() as f:
        for line in f:
            rec = json.loads(line)
            if "_meta" in rec:
                continue
            msg = rec["msg"]
            fr = Frame(float(rec["recv_ts"]), msg["stream"], msg["data"])
            snap = snapshots.get(fr.symbol)
            if snap is None:
                continue
            last_id = int(snap["lastUpdateId"])
            is_depth = fr.data.get("e") == "depthUpdate"
            if is_depth or "@bookTicker" in fr.stream:
                if int(fr.data["u"]) <= last_id:
                    continue
                started[fr.symbol] = started.get(fr.symbol, False) or is_depth
                if not is_depth and not started[fr.symbol]:
                    continue
            elif not started.get(fr.symbol):
                continue
            frames.append(fr)
    return Capture(name, snapshots, tuple(frames), DATA_DIR / f"exchangeInfo_{name}_trimmed.json")


class CaptureReplay:
    def __init__(self, capture: Capture, markets: dict[str, SimMarket], *, speed: float) -> None:
        self.capture = capture
        self.markets = markets
        self.speed = speed
        self.position = 0
        self.started = False
        self._running = asyncio.Event()

    def seed(self) -> None:
        for sym, snap in self.capture.snapshots.items():
            self.markets[sym].seed(_levels(snap["bids"]), _levels(snap["asks"]), int(snap["lastUpdateId"]))

    @property
    def done(self) -> bool:
        return self.position >= len(self.capture.frames)

    def start(self) -> None:
        self.started = True
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def on_subscribe(self, stream: str) -> None:
        if not self.started and stream.split("@", 1)[0].upper() in self.capture.snapshots:
            self.start()

    async def run(self) -> None:
        frames = self.capture.frames
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = frames[0].recv_ts if frames else 0.0
        while not self.done:
            await self._running.wait()
            fr = frames[self.position]
            if self.speed > 0:
                due = t0 + (fr.recv_ts - first) / self.speed
                await asyncio.sleep(max(0.0, due - loop.time()))
            else:
                await asyncio.sleep(0)
            if not self._running.is_set():
                pause_start = loop.time()
                await self._running.wait()
                t0 += loop.time() - pause_start
            self._send(fr)
            self.position += 1

    def _send(self, fr: Frame) -> None:
        market = self.markets[fr.symbol]
        d = fr.data
        if d.get("e") == "depthUpdate":
            market.apply(_levels(d["b"]), _levels(d["a"]), first=int(d["U"]), last=int(d["u"]), payload=d)
        else:
            market.hub.publish(fr.stream, d)

    def state(self) -> dict[str, Any]:
        return {
            "name": self.capture.name,
            "symbols": self.capture.symbols,
            "frames": len(self.capture.frames),
            "position": self.position,
            "started": self.started,
            "replay_done": self.done,
        }
