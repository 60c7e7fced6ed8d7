"""An exchange that refuses a bot at start (unknown symbol, bad key) ends the process clearly.

Real `tradefleet bot` processes against the simulator over sockets: before, an unlisted symbol left
a process that was never ready and said only "Task exception was never retrieved"; now the process
logs a `fatal` event naming the refusal, says it on stderr, and exits 3 (2 for configuration).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.obs.botproc import BotProcess
from tradefleet_sim.accounts import DEFAULT_API_KEY
from tradefleet_sim.server import SimServer

pytestmark = pytest.mark.slow


def wait_exit(bot: BotProcess, timeout: float = 90.0) -> int:
    assert bot.proc is not None
    deadline = time.monotonic() + timeout
    while bot.proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the bot kept running after a permanent refusal:\n{bot.tail()}")
        time.sleep(0.2)
    return bot.proc.returncode


def fatal_events(bot: BotProcess) -> list[dict[str, object]]:
    out = []
    for line in bot.log.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "fatal":
                out.append(event)
    return out


@pytest.mark.parametrize(
    ("config", "env", "says"),
    [
        ({"symbol": "NOPE/USDT"}, {}, "NOPEUSDT"),
        (
            {"mode": "testnet"},
            {"TRADEFLEET_API_KEY": "unknown-key-123", "TRADEFLEET_API_SECRET": "s3cret-x"},
            "-2015",
        ),
        (
            {"mode": "testnet"},
            {"TRADEFLEET_API_KEY": DEFAULT_API_KEY, "TRADEFLEET_API_SECRET": "wrong-secret"},
            "-1022",
        ),
    ],
    ids=["unknown_symbol", "unknown_key", "bad_signature"],
)
async def test_exchange_refusal_at_start_ends_the_bot_with_a_clear_message(
    tmp_path: Path, sim: SimServer, config: dict[str, str], env: dict[str, str], says: str
) -> None:
    import asyncio

    bot = BotProcess(tmp_path, sim, **config, ws_api_url=sim.ws_url + "/ws-api/v3")
    bot.env = env
    bot.start()
    try:
        code = await asyncio.to_thread(wait_exit, bot)
    finally:
        bot.stop()
    assert code == 3, bot.tail()
    events = fatal_events(bot)
    assert events and says in str(events[0]["error"]), bot.tail()
    assert "Task exception was never retrieved" not in bot.log.read_text()
    assert "s3cret-x" not in bot.log.read_text() and "wrong-secret" not in bot.log.read_text()
