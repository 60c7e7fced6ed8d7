"""Replicas sharing a MongoDB-protocol store, as they do in compose and in a cluster.

The same real processes as `test_replicas.py` (simulator, redis-server, `tradefleet bot` replicas in
testnet mode), but the shared store is the session's MongoDB server (FerretDB 1.x over SQLite with
authentication on, or the real MongoDB at MONGODB_URL), reached through `TRADEFLEET_STORE_URL` with
credentials and `authSource=admin` exactly like compose's bots. The witness reading the store is
pymongo on the raw documents, independent of the bot's store code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.e2e.test_replicas import BOT, Fleet, wait

pytestmark = [pytest.mark.slow, pytest.mark.mongo]


class MongoFleet(Fleet):
    """The replica tests' fleet on the MongoDB-protocol store (pymongo as the witness)."""

    def __init__(self, tmp: Path, redis: RedisServer, mongodb_url: str) -> None:
        super().__init__(tmp, redis, mongodb_url)
        assert self.client is not None


@pytest.fixture
def mongo_fleet(tmp_path: Path, redis_server: RedisServer, mongodb_url: str) -> Iterator[MongoFleet]:
    fleet = MongoFleet(tmp_path, redis_server, mongodb_url)
    try:
        yield fleet
    finally:
        fleet.close()


def test_replicas_on_a_shared_mongodb_store_trade_once_and_survive_kill_9_of_the_leader(
    mongo_fleet: MongoFleet,
) -> None:
    fleet = mongo_fleet
    fleet.spawn(2)
    fleet.wait_orders(2)
    first = wait(fleet.leader, 30, "a leader")
    assert {n for n, _ in fleet.all_created()} == {first.name}

    fleet.kill_leader(first, order_timeout=90)
    fleet.settle_and_check_last_signal_followed()
    fleet.check_no_duplicates_and_alternation()
    # The store really is the MongoDB server's: the bot's own documents, with its price samples.
    db = fleet.client[fleet.database]
    assert db["prices"].count_documents({"meta.bot": BOT}) > 0
    assert db["orders"].count_documents({"bot": BOT}) == len(fleet.all_created())
