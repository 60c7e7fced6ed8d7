"""A fleet of real `tradefleet bot` processes (one per name) on one real redis-server and one simulator
process, for the risk-control tests.

The simulator replays a candle series the test writes (`zigzag`, `rise_then_fall`), served as 1-minute
candles at a few candles per second: with SMA windows 2/5, every bot sees the same crossover on the same
candle close, so every bot signals in the same instant — the race the fleet cap must survive. Each bot
has its own SQLite store (bots share the simulator's one account; a shared store would let one bot
adopt another's order reports) and its own JSON log; orders are counted on the simulator (`/sim/orders`).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.e2e import test_replicas as replicas
from tests.e2e.test_replicas import _ms as ms
from tests.e2e.test_replicas import wait
from tests.obs.botproc import bot_env, process_env, sim_urls, start_bot

__all__ = ["Bot", "Sim", "cli", "ms", "wait", "write_candles", "zigzag"]

SIM_KEY, SIM_SECRET = "tradefleet-sim-key", "tradefleet-sim-secret"
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % 60_000


def http_json(url: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    if method == "POST" and data is None:
        data = b""
    req = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def write_candles(path: Path, closes: Iterable[float]) -> Path:
    """A kline CSV (the simulator's format) with these closes, one minute apart, plus the dropped last."""
    rows = ["symbol,timeframe,open_time,close_time,open,high,low,close,volume,trades"]
    prev: float | None = None
    series = list(closes)
    for i, close in enumerate([*series, series[-1]]):
        open_ = prev if prev is not None else close
        t = START_MS + i * 60_000
        rows.append(
            f"BTCUSDT,1m,{t},{t + 59_999},{open_:.2f},{max(open_, close):.2f},{min(open_, close):.2f},"
            f"{close:.2f},10.0,100"
        )
        prev = close
    path.write_text("\n".join(rows) + "\n")
    return path


def zigzag(n: int, *, base: float = 30_000.0, step: float = 300.0, leg: int = 3) -> list[float]:
    """Up `leg` candles, down `leg` candles, ...: an SMA 2/5 crossover every `leg` candles or so."""
    out, price = [], base
    for i in range(n):
        price += step if (i // leg) % 2 == 0 else -step
        out.append(price)
    return out


class Sim(replicas.Sim):
    """The replica tests' simulator process, replaying the test's own candles."""

    def __init__(self, tmp: Path, candles: Path, *, speed: float, history: int = 20) -> None:
        super().__init__(
            tmp, "--klines", str(candles), "--speed", str(speed), "--history", str(history),
            "--depth-rate", "4", "--levels", "200",
        )  # fmt: skip

    def orders(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Every order the exchange accepted, in the order it executed them."""
        return sorted(super().orders()["orders"], key=lambda o: o["orderId"])

    def describe(self) -> dict[str, Any]:
        return replicas.Sim.orders(self)

    def start(self) -> None:
        http_json(self.url + "/sim/control/start", "POST")

    def order_faults(self, **faults: Any) -> None:
        http_json(self.url + "/sim/orders/faults", "POST", faults)


class Bot(replicas.Replica):
    """One `tradefleet bot` process (a replica when `name` repeats with a shared `store`). The replica
    tests' class reads its log, /status and stops it; only the process it starts differs (any name and
    settings, its own store), so `__init__` replaces the parent's rather than extending it."""

    def __init__(
        self, tmp: Path, sim: Sim, redis_url: str | None, name: str, *, replica: str | None = None,
        store: Path | None = None, **settings: Any,
    ) -> None:  # fmt: skip
        self.name = name
        self.id = replica or name
        self.tmp = tmp
        self.http_port = free_port()
        self.db = store or tmp / f"{name}.sqlite"
        self.log_path = tmp / f"{self.id}.log"
        config = {
            "name": name, "mode": "testnet", "interval": "1m", "short_window": "2", "long_window": "5",
            "quote_amount": "100", **sim_urls(sim.port), "store_url": f"sqlite:///{self.db}",
            "http_port": str(self.http_port), "http_host": "127.0.0.1", "lease_ttl_ms": "2000",
            "lease_renew_ms": "400", "depth_limit": "100", "store_flush_ms": "50",
            "reservation_ttl_ms": "3000",
        }  # fmt: skip
        config.update({k: str(v) for k, v in settings.items()})
        self.store_url = config["store_url"]
        env = bot_env(config, POD_NAME=self.id, TRADEFLEET_API_KEY=SIM_KEY, TRADEFLEET_API_SECRET=SIM_SECRET)
        if redis_url:
            env["REDIS_URL"] = redis_url
        self.proc = start_bot(env, self.log_path)

    def created(self) -> list[dict[str, Any]]:
        return self.created_orders()

    def qty(self) -> Decimal | None:
        s = self.status()
        pos = s.get("position") if s else None
        return Decimal(pos["qty"]) if pos else None

    def trading(self) -> bool:
        s = self.status()
        return bool(s and s["checks"]["orders"]["ok"] and s["checks"]["candles"]["ok"])

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Rows of this bot from its store, read with sqlite3 or pymongo directly (a witness independent
        of the bot)."""
        if self.store_url.startswith("mongodb"):
            import pymongo

            client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(self.store_url)
            try:
                docs = client.get_default_database()[table].find({"bot": self.name})
                key = {"orders": "client_order_id", "signals": "signal_id"}.get(table, "_id")
                return [{**d, key: d["_id"]} for d in docs]
            finally:
                client.close()
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(f"SELECT * FROM {table} WHERE bot = ?", (self.name,))]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)


def assert_one_order_per_signal(sim: Sim, bot: Bot) -> None:
    """After a handover: no order sent twice or re-sent, one order per signal and every one of them on
    the exchange, sides alternating from a BUY, and no signal left without an order or a stored
    reason (the newest may still be in hand). `bot` reads the store both replicas shared."""
    d = sim.describe()
    assert d["duplicates"] == 0 and d["resubmits"] == 0, d
    orders, signals = bot.rows("orders"), bot.rows("signals")
    per_signal = [o["signal_id"] for o in orders]
    assert len(per_signal) == len(set(per_signal)), "a signal got two orders"
    assert {o["client_order_id"] for o in orders} == {o["clientOrderId"] for o in sim.orders()}
    sides = [o["side"] for o in sorted(orders, key=lambda o: o["created_at"])]
    assert sides == ["BUY", "SELL"] * (len(sides) // 2) + ["BUY"] * (len(sides) % 2), sides
    latest = max(s["candle_close_time"] for s in signals)
    pending = [s for s in signals if s["action"] == "pending" and s["candle_close_time"] != latest]
    assert pending == [], pending


def cli(*args: str, redis_url: str | None = None) -> dict[str, Any]:
    """Run the real `tradefleet` command; its one JSON line."""
    env = process_env()
    if redis_url:
        env["REDIS_URL"] = redis_url
    done = subprocess.run(
        [sys.executable, "-m", "tradefleet.app.cli", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result
