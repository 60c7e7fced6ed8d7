"""The leader lease against a real redis-server: exclusivity, takeover, fencing, outages, pauses.

Timing is never asserted: tests wait on conditions with generous timeouts, and the safety claims
are checked as facts (two replicas never both may trade; a woken replica's first check says no).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import until
from tradefleet.coord.lease import LEADER, STANDBY, UNKNOWN, LocalLease, RedisLease, lease_key
from tradefleet.metrics import BotMetrics

HOLDER_SCRIPT = Path(__file__).with_name("lease_holder.py")
KEY = lease_key("btc-usdt", "binance", "BTCUSDT")


def make(url: str, name: str, *, ttl_ms: int = 2000, renew_ms: int = 300, **kw: object) -> RedisLease:
    return RedisLease(url, KEY, name, ttl_ms=ttl_ms, renew_ms=renew_ms, **kw)  # type: ignore[arg-type]


def test_lease_key_names_bot_exchange_and_market() -> None:
    assert lease_key("eth-usdt", "binance", "ETHUSDT") == "tradefleet:lease:eth-usdt:binance:ETHUSDT"


async def test_exactly_one_of_several_racing_leases_may_trade(redis_server) -> None:
    leases = [make(redis_server.url, f"r{i}") for i in range(5)]
    await asyncio.gather(*(lease.start() for lease in leases))
    try:
        await until(lambda: sum(lease.state == LEADER for lease in leases) == 1, what="one leader")
        # Watch for a while: never two replicas allowed to trade at the same instant.
        for _ in range(100):
            assert sum(lease.may_trade() for lease in leases) <= 1
            await asyncio.sleep(0.01)
        leader = next(lease for lease in leases if lease.state == LEADER)
        assert all(lease.holder == leader.holder_id for lease in leases)
        value = redis.Redis.from_url(redis_server.url, decode_responses=True).get(KEY)
        assert value == f"{leader.holder_id}#{leader.fencing_token}"
    finally:
        await asyncio.gather(*(lease.stop() for lease in leases))


async def test_standby_takes_over_after_clean_stop_with_a_higher_fencing_token(redis_server) -> None:
    changes: list[str] = []
    a = make(redis_server.url, "a")
    b = make(redis_server.url, "b", on_change=changes.append)
    await a.start()
    await b.start()
    assert a.may_trade() and a.state == LEADER
    assert b.state == STANDBY and not b.may_trade() and b.holder == "a"
    assert b.snapshot() == {
        "state": STANDBY, "holder": "a", "fencing_token": None, "last_error": None, "may_trade": False
    }  # fmt: skip
    first = a.fencing_token
    assert first is not None
    await a.stop()  # releases the key
    assert redis.Redis.from_url(redis_server.url).get(KEY) is None
    await until(b.may_trade, what="standby to take over")
    assert b.fencing_token is not None and b.fencing_token > first
    assert changes == [LEADER]
    assert await b.confirm()
    await b.stop()


async def test_fencing_token_strictly_increases_across_holders_and_a_redis_restart(redis_server) -> None:
    tokens: list[int] = []
    for i in range(4):
        if i == 2:
            redis_server.stop()  # no persistence: the counter is gone after this
            redis_server.start()
        lease = make(redis_server.url, f"h{i}")
        await lease.start()
        await until(lease.may_trade, what="leadership")
        assert lease.fencing_token is not None
        tokens.append(lease.fencing_token)
        await lease.stop()
    assert tokens == sorted(set(tokens)), tokens


async def test_holder_whose_lease_expired_cannot_renew_or_release_the_new_holders_lease(redis_server) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    a = make(redis_server.url, "a", ttl_ms=4000, renew_ms=300)
    await a.start()
    assert a.may_trade()
    client.delete(KEY)  # A's key expires behind its back (as after a long pause)
    c = make(redis_server.url, "c", ttl_ms=60_000, renew_ms=10_000)
    await c.start()
    assert c.may_trade()
    c_value = client.get(KEY)
    assert c_value == f"c#{c.fencing_token}"
    # A's next renewal is refused by the script (value mismatch): it steps down ...
    await until(lambda: a.state == STANDBY, what="old holder to step down")
    assert not a.may_trade() and not await a.confirm()
    await until(lambda: a.holder == "c", what="old holder to see the new one")
    # ... without touching C's key: same value, TTL still the one C set (not A's 4 s).
    assert client.get(KEY) == c_value
    assert client.pttl(KEY) > 10_000
    await a.stop()  # its release is refused too
    assert client.get(KEY) == c_value
    assert await c.confirm()
    await c.stop()


async def test_redis_outage_makes_state_unknown_and_stops_trading_then_leadership_returns(
    redis_server,
) -> None:
    metrics = BotMetrics()
    states: list[str] = []
    lease = make(redis_server.url, "a", ttl_ms=2000, renew_ms=300, metrics=metrics, on_change=states.append)
    await lease.start()
    assert lease.may_trade()
    assert metrics.registry.get_sample_value("tradefleet_leader") == 1
    before = lease.fencing_token
    assert before is not None
    left_ms = lease.remaining_ms()
    stopped_at = time.monotonic()
    redis_server.stop()
    try:
        # Whatever the renew loop manages on a busy machine, the validity deadline alone forbids
        # trading once the time left at the stop has passed.
        await asyncio.sleep(left_ms / 1000 - (time.monotonic() - stopped_at) + 0.01)
        assert not lease.may_trade()
        assert not await lease.confirm()
        await until(lambda: lease.state == UNKNOWN, what="state unknown")
        assert lease.last_error is not None
        assert metrics.registry.get_sample_value("tradefleet_lease_errors_total") >= 1
        assert metrics.registry.get_sample_value("tradefleet_leader") == 0
    finally:
        redis_server.start()
    await until(lease.may_trade, what="leadership after Redis came back")
    assert lease.state == LEADER and lease.last_error is None
    # Redis restarted empty: a new key, and a token still above the old one.
    assert lease.fencing_token is not None and lease.fencing_token > before
    assert states[:2] == [LEADER, UNKNOWN] and states[-1] == LEADER
    await lease.stop()


async def test_unknown_after_a_blip_adopts_its_own_unexpired_key_with_the_same_token(redis_server) -> None:
    # A blip that does not lose the key: Redis stops answering for longer than one renewal's socket
    # timeout (CLIENT PAUSE holds every command of every client), then answers again. The replica
    # must notice (unknown: no trading while unproven) and then get its lease back, same token.
    states: list[str] = []
    lease = make(redis_server.url, "a", ttl_ms=20_000, renew_ms=300, on_change=states.append)
    await lease.start()
    token = lease.fencing_token
    client = redis.Redis.from_url(redis_server.url)
    client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    await until(lambda: UNKNOWN in states, what="the unanswered renewal to be noticed")
    await until(lambda: lease.state == LEADER and lease.may_trade(), what="leadership back")
    assert lease.fencing_token == token
    await lease.stop()


async def test_connections_killed_while_idle_keep_the_lease_and_its_token(redis_server) -> None:
    # The server closing the lease's idle connection is not an outage: whether the client reconnects
    # before its next command (redis-py >= 8.2) or reports the error once (8.1: unknown, then
    # adopted), the replica ends up leading with the same token and no other holder ever appears.
    lease = make(redis_server.url, "a", ttl_ms=20_000, renew_ms=300)
    await lease.start()
    token = lease.fencing_token
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    for _ in range(3):
        client.client_kill_filter(_type="normal", skipme=True)  # drop every other connection
        await asyncio.sleep(0.5)  # more than one renewal interval
        await until(lambda: lease.state == LEADER and lease.may_trade(), what="leadership kept")
        assert lease.fencing_token == token
        assert client.get(KEY) == f"{lease.holder_id}#{token}"
    await lease.stop()


def test_renew_interval_must_fit_inside_the_usable_lease() -> None:
    with pytest.raises(ValueError, match="renew_ms"):
        RedisLease("redis://127.0.0.1:1/0", KEY, "x", ttl_ms=1000, renew_ms=900)


async def test_local_lease_leads_from_start_to_stop() -> None:
    metrics = BotMetrics()
    seen: list[str] = []
    lease = LocalLease("solo", metrics=metrics, on_change=seen.append)
    assert not lease.may_trade() and lease.state == STANDBY
    await lease.start()
    assert lease.may_trade() and await lease.confirm() and lease.state == LEADER
    assert lease.fencing_token is not None and lease.fencing_token > 0
    assert metrics.registry.get_sample_value("tradefleet_leader") == 1
    assert lease.snapshot()["state"] == LEADER and lease.remaining_ms() > 0
    await lease.stop()
    assert not lease.may_trade() and not await lease.confirm()
    assert seen == [LEADER, STANDBY] and lease.remaining_ms() == 0


def _lines(proc: subprocess.Popen[str], out: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line.strip())


@pytest.mark.slow
async def test_paused_holder_that_wakes_up_may_not_trade_and_cannot_confirm(redis_server) -> None:
    ttl_ms, renew_ms = 1500, 300
    proc = subprocess.Popen(
        [sys.executable, str(HOLDER_SCRIPT), redis_server.url, KEY, "paused", str(ttl_ms), str(renew_ms)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    reader = asyncio.get_running_loop().run_in_executor(None, _lines, proc, lines)
    other = make(redis_server.url, "other", ttl_ms=ttl_ms, renew_ms=renew_ms)
    try:
        await until(lambda: any(x.startswith("order ") for x in lines), what="paused holder to trade")
        await other.start()
        assert other.state == STANDBY
        proc.send_signal(signal.SIGSTOP)
        await until(other.may_trade, what="takeover from the paused holder")
        woke_at = time.monotonic()
        proc.send_signal(signal.SIGCONT)
        await until(lambda: "state standby None" in lines, what="woken holder to step down")
        after = [x for x in lines if x.startswith(("may ", "order ")) and float(x.split()[1]) >= woke_at]
        assert after == [], after
        assert await other.confirm()
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=20)
        await reader
        await other.stop()


async def test_confirm_refuses_when_the_key_has_less_than_the_safety_margin_to_live(redis_server) -> None:
    lease = make(redis_server.url, "a", ttl_ms=4000, renew_ms=1000, safety_margin_ms=800)
    await lease.start()
    assert await lease.confirm()
    client = redis.Redis.from_url(redis_server.url)
    client.pexpire(KEY, 500)  # still ours, but about to expire: an order now could outlive it
    assert not await lease.confirm()
    await lease.stop()


async def test_lease_of_one_bot_does_not_block_another_bot(redis_server) -> None:
    a = RedisLease(redis_server.url, lease_key("a", "binance", "BTCUSDT"), "x", ttl_ms=2000, renew_ms=300)
    b = RedisLease(redis_server.url, lease_key("b", "binance", "BTCUSDT"), "y", ttl_ms=2000, renew_ms=300)
    await a.start()
    await b.start()
    assert a.may_trade() and b.may_trade()
    await a.stop()
    await b.stop()


async def test_replica_started_while_redis_is_down_waits_unknown_then_leads(redis_server) -> None:
    redis_server.stop()
    lease = make(redis_server.url, "late", ttl_ms=2000, renew_ms=300)
    try:
        await lease.start()  # must not raise: ingest starts while leadership is unproven
        assert lease.state == UNKNOWN and not lease.may_trade() and lease.last_error
        assert lease.snapshot()["last_error"].startswith("acquire: ")
    finally:
        redis_server.start()
    await until(lease.may_trade, what="leadership once Redis is up")
    assert await lease.start_confirm()  # its own connection, failed at start, is made now
    await lease.stop()


# --- start_confirm: the confirmation on the wire before it returns ---------------------------------


def _evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_start_confirm_has_sent_its_request_when_it_returns_and_answers_as_confirm(
    redis_server,
) -> None:
    lease = make(redis_server.url, "a", ttl_ms=30_000, renew_ms=10_000)
    await lease.start()
    try:
        assert await lease.confirm()  # the script is known to the server from here on
        client = redis.Redis.from_url(redis_server.url)
        before = _evalsha_calls(client)
        answer = lease.start_confirm()
        # The loop has not run since (this blocking client holds it): only a request written inside
        # start_confirm can have reached the server.
        for _ in range(5000):
            if _evalsha_calls(client) > before:
                break
        assert _evalsha_calls(client) == before + 1
        assert not answer.done()
        assert await answer is True
        assert lease.state == LEADER
    finally:
        await lease.stop()


async def test_start_confirm_without_leadership_answers_false_at_once_without_a_round_trip(
    redis_server,
) -> None:
    a = make(redis_server.url, "a")
    b = make(redis_server.url, "b")
    await a.start()
    await b.start()
    try:
        assert b.state == STANDBY
        client = redis.Redis.from_url(redis_server.url)
        before = _evalsha_calls(client)
        answer = b.start_confirm()
        assert answer.done() and answer.result() is False
        assert _evalsha_calls(client) == before
    finally:
        await b.stop()
        await a.stop()


async def test_start_confirm_on_a_stolen_key_steps_down_to_standby(redis_server) -> None:
    lease = make(redis_server.url, "a", ttl_ms=30_000, renew_ms=10_000)
    await lease.start()
    try:
        redis.Redis.from_url(redis_server.url).set(KEY, "b#999999", px=30_000)
        assert lease.may_trade()  # only the coordinator knows
        assert await lease.start_confirm() is False
        assert lease.state == STANDBY and not lease.may_trade() and lease.fencing_token is None
    finally:
        await lease.stop()


async def test_start_confirm_below_the_safety_margin_is_false_and_keeps_leadership(redis_server) -> None:
    lease = make(redis_server.url, "a", ttl_ms=4000, renew_ms=1000, safety_margin_ms=800)
    await lease.start()
    try:
        redis.Redis.from_url(redis_server.url).pexpire(KEY, 500)
        assert await lease.start_confirm() is False
        assert lease.state == LEADER
    finally:
        await lease.stop()


async def test_start_confirm_after_a_script_flush_still_confirms(redis_server) -> None:
    lease = make(redis_server.url, "a", ttl_ms=30_000, renew_ms=10_000)
    await lease.start()
    try:
        assert await lease.start_confirm()
        redis.Redis.from_url(redis_server.url).script_flush()
        assert await lease.start_confirm()
        assert lease.last_error is None
    finally:
        await lease.stop()


async def test_start_confirm_when_redis_died_is_false_unknown_and_counted(redis_server) -> None:
    metrics = BotMetrics()
    lease = make(redis_server.url, "a", ttl_ms=30_000, renew_ms=10_000, metrics=metrics)
    await lease.start()
    try:
        assert await lease.start_confirm()
        redis_server.stop()
        assert await lease.start_confirm() is False
        assert lease.state == UNKNOWN and not lease.may_trade()
        assert lease.last_error is not None and lease.last_error.startswith("confirm: ")
        assert (metrics.registry.get_sample_value("tradefleet_lease_errors_total") or 0) >= 1
        assert await lease.start_confirm() is False  # unknown: no round trip, no new error
    finally:
        redis_server.start()
        await lease.stop()


async def test_a_cancelled_start_confirm_still_steps_down_on_what_redis_answered(redis_server) -> None:
    lease = make(redis_server.url, "a", ttl_ms=30_000, renew_ms=10_000)
    await lease.start()
    try:
        redis.Redis.from_url(redis_server.url).set(KEY, "b#999999", px=30_000)
        answer = lease.start_confirm()
        answer.cancel()  # the order's commit failed: its answer is moot, the news is not
        await until(lambda: lease.state == STANDBY, what="the lost key noticed")
    finally:
        await lease.stop()


async def test_local_lease_start_confirm_is_already_answered() -> None:
    lease = LocalLease("solo")
    first = lease.start_confirm()
    assert first.done() and first.result() is False
    await lease.start()
    answer = lease.start_confirm()
    assert answer.done() and answer.result() is True
    await lease.stop()
