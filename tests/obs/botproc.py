"""A real `tradefleet bot` process for the observability tests, pointed at an in-process simulator,
and the environment every test (and benchmark) gives the `tradefleet` processes it starts.

The bot runs exactly as in a pod: its own process, a YAML config, the HTTP port the tests scrape.
Its JSON log goes to a file in tmp, shown when something fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.conftest import free_port
from tradefleet_sim.server import SimServer


def process_env(**variables: str) -> dict[str, str]:
    """The environment of a `tradefleet` process a test starts, as in a pod: this process's own (PATH,
    the virtualenv) without any TRADEFLEET_* variable of the developer's shell or CI (bot and operator
    refuse unknown ones, so a harness switch would stop them) and without REDIS_URL (the bot would
    coordinate on whichever Redis the shell points at); then `variables` as given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEFLEET_") and k != "REDIS_URL"}
    env.update(variables)
    return env


def bot_env(config: Mapping[str, object], **variables: str) -> dict[str, str]:
    """`process_env` for a `tradefleet bot` configured by its environment alone: each `config` key as
    TRADEFLEET_<KEY> (`short_window=2` is TRADEFLEET_SHORT_WINDOW=2), then `variables` as given
    (POD_NAME, REDIS_URL, credentials)."""
    env = process_env(**{f"TRADEFLEET_{key.upper()}": str(value) for key, value in config.items()})
    env.update(variables)
    return env


def sim_urls(port: int) -> dict[str, str]:
    """Bot config for a simulator process on this port: REST, market streams and order API."""
    return {
        "rest_url": f"http://127.0.0.1:{port}",
        "ws_url": f"ws://127.0.0.1:{port}",
        "ws_api_url": f"ws://127.0.0.1:{port}/ws-api/v3",
    }


def start_bot(
    env: Mapping[str, str], log: Path, *args: str, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`tradefleet bot` in a process of its own with exactly this environment, its output (the JSON
    log lines, and anything on stderr) written to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tradefleet.app.cli", "bot", *args],
            stdout=out, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd,
        )  # fmt: skip


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30.0) -> int:
    """Stop it as Kubernetes stops a pod: SIGTERM (after SIGCONT, so a SIGSTOPped one can act on it),
    then SIGKILL once `timeout` has passed. Its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


class BotProcess:
    def __init__(self, tmp: Path, sim: SimServer, **config: Any) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.db = tmp / "bot.sqlite"
        self.config: dict[str, Any] = {
            "name": "obs-bot",
            "symbol": "BTC/USDT",
            "interval": "1d",
            "mode": "paper",
            "store_url": f"sqlite:///{self.db}?busy_timeout_ms=200",
            "rest_url": sim.rest_url,
            "ws_url": sim.ws_url,
            "http_host": "127.0.0.1",
            "http_port": self.port,
            "stale_after_s": 5.0,
            "reconnect_max_s": 1.0,
            "store_flush_ms": 50,
            **config,
        }
        self.log = tmp / "bot.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        """Extra environment for the process (credentials: they are never config)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        path = self.tmp / "bot.yaml"
        path.write_text(yaml.safe_dump(self.config))
        self.proc = start_bot(process_env(**self.env), self.log, "--config", str(path), cwd=self.tmp)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop_process(self.proc)
        self.proc = None
        return code

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the bot exited with {self.proc.returncode}:\n{self.tail()}")

    async def get(self, session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
        async with session.get(self.url + path) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, body = await self.get(session, "/readyz")
                if status == 200:
                    result: dict[str, Any] = body
                    return result
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"bot not ready after {timeout}s; last /readyz: {body}\n{self.tail()}")

    async def metric(self, session: aiohttp.ClientSession, name: str, labels: str = "") -> float:
        """One sample from a fresh /metrics scrape (0 when absent)."""
        _, text = await self.get(session, "/metrics")
        want = f"{name}{{{labels}}} " if labels else f"{name} "
        for line in text.splitlines():
            if line.startswith(want):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
