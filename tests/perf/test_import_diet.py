"""The bot's live path imports only what its configuration uses (issue #17: ~53 MiB of a bot's 72 MiB
were imports). A test of modules, not of timings: a real `tradefleet bot` process runs against the
simulator with `PYTHONPROFILEIMPORTTIME=1`, so its log lists every module it imported; once it is
ready (book synced, candles warmed up, orders reconciled: the whole live path has run), the list must
not hold the drivers and libraries its configuration does not use.

What each one costs when it is loaded (`python -m bench.footprint`, README "Memory"): ccxt's Binance
client ~17 MiB (no bot loads it since its trading client signs its own requests, #17), redis-py
~7 MiB, pymongo several MiB; numpy and pandas belong to the tests and the backtest benchmarks, never
to a bot."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.conftest import RedisServer
from tests.obs.botproc import BotProcess
from tests.plugins.sim import MakeSim
from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET

pytestmark = pytest.mark.slow

NEVER = (
    "numpy", "pandas", "kopf", "kubernetes", "tradingbot_operator", "tradefleet_sim",
    "tradefleet.app.backtest", "tradefleet.app.backtest_run", "tradefleet.app.sweep", "tradefleet.app.demo",
    "tradefleet.app.report", "tradefleet.web.backtest_html", "tradefleet.web.report_html",
    "tradefleet.domain.backtest", "tradefleet.domain.performance", "tradefleet.adapters.inprocess",
    "psutil",  # on Linux the process metrics read /proc themselves
    # the probes are served by tradefleet.web.http's own HTTP/1.1 on asyncio streams
    "aiohttp.web", "aiohttp.web_urldispatcher", "aiohttp.web_runner", "aiohttp.web_server",
    "aiohttp.web_request", "aiohttp.web_response", "aiohttp.web_protocol", "aiohttp.web_exceptions",
    "argparse", "gettext",  # `tradefleet bot` parses its four options itself (bot_main.parse_args)
    # metrics and /metrics are tradefleet.prom's; prometheus_client's package imports its servers
    "prometheus_client", "http.server", "socketserver", "wsgiref", "html", "gzip",
)  # fmt: skip
NOT_WITHOUT_THEIR_CONFIG = (
    "pymongo", "bson", "tradefleet.store.mongo",  # only with a mongodb:// store_url
    "redis", "tradefleet.coord.redis_client",  # only with redis_url
    "tradefleet.adapters.binance_exec", "tradefleet.adapters.binance_signed", "tradefleet.adapters.userdata",
    "cryptography",  # redis-py imports it
)  # fmt: skip
NO_BOT = (
    "ccxt",
    "requests",
    "websockets",
    "bench",  # where the ccxt peers live (bench.ccxt_client, bench.ccxt_lean)
)
"""What no bot loads, whatever its mode: the trading client is our own signed REST over aiohttp and the
user data stream aiohttp's websocket client (#17); ccxt and websockets stay for the tests and
benchmarks that use them as peer clients."""


def imported(log: str) -> set[str]:
    """Module names from `-X importtime` lines: `import time: self | cumulative | <indent>name`."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and line.count("|") == 2 and "imported package" not in line
    }


# Paper fills are the simulator's fills (one function, not a copy): the fill rules, and the package
# they live in, are the only part of the simulator a bot may load.
SHARED = {"tradefleet_sim", "tradefleet_sim.matching"}


def loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if (m == package or m.startswith(package + ".")) and m not in SHARED)


def threads(pid: int) -> list[str]:
    """The process's threads, by their kernel names (`/proc/PID/task/*/comm`)."""
    tasks = Path(f"/proc/{pid}/task")
    return [(task / "comm").read_text().strip() for task in sorted(tasks.iterdir())]


async def run_until_ready(
    tmp_path: Path,
    make_sim: MakeSim,
    at_ready: list[list[str]] | None = None,
    env: dict[str, str] | None = None,
    **config: object,
) -> set[str]:
    """The modules a bot imported by the time it is ready; `at_ready` receives its threads then."""
    sim = await make_sim(history=260)
    if config.get("mode") == "testnet":
        config.setdefault("ws_api_url", f"{sim.ws_url}/ws-api/v3")
    bot = BotProcess(tmp_path, sim, **config)
    bot.env = {"PYTHONPROFILEIMPORTTIME": "1", **(env or {})}
    bot.start()
    try:
        async with aiohttp.ClientSession() as http:
            await bot.wait_ready(http)
            if at_ready is not None:
                assert bot.proc is not None
                at_ready.append(threads(bot.proc.pid))
    finally:
        code = bot.stop()
    assert code == 0, bot.tail()
    return imported(bot.log.read_text(errors="replace"))


async def test_a_paper_bot_on_sqlite_without_redis_loads_no_driver_it_does_not_use(
    tmp_path: Path, make_sim: MakeSim
) -> None:
    at_ready: list[list[str]] = []
    modules = await run_until_ready(tmp_path, make_sim, at_ready)
    # Two threads: the event loop and the SQLite writer. aiohttp's own resolver choice (aiodns, when
    # the venv has it) started c-ares' event thread and pycares' reaper thread: the bot's sessions
    # use ThreadedResolver, which starts nothing for IP literals (tradefleet.adapters.http_session).
    assert len(at_ready[0]) == 2, f"a ready paper bot on SQLite runs threads {at_ready[0]}"
    # The list is the bot's: the live path is in it (so an empty or foreign list cannot pass).
    for needed in ("aiohttp", "sqlite3", "msgspec", "tradefleet.adapters.feed", "tradefleet.store.sqlite",
                   "tradefleet.engine.order_manager", "tradefleet.adapters.paper", "tradefleet.coord.lease"):  # fmt: skip
        assert needed in modules, f"{needed} missing from the bot's imports: the parse is broken"
    for package in NEVER + NOT_WITHOUT_THEIR_CONFIG + NO_BOT:
        assert not loaded(modules, package), f"a paper bot on SQLite without Redis imported {package}"


async def test_with_redis_the_bot_loads_redis_and_still_no_other_driver(
    tmp_path: Path, make_sim: MakeSim, redis_server: RedisServer
) -> None:
    modules = await run_until_ready(tmp_path, make_sim, redis_url=redis_server.url)
    assert "redis" in modules and "tradefleet.coord.redis_client" in modules
    for package in (*NEVER, *NO_BOT, "pymongo", "bson"):
        assert not loaded(modules, package), f"a paper bot with Redis imported {package}"


async def test_a_testnet_bot_trades_through_its_own_signed_client_without_ccxt(
    tmp_path: Path, make_sim: MakeSim
) -> None:
    """A testnet bot against the simulator, ready: credentials proven by a signed account request,
    the user data stream subscribed, orders reconciled over signed REST. None of it through ccxt or
    websockets."""
    credentials = {"TRADEFLEET_API_KEY": DEFAULT_API_KEY, "TRADEFLEET_API_SECRET": DEFAULT_API_SECRET}
    modules = await run_until_ready(tmp_path, make_sim, env=credentials, mode="testnet")
    for needed in ("aiohttp", "tradefleet.adapters.binance_exec", "tradefleet.adapters.binance_signed",
                   "tradefleet.adapters.userdata", "tradefleet.engine.order_manager"):  # fmt: skip
        assert needed in modules, f"{needed} missing from a testnet bot's imports: the parse is broken"
    for package in (*NEVER, *NO_BOT, "pymongo", "bson", "redis", "cryptography", "tradefleet.adapters.paper"):
        assert not loaded(modules, package), f"a testnet bot imported {package}"
