"""Store fixtures: every contract test runs on each backend.

SQLite always runs (a real file in tmp_path). MongoDB always runs too: against a real MongoDB when
MONGODB_URL is set, else against FerretDB 1.x over SQLite started for the session
(tests/plugins/ferretdb.py; built by scripts/ferretdb.sh). Each test gets its own database, dropped
afterwards. To run the suite against compose's MongoDB (user `root`, password MONGO_ROOT_PASSWORD,
default `tradefleet-dev`):

    docker compose -f docker-compose.yml -f tests/store/mongodb-port.yml up -d mongodb
    MONGODB_URL="mongodb://root:${MONGO_ROOT_PASSWORD:-tradefleet-dev}@127.0.0.1:27017/?authSource=admin" \\
        .venv/bin/pytest -q tests/store
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tradefleet.ports import Store
from tradefleet.store import SqliteStore

BACKENDS = ["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)]


async def _open_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "sqlite":
        store: Store = SqliteStore(str(tmp_path / "store.sqlite"))
    else:
        from tradefleet.store.mongo import MongoStore

        url: str = request.getfixturevalue("mongodb_url")
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
    opened = await _open_backend(request.param, tmp_path, request)
    try:
        yield opened
    finally:
        await _discard(opened)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """One open SQLite store on a file, closed afterwards (tests of the SQLite backend alone)."""
    store = SqliteStore(str(tmp_path / "bot.sqlite"))
    await store.open()
    yield store
    await store.close()
