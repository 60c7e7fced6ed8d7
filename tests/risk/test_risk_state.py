"""The fleet risk state against a real redis-server (and the in-process one on a real file): halts,
atomic reserve under concurrency, expiry of a dead bot's entry, and agreement with the pure rules."""

from __future__ import annotations

import asyncio
import json
import random
import re
from decimal import Decimal
from pathlib import Path

import pytest

from tradefleet.coord.risk_state import LocalRiskState, RedisRiskState, new_halt, read_halt_file
from tradefleet.domain.risk import Exposure, RiskLimits, try_reserve

D = Decimal


async def test_a_halt_is_kept_until_resumed_and_a_second_halt_keeps_the_first(redis_server) -> None:
    s = RedisRiskState(redis_server.url, "t")
    try:
        first = await s.halt(new_halt("exchange down", "ops", flatten=True))
        again = await s.halt(new_halt("other reason", "someone"))
        assert again == first  # same id: a flatten is never asked twice
        own = await s.halt(new_halt("loss", "bot b", bot="b"))
        assert {h.halt_id for h in await s.halts()} == {first.halt_id, own.halt_id}
        assert await s.resume(None, "ops") == first
        assert [h.bot for h in await s.halts()] == ["b"]
        kinds = [e["kind"] for e in await s.events()]
        assert kinds == ["resume", "halt", "halt"]  # newest first: who/what/when kept
        assert json.loads((await s.events())[0]["halt"])["reason"] == "exchange down"
    finally:
        await s.close()


async def test_concurrent_reserves_from_many_clients_never_pass_the_cap(redis_server) -> None:
    """Twenty bots, each with its own connection, reserve at the same instant, many rounds."""
    clients = [RedisRiskState(redis_server.url, "cap") for _ in range(20)]
    limits = RiskLimits(max_fleet_quote=D(250))
    rng = random.Random(5)
    try:
        for _ in range(30):
            await clients[0]._redis.delete(clients[0].exposure_key)
            amounts = [D(rng.choice([50, 100, 120])) for _ in clients]
            results = await asyncio.gather(
                *(
                    c.reserve(f"bot{i}", "USDT", a, limits, 10_000)
                    for i, (c, a) in enumerate(zip(clients, amounts, strict=True))
                )
            )
            granted = sum((a for a, r in zip(amounts, results, strict=True) if r is None), D(0))
            table = await clients[0].exposure()
            assert sum(e.amount for e in table.values()) == granted <= 250
            assert all(r is None or r.startswith("risk: fleet_cap") for r in results)
    finally:
        for c in clients:
            await c.close()


async def test_a_dead_bots_reservation_expires_and_frees_the_room(redis_server) -> None:
    s = RedisRiskState(redis_server.url, "ttl")
    limits = RiskLimits(max_fleet_quote=D(100))
    try:
        assert await s.reserve("dead", "USDT", D(100), limits, 300) is None
        denial = await s.reserve("alive", "USDT", D(1), limits, 300)
        assert denial is not None and denial.startswith("risk: fleet_cap")
        await asyncio.sleep(0.4)  # the entry's expiry is on the Redis server's clock
        assert await s.reserve("alive", "USDT", D(100), limits, 300) is None
        assert set(await s.exposure()) == {"alive"}
        await s.set_exposure("alive", "USDT", D(0), 300)  # release
        assert await s.exposure() == {}
    finally:
        await s.close()


async def test_the_lua_script_and_the_pure_rule_agree(redis_server) -> None:
    """Same operations, same answers: the in-process fallback is the Redis script's twin."""
    s = RedisRiskState(redis_server.url, "twin")
    rng = random.Random(11)
    limits = RiskLimits(max_fleet_quote=D("300.5"), max_quote_asset_quote=D(200))
    table: dict[str, Exposure] = {}
    try:
        for _ in range(200):
            bot, quote = rng.choice("abcdef"), rng.choice(["USDT", "BTC"])
            amount = D(rng.randint(1, 15000)) / 100
            if rng.random() < 0.25:
                await s.set_exposure(bot, quote, D(0), 60_000)
                table.pop(bot, None)
                continue
            got = await s.reserve(bot, quote, amount, limits, 60_000)
            table, want = try_reserve(table, bot, quote, amount, limits=limits, now_ms=0, ttl_ms=10**12)
            assert (got is None) == (want is None), (got, want)
            if got is not None:
                assert want is not None
                assert got.split(" ")[1] == want.split(" ")[1]
                # The same reason in the same words, the amounts as people write them (never 2.5E+2).
                assert "E+" not in got, got
                assert _words(got) == _words(want), (got, want)
            redis_view = {b: e.amount for b, e in (await s.exposure()).items()}
            assert redis_view == {b: e.amount for b, e in table.items()}
    finally:
        await s.close()


async def test_an_unreachable_redis_raises_rather_than_answering(tmp_path: Path) -> None:
    from tests.conftest import free_port

    s = RedisRiskState(f"redis://127.0.0.1:{free_port()}/0", "x", timeout_s=0.2)
    with pytest.raises(Exception):  # noqa: B017 (redis' ConnectionError; the gate treats any as unknown)
        await s.halts()
    await s.close()


async def test_the_file_switch_halts_resumes_and_an_unreadable_file_halts(tmp_path: Path) -> None:
    path = tmp_path / "HALT"
    s = LocalRiskState(str(path))
    assert await s.halts() == []
    h = await s.halt(new_halt("manual", "ops", flatten=True))
    assert [x.halt_id for x in await LocalRiskState(str(path)).halts()] == [h.halt_id]  # another reader
    assert await s.resume(None, "ops") == h
    assert not path.exists() and await s.halts() == []
    path.write_text("not json")
    halts = read_halt_file(path)
    assert len(halts) == 1 and "unreadable" in next(iter(halts.values())).reason


async def test_the_reserve_goes_on_its_own_connection_opened_up_front_and_survives_a_script_flush_and_a_restart(
    redis_server,
) -> None:
    import redis

    from tradefleet.coord import redis_client

    s = RedisRiskState(redis_server.url, "hot")
    limits = RiskLimits(max_fleet_quote=D(100))
    try:
        await s.open()
        assert s._hot.connected  # the first BUY does not pay for the connect
        assert await s.reserve("a", "USDT", D(60), limits, 10_000) is None
        redis.Redis(port=redis_server.port).script_flush()
        denial = await s.reserve("b", "USDT", D(60), limits, 10_000)  # EVALSHA, NOSCRIPT, then EVAL
        assert denial is not None and denial.startswith("risk: fleet_cap (")
        redis_server.stop()
        with pytest.raises(redis_client.RedisError):
            await s.reserve("b", "USDT", D(10), limits, 10_000)
        redis_server.start()
        assert await s.reserve("b", "USDT", D(10), limits, 10_000) is None  # a new, empty server
        assert {k: e.amount for k, e in (await s.exposure()).items()} == {"b": D(10)}
    finally:
        await s.close()


async def test_opening_a_state_whose_redis_is_down_does_not_raise() -> None:
    from tests.conftest import free_port

    s = RedisRiskState(f"redis://127.0.0.1:{free_port()}/0", "x", timeout_s=0.2)
    await s.open()
    assert not s._hot.connected
    await s.close()
    await LocalRiskState().open()


def _words(reason: str) -> tuple[str, list[Decimal]]:
    """A reason with its numbers taken out (compared as numbers: 20 and 20.0 are the same amount)."""
    numbers = re.findall(r"\d+(?:\.\d+)?(?:E[+-]?\d+)?", reason)
    return re.sub(r"\d+(?:\.\d+)?(?:E[+-]?\d+)?", "#", reason), [D(n) for n in numbers]
