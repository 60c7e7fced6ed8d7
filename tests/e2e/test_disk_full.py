"""The SQLite file's disk fills up under a running bot, twice: once it comes back, once the bot is
killed -9 before it does (#11: "a disk-full outage followed by kill -9 lost every signal of the outage
without a trace").

Real parts: a tmpfs of a few MiB the test mounts (root; CI runs as root) holding the store, filled to
the last byte by a file the test writes; the simulator process replaying candles with a crossing every
few seconds; a real redis-server; `tradefleet bot` processes in testnet mode (real ccxt, signed orders).

Witnesses independent of the bot: the simulator's candles (every crossing, by the pure strategy), its
orders and account, and the SQLite file read directly. At the end:
- while the disk was full, /readyz said why and no order left (an order is stored before it is sent);
- every crossing the exchange's candles contain from the first start on is stored, each once, and none
  is left `pending` (acted on, or stored with its reason such as `missed_while_down`);
- exactly one exchange order per acted signal and no other (simulator `duplicates` 0);
- the store's position equals the exchange account.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.e2e.test_chaos_kill9 import assert_each_crossing_once_and_each_order_once, settle_and_read
from tests.e2e.test_replicas import Replica, Sim, http_json, wait

pytestmark = pytest.mark.slow

DISK_SIZE = "6m"


@contextlib.contextmanager
def small_disk(where: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", str(where)],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem has not one byte left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while os.write(fd, b"\0" * size) > 0:
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
        os.fsync(fd)
    finally:
        os.close(fd)
    return filler


def store_check(bot: Replica) -> dict[str, object] | None:
    status = bot.status()
    return None if status is None else status["checks"]["store"]


def signals_logged(bot: Replica) -> int:
    return len(bot.events("signal"))


def test_a_full_disk_loses_no_signal_and_duplicates_no_order_even_with_kill_9_before_it_returns(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "fleet.sqlite"
        sim = Sim(tmp_path)
        procs: list[Replica] = []

        def start() -> Replica:
            r = Replica(f"disk-{len(procs)}", tmp_path, sim, redis_server.url, f"sqlite:///{db}")
            procs.append(r)
            return r

        try:
            bot = start()
            wait(lambda: bot.status() is not None and bot.status()["ready"], 90, "the bot ready")  # type: ignore[index]
            http_json(sim.url + "/sim/control/start", "POST")
            first_open = http_json(sim.url + "/sim/state")["klines"]["open_candle_time"]
            wait(lambda: bot.created_orders(), 60, "a first order")

            # 1. The disk fills; crossings keep coming; space returns.
            filler = fill(disk)
            wait(lambda: (c := store_check(bot)) is not None and not c["ok"], 30, "/readyz naming the store")
            detail = str(store_check(bot)["detail"])  # type: ignore[index]
            assert "full" in detail.lower(), detail
            before = signals_logged(bot)
            wait(lambda: signals_logged(bot) >= before + 2, 60, "two crossings while the disk is full")
            filler.unlink()
            wait(lambda: (c := store_check(bot)) is not None and c["ok"], 60, "the store writable again")

            # 2. The disk fills again, and the bot is killed -9 before space returns.
            filler = fill(disk)
            wait(lambda: (c := store_check(bot)) is not None and not c["ok"], 30, "/readyz naming the store")
            before = signals_logged(bot)
            wait(lambda: signals_logged(bot) >= before + 2, 60, "two crossings while the disk is full")
            bot.signal(signal.SIGKILL)
            bot.proc.wait(timeout=20)
            filler.unlink()
            bot = start()
            wait(lambda: bot.status() is not None and bot.status()["ready"], 90, "the restarted bot ready")  # type: ignore[index]
            before = signals_logged(bot)
            wait(lambda: signals_logged(bot) >= before + 1, 60, "a crossing after the restart")
            seen = settle_and_read(sim, db)
        finally:
            for r in procs:
                r.stop()
            sim.stop()

    assert_each_crossing_once_and_each_order_once(seen, first_open)
