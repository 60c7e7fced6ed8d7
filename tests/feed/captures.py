"""Load the recorded Binance sessions in tests/data/binance as one time-ordered list of steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tradefleet.domain.market import DepthSnapshot

DATA = Path(__file__).resolve().parent.parent / "data" / "binance"
CAPTURES = ("2021-10-12", "2021-08-14")


@dataclass(frozen=True)
class Step:
    recv_ts: float
    frame: str | None = None  # a raw websocket frame, exactly as recorded
    snapshot: DepthSnapshot | None = None  # a REST snapshot received at recv_ts


def load(capture: str) -> list[Step]:
    rest = json.loads((DATA / f"capture_{capture}_rest_depth.json").read_text())
    steps: list[Step] = []
    with (DATA / f"capture_{capture}_ws.jsonl").open() as f:
        for line in f:
            record = json.loads(line)
            if "_meta" in record:
                continue
            steps.append(Step(record["recv_ts"], frame=json.dumps(record["msg"], separators=(",", ":"))))
    for symbol, entry in rest.items():
        body = entry["response"]
        snap = DepthSnapshot(symbol, body["lastUpdateId"], [tuple(x) for x in body["bids"]],
                             [tuple(x) for x in body["asks"]])  # fmt: skip
        steps.append(Step(entry["recv_ts"], snapshot=snap))
    steps.sort(key=lambda s: s.recv_ts)
    return steps


def symbols(capture: str) -> list[str]:
    return list(json.loads((DATA / f"capture_{capture}_rest_depth.json").read_text()))
