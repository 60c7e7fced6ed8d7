"""Event streams and the status hash against a real redis-server, including an outage."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
import redis

from tests.conftest import until
from tradefleet.coord.events import (
    ORDERS_STREAM,
    SIGNALS_STREAM,
    STATUS_STREAM,
    NullPublisher,
    RedisEventPublisher,
    status_key,
)
from tradefleet.domain.models import Side
from tradefleet.logs import now_ms
from tradefleet.metrics import BotMetrics


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


async def test_signal_entry_names_bot_and_kind_with_decimals_as_strings(redis_server) -> None:
    pub = RedisEventPublisher(redis_server.url, "btc-usdt", BotMetrics())
    await pub.publish(
        "signal", {"signal_id": "s1", "side": Side.BUY, "close": Decimal("43250.10"), "sma_short": None}
    )
    await pub.publish("order_update", {"client_order_id": "o1", "status": "FILLED", "qty": Decimal("0.001")})
    await pub.close()
    [(_, fields)] = client(redis_server.url).xrange(SIGNALS_STREAM)
    assert fields["bot"] == "btc-usdt" and fields["kind"] == "signal"
    assert abs(int(fields["ts"]) - now_ms()) < 600_000
    assert json.loads(fields["json"]) == {
        "signal_id": "s1",
        "side": "BUY",
        "close": "43250.10",
        "sma_short": None,
    }
    [(_, order)] = client(redis_server.url).xrange(ORDERS_STREAM)
    assert json.loads(order["json"])["qty"] == "0.001"


async def test_streams_stay_bounded_by_maxlen(redis_server) -> None:
    pub = RedisEventPublisher(redis_server.url, "b", maxlen=50)
    for i in range(1000):
        await pub.publish("order", {"i": i})
    await pub.close()
    length = client(redis_server.url).xlen(ORDERS_STREAM)
    # MAXLEN ~ trims whole stream nodes (100 entries by default): at least maxlen kept, never unbounded.
    assert 50 <= length <= 150
    assert pub.published == 1000 and pub.dropped[ORDERS_STREAM] == 0


async def test_status_hash_holds_the_latest_status_json_and_updated_at(redis_server) -> None:
    pub = RedisEventPublisher(redis_server.url, "eth-usdt")
    await pub.set_status({"bot": "eth-usdt", "role": "standby", "position": {"qty": Decimal("0")}})
    before = now_ms()
    await pub.set_status({"bot": "eth-usdt", "role": "leader", "position": {"qty": Decimal("1.50")}})
    await pub.close()
    stored = client(redis_server.url).hgetall(status_key("eth-usdt"))
    assert status_key("eth-usdt") == "tradefleet:status:eth-usdt"
    assert json.loads(stored["json"]) == {"bot": "eth-usdt", "role": "leader", "position": {"qty": "1.50"}}
    assert int(stored["updated_at"]) >= before
    assert client(redis_server.url).xlen(STATUS_STREAM) == 2


async def test_publish_returns_while_redis_is_down_and_everything_arrives_when_it_returns(
    redis_server,
) -> None:
    metrics = BotMetrics()
    pub = RedisEventPublisher(redis_server.url, "b", metrics, status_buffer_max=5, retry_max_s=0.2)
    redis_server.stop()
    try:
        # Never blocks: each call only appends to a buffer (generous bound; a hang would be minutes).
        async with asyncio.timeout(10):
            for i in range(100):
                await pub.publish("signal", {"i": i})
                await pub.publish("order", {"i": i})
            for i in range(20):
                await pub.set_status({"seq": i})
        await until(lambda: pub.last_error is not None, what="the outage to be noticed")
        assert metrics.registry.get_sample_value("tradefleet_event_publish_errors_total") >= 1
        # Oldest status entries went first; signals and orders all wait.
        assert pub.dropped == {SIGNALS_STREAM: 0, ORDERS_STREAM: 0, STATUS_STREAM: 15}
        assert (
            metrics.registry.get_sample_value("tradefleet_events_dropped_total", {"stream": STATUS_STREAM})
            == 15
        )
    finally:
        redis_server.start()
    r = client(redis_server.url)
    await until(lambda: r.xlen(SIGNALS_STREAM) == 100 and r.xlen(ORDERS_STREAM) == 100, what="flush")
    await until(lambda: r.xlen(STATUS_STREAM) == 5, what="status flush")
    assert [json.loads(f["json"])["i"] for _, f in r.xrange(SIGNALS_STREAM)] == list(range(100))
    assert [json.loads(f["json"])["seq"] for _, f in r.xrange(STATUS_STREAM)] == [15, 16, 17, 18, 19]
    await until(lambda: r.hget(status_key("b"), "json") is not None, what="status hash")
    assert json.loads(r.hget(status_key("b"), "json") or "") == {"seq": 19}
    await pub.close()
    assert pub.last_error is None
    assert metrics.registry.get_sample_value("tradefleet_events_buffered", {"stream": ORDERS_STREAM}) == 0


async def test_signals_beyond_the_large_bound_drop_oldest_first_and_are_counted(redis_server) -> None:
    pub = RedisEventPublisher(redis_server.url, "b", buffer_max=10, flush_timeout_s=0.5)
    redis_server.stop()
    try:
        for i in range(25):
            await pub.publish("signal", {"i": i})
    finally:
        redis_server.start()
    r = client(redis_server.url)
    await until(lambda: r.xlen(SIGNALS_STREAM) >= 10, what="flush")
    await pub.close()
    assert [json.loads(f["json"])["i"] for _, f in r.xrange(SIGNALS_STREAM)] == list(range(15, 25))
    assert pub.dropped[SIGNALS_STREAM] == 15


async def test_unknown_event_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown event kind 'trade'"):
        await NullPublisher().publish("trade", {})
    pub = RedisEventPublisher("redis://127.0.0.1:1/0", "b")
    with pytest.raises(ValueError, match="unknown event kind"):
        await pub.publish("trade", {})
    await pub.close()


async def test_the_same_signal_or_order_report_from_two_replicas_is_one_stream_entry(redis_server) -> None:
    a = RedisEventPublisher(redis_server.url, "btc-usdt")
    b = RedisEventPublisher(redis_server.url, "btc-usdt")
    signal = {"signal_id": "sig-1", "side": "BUY", "close": Decimal("100.5")}
    new = {"client_order_id": "tf1", "status": "NEW", "filled_qty": Decimal(0), "fee": Decimal(0)}
    filled = {**new, "status": "FILLED", "filled_qty": Decimal("0.5"), "fee": Decimal("0.0005")}
    for pub in (a, b):
        await pub.publish("signal", signal)
        await pub.publish("order", new)
        await pub.publish("order_update", filled)
        await pub.close()
    r = client(redis_server.url)
    assert r.xlen(SIGNALS_STREAM) == 1
    assert [json.loads(f["json"])["status"] for _, f in r.xrange(ORDERS_STREAM)] == ["NEW", "FILLED"]
    assert (a.published, a.duplicates, b.published, b.duplicates) == (3, 0, 0, 3)
    # Another bot's signal with the same id is another fact.
    other = RedisEventPublisher(redis_server.url, "eth-usdt")
    await other.publish("signal", signal)
    await other.close()
    assert r.xlen(SIGNALS_STREAM) == 2


async def test_status_hash_keeps_the_leaders_view_until_it_goes_stale(redis_server) -> None:
    leader = RedisEventPublisher(redis_server.url, "b")
    standby = RedisEventPublisher(redis_server.url, "b", status_stale_ms=60_000)
    r = client(redis_server.url)

    async def write(pub: RedisEventPublisher, role: str, holder: str) -> None:
        await pub.set_status({"bot": "b", "role": role, "holder": holder})
        await until(lambda: pub.idle, what="flush")

    def role_in_hash() -> str:
        return str(json.loads(r.hget(status_key("b"), "json") or "{}").get("role"))

    await write(standby, "standby", "pod-2")
    assert role_in_hash() == "standby"  # nobody leads yet: the standby's view is the best there is
    await write(leader, "leader", "pod-1")
    await write(standby, "standby", "pod-2")
    assert role_in_hash() == "leader"  # the leader's view wins while it is fresh
    assert r.hget(status_key("b"), "holder") == "pod-1"
    await write(leader, "unknown", "pod-1")  # the leader's own update always replaces its view
    assert role_in_hash() == "unknown"
    await write(leader, "leader", "pod-1")
    impatient = RedisEventPublisher(redis_server.url, "b", status_stale_ms=0)
    await write(impatient, "standby", "pod-3")  # a leader's view that is too old gives way
    assert role_in_hash() == "standby"
    for pub in (leader, standby, impatient):
        await pub.close()
    assert r.xlen(STATUS_STREAM) == 6  # the stream keeps every replica's status
