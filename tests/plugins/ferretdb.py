"""A real MongoDB wire-protocol server for the store's MongoDB tests: FerretDB 1.x over SQLite.

No MongoDB server can be obtained on the project's machines; FerretDB (built from the Go module
proxy by `scripts/ferretdb.sh`, cached under /var/cache/tradefleet/ferretdb) is the strongest
stand-in that speaks the wire protocol the real pymongo client talks. When `MONGODB_URL` is set the
tests use that server instead (a real MongoDB), and FerretDB is neither built nor started.

The binary is built on demand (the script is idempotent: 0.04 s when the binary is current), so a
fresh machine with Go works without `.ci/run`; a machine without Go fails loudly with what to do.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_for_port

SCRIPT = ROOT / "scripts" / "ferretdb.sh"


@cache
def ferretdb_binary() -> str:
    """Path of the pinned FerretDB build (built now if missing); fails the test, never skips."""
    try:
        done = subprocess.run(["bash", str(SCRIPT)], check=True, capture_output=True, text=True, timeout=1800)
    except subprocess.CalledProcessError as e:
        pytest.fail(
            f"scripts/ferretdb.sh could not build FerretDB (needs Go >= 1.24 and the Go module proxy), "
            f"or set MONGODB_URL to test against a real MongoDB:\n{e.stderr[-3000:]}"
        )
    return done.stdout.strip().splitlines()[-1]


def ferretdb_version() -> str:
    out = subprocess.run([ferretdb_binary(), "--version"], check=True, capture_output=True, text=True)
    return next(line.split(": ", 1)[1] for line in out.stdout.splitlines() if line.startswith("version:"))


class FerretDB:
    """One FerretDB process on a free loopback port with its own SQLite data directory.

    Authentication is on, as on compose's `mongodb` service: a `root` user in `admin` with a random
    password, SCRAM-SHA-256 (FerretDB 1.x's "new auth", still flagged experimental there), so the
    store's URLs carry credentials and `authSource=admin` exactly as in production.

    `kill()` then `start()` is a crash and restart on the same port and data: what a client sees
    when its MongoDB server dies and comes back."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.proc: subprocess.Popen[bytes] | None = None
        data.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"mongodb://root:{self.password}@127.0.0.1:{self.port}/?authSource=admin"

    def start(self) -> None:
        log = self.data / "ferretdb.log"
        with log.open("ab") as stderr:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    ferretdb_binary(),
                    "--handler=sqlite",
                    f"--sqlite-url=file:{self.data}/",
                    f"--state-dir={self.data}",
                    f"--listen-addr=127.0.0.1:{self.port}",
                    "--debug-addr=-",
                    "--telemetry=disable",
                    "--log-level=error",
                    "--test-enable-new-auth",
                    "--setup-database=admin",
                    "--setup-username=root",
                    f"--setup-password={self.password}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            self.stop()
            pytest.fail(f"FerretDB did not listen on {self.port}; its log:\n{log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, connections drop mid-request."""
        self._stop(signal.SIGKILL)

    def stop(self) -> None:
        self._stop(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections (the kernel does), nothing answers.

        Returns once every thread is stopped: the signal takes effect asynchronously, and on a busy
        machine a request sent right after `kill` could otherwise still be served."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")
        deadline = time.monotonic() + 10
        while not all(_state(t) in "Tt" for t in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"FerretDB (pid {self.proc.pid}) did not stop within 10 s")
            time.sleep(0.005)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def _stop(self, sig: int) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)  # a paused process would not act on SIGTERM
                self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
            self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _state(task: Path) -> str:
    """A thread's state letter from /proc (after the parenthesised command name); "" if it is gone."""
    try:
        return (task / "stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "T"  # an exited thread does not serve requests


@pytest.fixture(scope="session")
def mongodb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MONGODB_URL when set (a real MongoDB), else a FerretDB started for this session."""
    url = os.environ.get("MONGODB_URL")
    if url:
        yield url
        return
    server = FerretDB(tmp_path_factory.mktemp("ferretdb"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def ferretdb(tmp_path: Path) -> Iterator[FerretDB]:
    """A FerretDB of this test's own, which the test may kill and restart."""
    server = FerretDB(tmp_path / "ferretdb")
    server.start()
    try:
        yield server
    finally:
        if server.running:
            server.stop()
