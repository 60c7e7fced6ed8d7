"""A database file deleted under a running bot is noticed, not written into the void (#11).

SQLite keeps writing into an unlinked file without an error, so before, `/readyz` said "reachable"
while every record after the deletion was lost at exit (after a restart the store held 3 orders
against 8 on the exchange). A real `tradefleet bot` process against the simulator; the test deletes
its SQLite file (and the WAL and shared-memory files) from under it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.obs.botproc import BotProcess
from tradefleet_sim.server import SimServer

pytestmark = pytest.mark.slow


async def test_deleted_database_file_fails_readiness_naming_it_and_is_not_recreated_silently(
    tmp_path: Path, sim: SimServer
) -> None:
    bot = BotProcess(tmp_path, sim)
    bot.start()
    try:
        async with aiohttp.ClientSession() as session:
            await bot.wait_ready(session)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{bot.db}{suffix}").unlink(missing_ok=True)
            deadline = time.monotonic() + 30
            while True:
                status, body = await bot.get(session, "/readyz")
                detail = str(body)
                if status == 503 and "was deleted under the running bot" in detail:
                    break
                assert time.monotonic() < deadline, f"/readyz never noticed: {status} {body}"
                await asyncio.sleep(0.2)
            assert str(bot.db) in detail
            bot.check_alive()
            assert not bot.db.exists(), "a new empty database was created silently"
    finally:
        bot.stop()
    assert "store_close_incomplete" in bot.tail(100_000)  # what could not be written is reported
