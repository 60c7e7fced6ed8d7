"""Store fixtures: every contract test runs on each backend that is present.

SQLite always runs (a real file in tmp_path). MongoDB runs whenever MONGODB_URL is set (e.g.
`docker compose up -d mongo` then `MONGODB_URL=mongodb://localhost:27017 make test`); each test
gets its own database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tradefleet.ports import Store
from tradefleet.store import SqliteStore

BACKENDS = ["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)]


async def _open_backend(kind: str, tmp_path: Path) -> Store:
    if kind == "sqlite":
        store: Store = SqliteStore(str(tmp_path / "store.sqlite"))
    else:
        url = os.environ.get("MONGODB_URL")
        if not url:
            pytest.skip("MONGODB_URL is not set: the MongoDB backend is not tested in this run")
        from tradefleet.store.mongo import MongoStore

        store = MongoStore(url, database=f"tf_test_{uuid.uuid4().hex[:16]}")
    await store.open()
    return store


async def _discard(store: Store) -> None:
    from tradefleet.store.mongo import MongoStore

    if isinstance(store, MongoStore) and store._client is not None:
        await store._client.drop_database(store.database_name)
    await store.close()


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await _open_backend(request.param, tmp_path)
    try:
        yield opened
    finally:
        await _discard(opened)
