"""BookKeeper inside a synchronous core: snapshot fetches run in the background and post their
result back; gaps and reconnects rebuild the book; REST errors are retried, honouring retry_after.

The REST edge here is a scripted `MarketRest` (our own seam, a Protocol); the fault-matrix tests run
the same keeper against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

from tests.feed.wsserver import wait_until
from tradefleet.domain.market import DepthDiff, DepthSnapshot, StreamStatus
from tradefleet.domain.models import Candle, Side
from tradefleet.engine.book_keeper import BookKeeper, SnapshotFailed, SnapshotReady
from tradefleet.errors import PermanentError, RateLimited
from tradefleet.metrics import BotMetrics
from tradefleet.ports import MarketRest, SymbolRules

D = Decimal


class ScriptedRest:
    """One scripted answer per call, in order: a snapshot, an exception to raise, or a
    `(asyncio.Event, answer)` pair that waits for the event first."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.calls: list[float] = []

    async def fetch_depth_snapshot(self, market_id: str, limit: int) -> DepthSnapshot:
        self.calls.append(time.monotonic())
        item = self.script.pop(0)
        if isinstance(item, tuple):
            gate, item = item
            await gate.wait()
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, DepthSnapshot)
        return item

    async def fetch_candles(self, symbol: str, interval: str, since_ms: int, until_ms: int) -> list[Candle]:
        raise NotImplementedError

    async def fetch_symbol_rules(self, symbol: str) -> SymbolRules:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def snap(last: int, bid: str = "100", ask: str = "101") -> DepthSnapshot:
    return DepthSnapshot("BTCUSDT", last, [(bid, "1"), ("99", "2")], [(ask, "1"), ("102", "2")])


def diff(first: int, final: int, bids=(), asks=()) -> DepthDiff:
    return DepthDiff("BTCUSDT", 1_700_000_000_000 + final, first, final, list(bids), list(asks))


class Core:
    """The engine's core loop in miniature: everything goes through one synchronous handle()."""

    def __init__(self, rest: MarketRest, metrics: BotMetrics, spawn=None) -> None:
        self.changes = 0
        self.posted: list[object] = []
        self.keeper = BookKeeper(market_id="BTCUSDT", rest=rest, depth_limit=1000, metrics=metrics,
                                 post=self.handle, spawn=spawn, retry_base_s=0.05, retry_max_s=0.2,
                                 permanent_retry_s=0.05)  # fmt: skip

    def handle(self, event: object) -> None:
        self.posted.append(event)
        if self.keeper.handle(event):
            self.changes += 1


def sample(metrics: BotMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def test_first_diff_triggers_snapshot_then_book_syncs_and_reports_top_change(
    metrics: BotMetrics,
) -> None:
    core = Core(ScriptedRest(snap(10)), metrics)
    k = core.keeper
    core.handle(StreamStatus("connected"))
    core.handle(diff(9, 11, bids=[("100", "5")]))
    assert not k.in_sync and k.top() is None and k.levels(Side.BUY, 5) == []
    await wait_until(lambda: k.in_sync, what="sync")
    assert k.top() == (D(100), D(5), D(101), D(1)) and k.last_update_id == 11
    assert core.changes == 1
    assert k.levels(Side.BUY, 5) == [(D(101), D(1)), (D(102), D(2))]
    core.handle(diff(12, 12, asks=[("101", "0")]))
    assert k.top() == (D(100), D(5), D(102), D(2)) and core.changes == 2
    assert k.last_event_time == 1_700_000_000_012
    core.handle(diff(13, 13, bids=[("50", "1")]))  # deep level: top unchanged
    assert core.changes == 2
    assert sample(metrics, "tradefleet_resyncs_total") == 1
    assert sample(metrics, "tradefleet_book_in_sync") == 1
    for u in range(14, 14 + 62):
        core.handle(diff(u, u, bids=[("60", str(u))]))
    # One apply in 16 is timed (an observe costs about a microsecond on the hot path).
    assert sample(metrics, "tradefleet_operation_latency_seconds_count", {"operation": "book_apply"}) == 4


async def test_resyncs_when_sequence_gap_then_book_matches_new_snapshot(metrics: BotMetrics) -> None:
    core = Core(ScriptedRest(snap(10), snap(20, bid="100.5")), metrics)
    k = core.keeper
    core.handle(diff(11, 11))
    await wait_until(lambda: k.in_sync, what="first sync")
    core.handle(diff(15, 21, asks=[("101", "7")]))  # 12..14 never arrived
    assert not k.in_sync and k.top() is None
    assert sample(metrics, "tradefleet_sequence_gaps_total") == 1
    assert sample(metrics, "tradefleet_book_in_sync") == 0
    await wait_until(lambda: k.in_sync, what="resync")
    assert k.last_update_id == 21  # snapshot 20 + the kept diff that revealed the gap
    assert k.top() == (D("100.5"), D(1), D(101), D(7))
    assert sample(metrics, "tradefleet_resyncs_total") == 2


async def test_reconnect_discards_book_and_ignores_snapshot_fetched_for_old_stream(
    metrics: BotMetrics,
) -> None:
    gate = asyncio.Event()
    rest = ScriptedRest((gate, snap(10)), snap(50))
    tasks: list[asyncio.Task[None]] = []

    def spawn_uncancellable(coro) -> None:  # an engine spawn that hands back no task to cancel
        tasks.append(asyncio.ensure_future(coro))

    core = Core(rest, metrics, spawn=spawn_uncancellable)
    k = core.keeper
    core.handle(diff(9, 11))  # fetch #1 starts and waits on the gate
    await wait_until(lambda: len(rest.calls) == 1, what="first fetch")
    core.handle(StreamStatus("connected"))  # new stream: fetch #1 is for a stream that is gone
    core.handle(diff(49, 51))  # fetch #2
    await wait_until(lambda: k.in_sync, what="sync on the new stream")
    gate.set()  # fetch #1 now delivers its stale snapshot
    await wait_until(lambda: all(t.done() for t in tasks), what="both fetches finished")
    await asyncio.sleep(0)  # let a posted stale result, if any, be handled
    old = [e for e in core.posted if isinstance(e, SnapshotReady) and e.snapshot.last_update_id == 10]
    assert old == [] or old[0].generation != k._generation  # either never posted or tagged stale
    assert k.in_sync and k.last_update_id == 51 and len(rest.calls) == 2  # ignored: no refetch


async def test_rate_limited_snapshot_waits_retry_after_and_counts_error(metrics: BotMetrics) -> None:
    rest = ScriptedRest(RateLimited("429", retry_after=0.3), snap(10))
    core = Core(rest, metrics)
    core.handle(diff(10, 11))
    await wait_until(lambda: core.keeper.in_sync, what="sync after 429")
    assert rest.calls[1] - rest.calls[0] >= 0.3  # never earlier than the exchange asked
    assert sample(metrics, "tradefleet_rest_errors_total", {"kind": "RateLimited"}) == 1


async def test_permanent_error_is_reported_and_retried_slowly(metrics: BotMetrics) -> None:
    core = Core(ScriptedRest(PermanentError("bad symbol"), snap(10)), metrics)
    core.handle(diff(10, 11))
    await wait_until(lambda: core.keeper.in_sync, what="sync after a permanent error")
    assert [e for e in core.posted if isinstance(e, SnapshotFailed)]
    assert sample(metrics, "tradefleet_rest_errors_total", {"kind": "PermanentError"}) == 1


async def test_crossed_snapshot_is_refused_and_refetched(metrics: BotMetrics) -> None:
    core = Core(ScriptedRest(snap(10, bid="105"), snap(10)), metrics)
    core.handle(diff(10, 11))
    await wait_until(lambda: core.keeper.in_sync, what="sync after a crossed snapshot")
    assert core.keeper.top() == (D(100), D(1), D(101), D(1))


async def test_malformed_level_in_diff_counts_and_resyncs(metrics: BotMetrics) -> None:
    core = Core(ScriptedRest(snap(10), snap(12)), metrics)
    core.handle(diff(11, 11))
    await wait_until(lambda: core.keeper.in_sync, what="sync")
    core.handle(diff(12, 12, bids=[("99", "NaN")]))
    assert not core.keeper.in_sync
    assert sample(metrics, "tradefleet_malformed_frames_total") == 1
    core.handle(diff(13, 13))
    await wait_until(lambda: core.keeper.in_sync, what="resync")
    assert core.keeper.last_update_id == 13


def _keeper(**kw: object) -> BookKeeper:
    return BookKeeper(market_id="BTCUSDT", rest=ScriptedRest(), depth_limit=10, metrics=BotMetrics(),
                      post=lambda e: None, spawn=lambda c: c.close(), **kw)  # type: ignore[arg-type]  # fmt: skip


def test_the_book_path_is_said_once_and_a_missing_native_module_is_a_warning(monkeypatch, caplog) -> None:
    import logging

    from tradefleet.engine import book_keeper

    monkeypatch.setattr(book_keeper, "_announced", False)
    monkeypatch.setattr(book_keeper, "NATIVE_AVAILABLE", False)  # as on a machine without cargo
    caplog.set_level(logging.INFO, logger="tradefleet.book")
    keepers = [_keeper(native=False) for _ in range(3)]
    said = [r for r in caplog.records if getattr(r, "event", None) == "book_path"]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert said[0].path == "pure" and "not installed" in said[0].detail  # type: ignore[attr-defined]
    assert not any(k.native for k in keepers)


def test_a_native_module_built_for_another_interface_is_not_used_and_the_log_says_why(tmp_path) -> None:
    """pip upgraded tradefleet but not tradefleet-native: the old module is left alone (pure path)."""
    import os
    import subprocess
    import sys

    (tmp_path / "tradefleet_native.py").write_text("API = 1\n")  # an older build's interface
    code = (
        "import json, sys; from tradefleet.logs import setup_logging; setup_logging(stream=sys.stderr)\n"
        "from tradefleet.domain import native_book as n\n"
        "from tradefleet.engine.book_keeper import BookKeeper\n"
        "from tradefleet.metrics import BotMetrics\n"
        "k = BookKeeper(market_id='BTCUSDT', rest=None, depth_limit=10, metrics=BotMetrics(), post=print)\n"
        "print(json.dumps([n.AVAILABLE, n.UNUSABLE, k.native]))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    available, why, native = json.loads(proc.stdout.splitlines()[-1])
    assert (available, native) == (False, False)
    assert "built for API 1" in why and "pip install ./native" in why
    assert "built for API 1" in proc.stderr  # the bot's one book_path line says why
