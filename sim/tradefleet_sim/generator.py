"""A random-walk order book that looks like a busy Binance spot book (BTCUSDT-like by default).

Why: tests, the demo and benchmarks need an endless, realistic diff stream without a network.
Each diff changes about `changes_per_side` levels per side (20 by default, like a 100 ms
BTCUSDT diff), mostly near the top; the mid wanders a few ticks at a time; the book keeps about
`levels_per_side` levels whose spacing widens with depth, so 1000 levels span a few percent of
the price, as on the real exchange. `recentre` moves the book onto a given price (the kline
replay puts the mid on each candle's close before that candle closes).

What it refuses to do: touch sockets, clocks or update ids. It only proposes level changes
(price, qty; qty 0 deletes) computed from the current `Book`; `SimMarket` applies and publishes
them. Everything is integer ticks/steps inside, `Decimal` at the boundary, so prices are always
exact multiples of the tick size.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from tradefleet_sim.book import Book, BookSide, Level

Changes = tuple[list[Level], list[Level]]  # (bid changes, ask changes)


@dataclass(frozen=True)
class GeneratorShape:
    """How the generated book looks. Defaults give a BTCUSDT-like book at any price."""

    levels_per_side: int = 1000
    changes_per_side: int = 20
    span: float = 0.04  # the deepest level sits about this fraction of the price from the mid
    level_notional: float = 4000.0  # median quote value resting on one level
    top_notional: float = 150_000.0  # after a re-centre, the best levels hold about this much
    move_probability: float = 0.35  # chance that the mid moves in one diff
    max_move_ticks: int = 3
    hole_levels: int = 40


class BookGenerator:
    def __init__(
        self, tick: Decimal, step: Decimal, rng: random.Random, shape: GeneratorShape | None = None
    ) -> None:
        self.tick = tick
        self.step = step
        self.rng = rng
        self.shape = shape or GeneratorShape()
        self.mid_ticks = 0  # best bid sits at or below this tick, best ask above it
        self._tick_f = float(tick)
        self._step_f = float(step)

    # -- conversions -------------------------------------------------------------------------
    def price(self, ticks: int) -> Decimal:
        return Decimal(ticks) * self.tick

    def ticks(self, price: Decimal) -> int:
        return int((price / self.tick).to_integral_value(rounding=ROUND_FLOOR))

    def qty(self, notional: float) -> Decimal:
        # Hot path (dozens of calls per diff): floats for the draw, one Decimal at the end.
        mid = max(self.mid_ticks, 1) * self._tick_f
        steps = max(1, int(notional / mid * math.exp(self.rng.gauss(0.0, 1.1)) / self._step_f))
        return Decimal(steps) * self.step

    def _gap_growth(self) -> float:
        """Mean gap (in ticks) grows linearly with depth so `levels_per_side` span `span`."""
        n = self.shape.levels_per_side
        span_ticks = self.shape.span * self.mid_ticks
        return max(0.0, (span_ticks - n) / (n * n / 2))

    def _gap(self, k: int) -> int:
        mean = 1.0 + self._gap_growth() * k
        return 1 if mean <= 1.0 else max(1, round(self.rng.expovariate(1.0 / mean)))

    # -- seeding -----------------------------------------------------------------------------
    def seed(self, mid: Decimal) -> Changes:
        """A full book around `mid` (best bid = mid rounded down to a tick, ask one tick above)."""
        self.mid_ticks = self.ticks(mid)
        bids: list[Level] = []
        asks: list[Level] = []
        b, a = self.mid_ticks, self.mid_ticks + 1
        for k in range(self.shape.levels_per_side):
            bids.append((self.price(b), self.qty(self.shape.level_notional)))
            asks.append((self.price(a), self.qty(self.shape.level_notional)))
            b -= self._gap(k)
            a += self._gap(k)
            if b <= 0:
                break
        return bids, asks

    # -- one diff ----------------------------------------------------------------------------
    def next_diff(self, book: Book) -> Changes:
        """About `changes_per_side` changes per side: a mid move, top refresh, random churn."""
        rng = self.rng
        if rng.random() < self.shape.move_probability:
            self.mid_ticks = max(
                2, self.mid_ticks + rng.randint(-self.shape.max_move_ticks, self.shape.max_move_ticks)
            )
        bid_ch: dict[Decimal, Decimal] = {}
        ask_ch: dict[Decimal, Decimal] = {}
        self._uncross(book, bid_ch, ask_ch)
        self._churn(book.bids, bid_ch, sign=-1)
        self._churn(book.asks, ask_ch, sign=+1)
        # Someone always quotes at the touch: keep a level within a tick of the mid.
        best_bid, best_ask = self.price(self.mid_ticks), self.price(self.mid_ticks + 1)
        if _best(book.bids, bid_ch, bids=True) < best_bid - self.tick:
            bid_ch[best_bid] = self.qty(self.shape.level_notional)
        if _best(book.asks, ask_ch, bids=False) > best_ask + self.tick:
            ask_ch[best_ask] = self.qty(self.shape.level_notional)
        return sorted(bid_ch.items(), reverse=True), sorted(ask_ch.items())

    def _uncross(self, book: Book, bid_ch: dict[Decimal, Decimal], ask_ch: dict[Decimal, Decimal]) -> None:
        for p in book.bids.prices_better_than(self.price(self.mid_ticks + 1), inclusive=True):
            bid_ch[p] = Decimal(0)
        for p in book.asks.prices_better_than(self.price(self.mid_ticks), inclusive=True):
            ask_ch[p] = Decimal(0)

    def _churn(self, side: BookSide, changes: dict[Decimal, Decimal], *, sign: int) -> None:
        """Random updates, deletions and insertions, heavily weighted to the top of the book."""
        rng = self.rng
        levels = side.levels(64)  # the churn picks level k ~ Exp(mean 12): 64 is plenty
        budget = self.shape.changes_per_side - len(changes)
        target = self.shape.levels_per_side
        size = len(side) + sum(
            1 if q > 0 and p not in side.qty else -1 if q == 0 and p in side.qty else 0
            for p, q in changes.items()
        )
        # Depth maintenance first, so the book neither drains nor bloats over millions of diffs.
        if size < target and budget > 0:
            worst = side.worst_prices(1)
            edge = self.ticks(worst[0]) if worst else self.mid_ticks + (1 if sign > 0 else 0)
            for k in range(min(budget // 2, target - size)):
                edge += sign * self._gap(size + k)
                if edge <= 0:
                    break
                changes[self.price(edge)] = self.qty(self.shape.level_notional)
                budget -= 1
        elif size > target + 20:
            for p in side.worst_prices(min(budget // 2, size - target)):
                changes[p] = Decimal(0)
                budget -= 1
        attempts = 4 * self.shape.changes_per_side
        while budget > 0 and levels and attempts > 0:
            attempts -= 1
            k = min(int(rng.expovariate(1 / 12.0)), len(levels) - 1)
            price, _ = levels[k]
            if price in changes:  # already changed in this diff (perhaps deleted as crossing): leave it
                continue
            budget -= 1
            roll = rng.random()
            if roll < 0.72:
                changes[price] = self.qty(self.shape.level_notional)
            elif roll < 0.86 and k > 0:
                changes[price] = Decimal(0)
            else:  # a new level one gap deeper than level k, if that price is free
                p = price + sign * self.tick * self._gap(k)
                if p > 0 and p not in side.qty and p not in changes:
                    changes[p] = self.qty(self.shape.level_notional)

    # -- re-centre -----------------------------------------------------------------------------
    def recentre(self, book: Book, price: Decimal) -> Changes:
        """Move the book onto `price`: best bid at `price`, best ask one tick above, deep top
        levels so a market order of ordinary size fills at the touch, depth restored."""
        self.mid_ticks = max(2, self.ticks(price))
        bid_ch: dict[Decimal, Decimal] = {}
        ask_ch: dict[Decimal, Decimal] = {}
        self._uncross(book, bid_ch, ask_ch)
        for i in range(5):
            bid_ch[self.price(self.mid_ticks - i)] = self.qty(self.shape.top_notional / (1 + i))
            ask_ch[self.price(self.mid_ticks + 1 + i)] = self.qty(self.shape.top_notional / (1 + i))
        for side, changes, sign in ((book.bids, bid_ch, -1), (book.asks, ask_ch, 1)):
            self._refill(side, changes, sign)
        return sorted(bid_ch.items(), reverse=True), sorted(ask_ch.items())

    def _refill(self, side: BookSide, changes: dict[Decimal, Decimal], sign: int) -> None:
        """After a jump one side may have a hole between the new touch and the old levels (or no
        levels at all): fill the hole with the usual widening spacing, then trim or extend the
        deep end back to the target depth."""
        top = sorted((p for p, q in changes.items() if q > 0), reverse=sign < 0)
        rest = [p for p, _ in side.levels() if p not in changes]  # best first
        # Levels stranded far from the new price by a big move (beyond 3 spans) are withdrawn.
        far = self.shape.span * 3 * self.mid_ticks
        stranded = [p for p in rest if abs(self.ticks(p) - self.mid_ticks) > far]
        for p in stranded:
            changes[p] = Decimal(0)
        if stranded:
            rest = rest[: len(rest) - len(stranded)]  # they are the deepest, at the end
        target = self.shape.levels_per_side
        edge = self.ticks(top[-1])
        k = len(top)
        stop = self.ticks(rest[0]) if rest else None
        # A hole left by a jump is filled sparsely (at most `hole_levels` levels): a dense fill
        # would turn every re-centre into a diff of thousands of levels.
        hole = abs(stop - edge) if stop is not None else 0
        min_gap = hole // self.shape.hole_levels if stop is not None else 0
        while k < target:
            nxt = edge + sign * max(self._gap(k), min_gap)
            if nxt <= 0 or (stop is not None and (nxt - stop) * sign >= 0):
                break
            changes[self.price(nxt)] = self.qty(self.shape.level_notional)
            edge, k = nxt, k + 1
        total = k + len(rest)
        if total > target:
            for p in rest[len(rest) - (total - target) :]:
                changes[p] = Decimal(0)
            return
        edge = self.ticks(rest[-1]) if rest else edge
        # The deep end regrows by at most a few hundred levels per re-centre (the random walk's
        # depth maintenance does the rest), for the same reason.
        target = min(target, total + 5 * self.shape.hole_levels)
        while total < target:
            edge += sign * self._gap(total)
            if edge <= 0:
                break
            changes[self.price(edge)] = self.qty(self.shape.level_notional)
            total += 1


def _best(side: BookSide, changes: dict[Decimal, Decimal], *, bids: bool) -> Decimal:
    """Best price of `side` once `changes` are applied."""
    added = [p for p, q in changes.items() if q > 0]
    kept = next((p for p, _ in side.levels(len(changes) + 1) if changes.get(p) != 0), None)
    candidates = added + ([kept] if kept is not None else [])
    if not candidates:
        return Decimal(0) if bids else Decimal("Infinity")
    return max(candidates) if bids else min(candidates)
