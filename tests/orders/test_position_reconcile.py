"""The stored position is checked against the exchange account; a disagreement fails readiness (#11).

Before, it was never checked: a bot believed 0.0115 BTC while the account held 0.0256 BTC. A real
`tradefleet bot` process in testnet mode against the simulator, whose account already holds BTC the
bot's (empty) store knows nothing about: /readyz fails on `position` naming both quantities, the
metric carries the difference and the log has the `position_mismatch` event.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from tests.obs.botproc import BotProcess
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET
from tradefleet_sim.server import SimServer

pytestmark = pytest.mark.slow


async def set_balances(sim: SimServer, balances: dict[str, str]) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{sim.rest_url}/sim/accounts",
            json={"api_key": DEFAULT_API_KEY, "secret": DEFAULT_API_SECRET, "balances": balances},
        ) as r,
    ):
        assert r.status == 200, await r.text()


async def test_position_that_disagrees_with_the_exchange_account_fails_readiness_naming_both(
    tmp_path: Path, sim: SimServer
) -> None:
    await set_balances(sim, {"USDT": "100000", "BTC": "0.0256"})
    bot = BotProcess(tmp_path, sim, mode="testnet", ws_api_url=sim.ws_url + "/ws-api/v3")
    bot.env = {"TRADEFLEET_API_KEY": DEFAULT_API_KEY, "TRADEFLEET_API_SECRET": DEFAULT_API_SECRET}
    bot.start()
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 90
            while True:
                bot.check_alive()
                try:
                    status, body = await bot.get(session, "/readyz")
                except aiohttp.ClientError:
                    status, body = 0, None
                position = (body or {}).get("checks", {}).get("position") if isinstance(body, dict) else None
                if position is not None and not position["ok"]:
                    break
                assert time.monotonic() < deadline, f"no position mismatch reported: {body}\n{bot.tail()}"
                await asyncio.sleep(0.3)
            assert status == 503
            assert "stored position 0" in position["detail"] and "holds 0.0256" in position["detail"]
            assert await bot.metric(session, "tradefleet_position_mismatch_qty") == pytest.approx(0.0256)
            events = [json.loads(line) for line in bot.log.read_text().splitlines() if line.startswith("{")]
            assert [e for e in events if e.get("event") == "position_mismatch"]
            # The stored record (#11): one row for the episode, read from the file with sqlite3 directly.
            deadline = time.monotonic() + 30
            while not (rows := stored_events(bot.db)):
                assert time.monotonic() < deadline, f"no stored event\n{bot.tail()}"
                await asyncio.sleep(0.2)
            assert [(r["kind"], r["bot"]) for r in rows] == [("position_mismatch", "obs-bot")]
            fields = json.loads(rows[0]["fields"])
            assert (Decimal(fields["position_qty"]), Decimal(fields["account_qty"])) == (0, Decimal("0.0256"))
            _, body = await bot.get(session, "/status")
            assert isinstance(body, dict)
            shown = [e for e in body["events"] if e["kind"] == "position_mismatch"]
            assert shown and Decimal(shown[0]["account_qty"]) == Decimal("0.0256"), body["events"]
    finally:
        bot.stop()
    # `tradefleet report` shows it.
    from tradefleet.app.report import main as report

    out = tmp_path / "report.html"
    assert (
        await asyncio.to_thread(report, ["--store", str(bot.db), "--bot", "obs-bot", "--out", str(out)]) == 0
    )
    page = out.read_text()
    assert "<h2>Events</h2>" in page and "position_mismatch" in page and "holds 0.0256" in page


def stored_events(db: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM events ORDER BY at_ms").fetchall()
    except sqlite3.OperationalError:
        return []  # the bot has not created the file's tables yet
    finally:
        conn.close()
