"""One process per SQLite store file (#11): a second bot on the same file waits as a cold standby,
never opening the database, and takes over when the holder dies; a paused holder keeps the file.

Before, two processes shared the file: a replica paused inside a write held SQLite's write lock and
the new leader got SQLITE_BUSY until it resumed, and with the in-process lease both would trade.
Real parts: two `tradefleet bot` processes (paper mode, in-process lease, no Redis) on one SQLite
file, the simulator over sockets, SIGSTOP and SIGKILL of the holder, the kernel's `flock` read
back by the test.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.obs.botproc import BotProcess
from tests.plugins.sim import MakeSim
from tradefleet.errors import PermanentError
from tradefleet.store import SqliteStore
from tradefleet.store.sqlite_lock import lock_path

pytestmark = pytest.mark.slow


def log_events(bot: BotProcess, name: str) -> list[dict[str, Any]]:
    out = []
    for line in bot.log.read_text(errors="replace").splitlines() if bot.log.exists() else []:
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("event") == name:
                out.append(e)
    return out


def opened_files(pid: int) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed meanwhile
    return found


def lock_is_free(db: Path) -> bool:
    """Ask the kernel, as a third process would."""
    fd = os.open(lock_path(str(db)), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        assert e.errno in (errno.EWOULDBLOCK, errno.EAGAIN), e
        return False
    finally:
        os.close(fd)  # also releases it if we got it
    return True


async def until(cond: Any, timeout: float, what: str, *bots: BotProcess) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + "\n".join(
            b.tail() for b in bots
        )
        await asyncio.sleep(0.1)
    return value


def two_bots_on_one_file(tmp_path: Path, sim: Any) -> tuple[Path, BotProcess, BotProcess]:
    """The file, its holder-to-be and a second bot on the same file (neither started)."""
    db = tmp_path / "shared.sqlite"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    holder = BotProcess(tmp_path / "a", sim, store_url=f"sqlite:///{db}")
    standby = BotProcess(tmp_path / "b", sim, store_url=f"sqlite:///{db}")
    return db, holder, standby


async def test_a_second_bot_on_the_same_sqlite_file_waits_without_opening_it_and_takes_over_when_the_holder_dies(
    tmp_path: Path, make_sim: MakeSim
) -> None:
    db, holder, standby = two_bots_on_one_file(tmp_path, await make_sim())
    holder.start()
    try:
        async with aiohttp.ClientSession() as session:
            await holder.wait_ready(session)
            assert holder.proc is not None
            standby.start()
            assert standby.proc is not None
            waits = await until(
                lambda: log_events(standby, "store_lock_wait"), 60, "the standby waiting", standby
            )
            assert waits[0]["holder_pid"] == holder.proc.pid and waits[0]["file"] == str(db)
            assert f"in use by process {holder.proc.pid}" in waits[0]["detail"]
            # Waiting means not opening: no descriptor on the database, its WAL or shm, no HTTP port.
            assert not {f for f in opened_files(standby.proc.pid) if f.startswith(str(db))}
            with pytest.raises(aiohttp.ClientError):
                await standby.get(session, "/readyz")

            # A paused holder keeps the file: the kernel keeps its flock, so the standby cannot start
            # writing beside a process that may wake up in the middle of a transaction.
            holder.proc.send_signal(signal.SIGSTOP)
            try:
                assert not lock_is_free(db)
                standby.check_alive()
                assert not {f for f in opened_files(standby.proc.pid) if f.startswith(str(db))}
                # A third writer is refused with the file and the holder named.
                third = SqliteStore(str(db), lock="refuse")
                with pytest.raises(PermanentError, match=f"in use by process {holder.proc.pid}"):
                    await third.open()
                # Readers take no lock: `tradefleet report` works beside a (paused) bot.
                reader = SqliteStore(str(db), lock="none")
                await reader.open()
                try:
                    assert await reader.prices("obs-bot", 5)  # the holder's samples, read beside it
                finally:
                    await reader.close()
            finally:
                holder.proc.send_signal(signal.SIGCONT)

            # The holder dies (kill -9): the kernel releases the flock and the standby takes over.
            holder.proc.send_signal(signal.SIGKILL)
            holder.proc.wait(timeout=20)
            await until(
                lambda: log_events(standby, "store_lock_acquired"), 60, "the standby taking over", standby
            )
            await standby.wait_ready(session)
            assert Path(lock_path(str(db))).read_text().strip() == str(standby.proc.pid)
    finally:
        holder.stop()
        standby.stop()


async def test_stores_of_one_process_share_its_lock_and_closing_the_last_releases_it(tmp_path: Path) -> None:
    db = tmp_path / "one.sqlite"
    first, second = SqliteStore(str(db)), SqliteStore(str(db))
    await first.open()
    await second.open()  # the same process: not refused by itself
    await first.close()
    assert not lock_is_free(db)  # the second still holds it
    await second.close()
    assert lock_is_free(db)


async def test_a_bot_waiting_for_the_file_stops_on_sigterm_without_waiting_for_it(
    tmp_path: Path, make_sim: MakeSim
) -> None:
    """Kubernetes sends SIGTERM to a pod that is still starting (a rollout, a scale-down): a bot waiting
    as a cold standby must end at once, not wait for the lock until its grace period ends in SIGKILL."""
    db, holder, standby = two_bots_on_one_file(tmp_path, await make_sim())
    holder.start()
    try:
        async with aiohttp.ClientSession() as session:
            await holder.wait_ready(session)
            standby.start()
            assert standby.proc is not None
            await until(lambda: log_events(standby, "store_lock_wait"), 60, "the standby waiting", standby)
            standby.proc.send_signal(signal.SIGTERM)
            assert standby.proc.wait(timeout=30) == 0, standby.tail()
            assert log_events(standby, "stopped_before_start"), standby.tail()
            assert not lock_is_free(db)  # the holder still has its file
            holder.check_alive()
    finally:
        holder.stop()
        standby.stop()
