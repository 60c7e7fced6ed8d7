"""The fault matrix: each fault injected over real sockets by the exchange simulator, each followed
by a local book that equals the simulator's TRUE book (`GET /sim/book`) level for level; on both
book paths (`native`: pure and native, tests/feed/conftest.py)."""

from __future__ import annotations

import pytest

from tests.feed.harness import market_path
from tests.feed.wsserver import wait_until
from tests.plugins.sim import MakeSim, sim_fault
from tradefleet.metrics import BotMetrics

SIM = {"depth_rate": 50.0, "levels_per_side": 200}


async def test_book_matches_true_book_without_faults(
    make_sim: MakeSim, metrics: BotMetrics, native: bool
) -> None:
    sim = await make_sim(**SIM)
    async with market_path(sim, metrics, native=native) as p:
        await p.wait_in_sync()
        first = await p.assert_matches_true_book()
        await wait_until(lambda: p.keeper.last_update_id > first, 30, "the stream moves on")
        second = await p.assert_matches_true_book()
        assert second > first
        assert p.counter("tradefleet_resyncs_total") == 1
        assert p.counter("tradefleet_sequence_gaps_total") == 0
        assert p.counter("tradefleet_book_in_sync") == 1


async def test_dropped_connection_reconnects_and_rebuilds_book(
    make_sim: MakeSim, metrics: BotMetrics, native: bool
) -> None:
    sim = await make_sim(**SIM)
    async with market_path(sim, metrics, native=native) as p:
        await p.wait_in_sync()
        await sim_fault(sim, kind="drop")
        await wait_until(lambda: p.feed.connections >= 2 and p.counter("tradefleet_resyncs_total") >= 2,
                         30, "reconnect and resync")  # fmt: skip
        assert p.counter("tradefleet_reconnects_total", {"reason": "closed"}) >= 1
        await p.wait_in_sync()
        await p.assert_matches_true_book()


async def test_sequence_gap_forces_resync_then_book_matches(
    make_sim: MakeSim, metrics: BotMetrics, native: bool
) -> None:
    sim = await make_sim(**SIM)
    async with market_path(sim, metrics, native=native) as p:
        await p.wait_in_sync()
        await sim_fault(sim, kind="gap", diffs=3, symbol="BTCUSDT")
        await wait_until(lambda: p.counter("tradefleet_sequence_gaps_total") >= 1, 30, "gap detected")
        await wait_until(lambda: p.counter("tradefleet_resyncs_total") >= 2, 30, "resync")
        assert p.feed.connections == 1  # a gap is the book's business, not the connection's
        await p.wait_in_sync()
        await p.assert_matches_true_book()


async def test_malformed_and_truncated_frames_are_skipped_and_book_stays_true(
    make_sim: MakeSim, metrics: BotMetrics, native: bool
) -> None:
    sim = await make_sim(**SIM)
    async with market_path(sim, metrics, native=native) as p:
        await p.wait_in_sync()
        await sim_fault(sim, kind="malformed", count=6, shape="mixed")
        await wait_until(
            lambda: p.counter("tradefleet_malformed_frames_total") >= 6, 30, "6 malformed frames"
        )
        await p.assert_matches_true_book()
        assert p.feed.connections == 1
        assert p.counter("tradefleet_resyncs_total") == 1  # skipped garbage costs no resync


async def test_stalled_stream_is_declared_stale_then_book_rebuilt(
    make_sim: MakeSim, metrics: BotMetrics, native: bool
) -> None:
    sim = await make_sim(**SIM)
    async with market_path(sim, metrics, native=native, stale_after_s=0.5) as p:
        await p.wait_in_sync()
        await sim_fault(sim, kind="stall", seconds=2)
        await wait_until(lambda: p.counter("tradefleet_stale_stream_total") >= 1, 30, "stale declared")
        await wait_until(lambda: p.feed.connections >= 2, 30, "reconnected")
        await p.wait_in_sync()
        await p.assert_matches_true_book()
        assert p.counter("tradefleet_reconnects_total", {"reason": "stale"}) >= 1


@pytest.mark.parametrize(("status", "kind"), [(429, "RateLimited"), (418, "RateLimited"),
                                              (500, "ExchangeUnavailable"), (503, "ExchangeUnavailable")])  # fmt: skip
async def test_rest_errors_on_snapshot_are_retried_then_book_matches(
    make_sim: MakeSim, metrics: BotMetrics, status: int, kind: str, native: bool
) -> None:
    sim = await make_sim(**SIM, startup_faults=({"kind": "fail_rest", "status": status, "count": 2,
                                                "retry_after": 1},))  # fmt: skip
    async with market_path(sim, metrics, native=native) as p:
        await p.wait_in_sync()
        assert p.counter("tradefleet_rest_errors_total", {"kind": kind}) == 2
        await p.assert_matches_true_book()


async def test_server_shutdown_moves_to_a_new_connection_and_rebuilds(
    make_sim: MakeSim, metrics: BotMetrics, native: bool
) -> None:
    sim = await make_sim(**SIM)
    async with market_path(sim, metrics, native=native, reconnect_base_s=30.0, reconnect_max_s=30.0) as p:
        await p.wait_in_sync()
        await sim_fault(sim, kind="server_shutdown", close_after=5.0)
        # We leave at once (no backoff, not waiting for the server to cut us).
        await wait_until(lambda: p.feed.connections >= 2, 4.5, "reconnect before the server closes")
        assert p.counter("tradefleet_reconnects_total", {"reason": "server_shutdown"}) == 1
        assert [s.kind for s in p.statuses][:4] == [
            "connected",
            "server_shutdown",
            "disconnected",
            "connected",
        ]
        await p.wait_in_sync()
        await p.assert_matches_true_book()
