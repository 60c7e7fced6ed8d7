"""Realistic Binance depth diffs for the ingest benchmark: a random-walk book around a mid price,
about 20 bid and 20 ask level changes per diff (new levels, updates and deletions near the touch and
deeper), 8-decimal strings as Binance sends them, contiguous update ids, never crossed.

Deterministic for a seed, so every consumer in one run sees the very same stream."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

TICK_CENTS = 1  # 0.01 USDT


def _price(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}000000"


def _qty(rng: random.Random) -> str:
    return f"{rng.randint(1, 500_000) / 100_000:.8f}"


@dataclass
class Stream:
    snapshot: dict[str, object]  # the /api/v3/depth body at the stream's start
    diffs: list[dict[str, object]]  # depthUpdate payloads, U/u contiguous after the snapshot


class DiffGenerator:
    """The random-walk book and its diffs, one at a time (`bench.headroom` streams for minutes and
    cannot hold them all). `generate` is this, run up front."""

    def __init__(
        self, *, seed: int = 7, levels: int = 1000, changes: int = 20, symbol: str = "BTCUSDT"
    ) -> None:
        self.rng = rng = random.Random(seed)
        self.changes = changes
        self.symbol = symbol
        self.mid = 30_000_00  # in cents
        mid = self.mid
        self.bids = {mid - 1 - i: _qty(rng) for i in range(levels)}
        self.asks = {mid + 1 + i: _qty(rng) for i in range(levels)}
        self.last_id = 1_000_000
        self.count = 0

    def snapshot(self, limit: int | None = None) -> dict[str, object]:
        """The /api/v3/depth body for the book as it stands after the last diff."""
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return {
            "lastUpdateId": self.last_id,
            "bids": [[_price(p), q] for p, q in bids],
            "asks": [[_price(p), q] for p, q in asks],
        }

    def top(self) -> tuple[str, str, str, str]:
        """Best bid, its quantity, best ask, its quantity, as Binance's strings."""
        bid, ask = max(self.bids), min(self.asks)
        return _price(bid), self.bids[bid], _price(ask), self.asks[ask]

    def next(self, event_time: int | None = None) -> dict[str, object]:
        """The next depthUpdate payload (U/u contiguous with the previous one)."""
        rng, bids, asks = self.rng, self.bids, self.asks
        b: dict[int, str] = {}
        a: dict[int, str] = {}
        step = rng.choice((-2, -1, 0, 0, 0, 0, 1, 2))
        if step:
            self.mid += step
            mid = self.mid
            # Levels the move would cross are deleted in the same diff, as an exchange would report.
            for p in [p for p in bids if p >= mid]:
                del bids[p]
                b[p] = "0.00000000"
            for p in [p for p in asks if p <= mid]:
                del asks[p]
                a[p] = "0.00000000"
        mid = self.mid
        for book, out, sign in ((bids, b, -1), (asks, a, 1)):
            while len(out) < self.changes:
                depth = int(rng.expovariate(1 / 40)) + 1  # most activity near the touch
                p = mid + sign * depth
                if p in out:
                    continue
                if p in book and rng.random() < 0.3:
                    del book[p]
                    out[p] = "0.00000000"
                else:
                    q = _qty(rng)
                    book[p] = q
                    out[p] = q
        first = self.last_id + 1
        self.last_id += rng.randint(1, 3)
        when = 1_700_000_000_000 + self.count if event_time is None else event_time
        self.count += 1
        return {
            "e": "depthUpdate", "E": when, "s": self.symbol, "U": first, "u": self.last_id,
            "b": [[_price(p), q] for p, q in b.items()], "a": [[_price(p), q] for p, q in a.items()],
        }  # fmt: skip


def generate(
    n: int, *, seed: int = 7, levels: int = 1000, changes: int = 20, symbol: str = "BTCUSDT"
) -> Stream:
    gen = DiffGenerator(seed=seed, levels=levels, changes=changes, symbol=symbol)
    snapshot = gen.snapshot()
    return Stream(snapshot, [gen.next() for _ in range(n)])


def encode(payload: dict[str, object], stream: str | None) -> bytes:
    """A raw (`/ws`) frame, or a combined-stream frame when `stream` is given."""
    body = payload if stream is None else {"stream": stream, "data": payload}
    return json.dumps(body, separators=(",", ":")).encode()
