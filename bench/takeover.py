"""How long a bot has no trader after its leader dies: measured takeover time over repeated kills.

    python -m bench.takeover [--replicas 3] [--repeats 8] [--ttl-ms 5000] [--renew-ms 1000]
    python -m bench.takeover --bots [--repeats 4]     # whole `tradefleet bot` processes

Starts its own redis-server on a free port and N replica processes, each holding a `RedisLease`
exactly as a bot does (same key, same TTL/renew settings, `POD_NAME`-style holder ids). Then, over
and over: wait for the fleet to settle, `kill -9` the leader at a random point of its renewal cycle,
and time until another replica reports `leader` (one monotonic clock for every process on a Linux
host); a fresh replica replaces the dead one. For comparison it also times clean stops (SIGTERM:
the leader releases its key, so a standby takes over at its next attempt instead of after the TTL).

Expected from the design: a crash costs at most TTL + one renewal interval (the key must expire,
then a standby's next attempt takes it), typically TTL - (time since last renewal) + half a renewal
interval; a clean stop costs at most one renewal interval. Figures are printed; compare them with
these bounds in the same run, never with another machine's.

With `--bots` the replicas are real `tradefleet bot` processes (testnet mode against the simulator,
`--store-url` a shared MongoDB, else one SQLite file each: a SQLite file belongs to one process) and
two times are reported per kill: until a standby holds the lease, and
until it has reloaded and reconciled orders (`orders_recovered`), i.e. may really trade. The second
adds the reconciliation of any order the dead leader left in flight (up to recvWindow + 1 s).

What it also checks on every takeover: the new leader's fencing token is higher, and the dead
leader's last `may_trade()` was earlier than the new leader's first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY = "tradefleet:lease:bench-bot:binance:BTCUSDT"


# --- the child: one replica reduced to its lease ------------------------------------------------


async def child(url: str, holder: str, ttl_ms: int, renew_ms: int) -> None:
    from tradefleet.coord.lease import RedisLease

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    lease: RedisLease | None = None

    def changed(state: str) -> None:
        token = lease.fencing_token if lease is not None else None
        print(f"state {state} {time.monotonic():.6f} {token}", flush=True)

    lease = RedisLease(url, KEY, holder, ttl_ms=ttl_ms, renew_ms=renew_ms, on_change=changed)
    await lease.start()
    last_may = 0.0
    while not stop.is_set():
        if lease.may_trade():
            last_may = time.monotonic()
            print(f"may {last_may:.6f}", flush=True)
        await asyncio.sleep(0.05)
    await lease.stop()


# --- the parent ---------------------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def leader_since(self) -> tuple[float, int] | None:
        """(time, token) of the latest 'leader' transition if it is still the current state."""
        states = [ln.split() for ln in self.lines if ln.startswith("state ")]
        if states and states[-1][1] == "leader":
            return float(states[-1][2]), int(states[-1][3])
        return None

    def last_may(self) -> float:
        mays = [float(ln.split()[1]) for ln in self.lines if ln.startswith("may ")]
        return mays[-1] if mays else 0.0

    def first_may_after(self, t: float) -> float | None:
        for ln in self.lines:
            if ln.startswith("may ") and float(ln.split()[1]) >= t:
                return float(ln.split()[1])
        return None


def spawn(url: str, name: str, ttl_ms: int, renew_ms: int) -> Replica:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.takeover", "--child", url, name, str(ttl_ms), str(renew_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    replica = Replica(name, proc)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            replica.lines.append(line.strip())

    replica.reader = threading.Thread(target=pump, daemon=True)
    replica.reader.start()
    return replica


def wait_for(cond: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the fleet did not settle")
        time.sleep(0.005)


def leader_of(replicas: list[Replica]) -> Replica | None:
    leaders = [r for r in replicas if r.proc.poll() is None and r.leader_since() is not None]
    if len(leaders) > 1:
        raise AssertionError(f"two replicas claim leadership: {[r.name for r in leaders]}")
    return leaders[0] if leaders else None


def run_rounds(
    url: str, replicas: list[Replica], sig: int, repeats: int, ttl_ms: int, renew_ms: int, counter: list[int]
) -> list[float]:
    takeovers: list[float] = []
    for _ in range(repeats):
        wait_for(lambda: leader_of(replicas) is not None, 60)
        old = leader_of(replicas)
        assert old is not None
        old_token = old.leader_since()[1]  # type: ignore[index]
        # A random point of the renewal cycle, so the figures cover the whole distribution.
        time.sleep(renew_ms / 1000 * (1 + random.random()))
        t_kill = time.monotonic()
        old.proc.send_signal(sig)
        old.proc.wait(timeout=30)
        if old.reader is not None:
            old.reader.join(timeout=10)  # every line it printed before dying
        replicas.remove(old)

        def new_leader(t_kill: float = t_kill) -> bool:
            r = leader_of(replicas)
            return r is not None and r.leader_since()[0] >= t_kill  # type: ignore[index]

        wait_for(new_leader, 60)
        new = leader_of(replicas)
        assert new is not None
        t_new, token = new.leader_since()  # type: ignore[misc]
        takeovers.append(t_new - t_kill)
        assert token > old_token, (token, old_token)
        first = new.first_may_after(t_kill)
        if first is not None:
            assert old.last_may() < first, "the old and new leader overlapped"
        counter[0] += 1
        replicas.append(spawn(url, f"bench-{counter[0]}:{os.getpid()}", ttl_ms, renew_ms))
    return takeovers


# --- --bots: real bot processes --------------------------------------------------------------------


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@dataclass
class Bot:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if isinstance(e, dict) and e.get("event") == name:
                    stamp = dt.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp()
                    out.append((stamp, e))
        return out

    def leading_since(self) -> float | None:
        states = self.events("lease")
        if states and states[-1][1].get("state") == "leader" and self.proc.poll() is None:
            return states[-1][0]
        return None


def spawn_bot(
    name: str, tmp: Path, sim_port: int, redis_url: str, ttl_ms: int, renew_ms: int, store_url: str | None
) -> Bot:
    # Here, not at the top: the lease replicas (`--child`) import this module and stay lean.
    from tests.obs.botproc import bot_env, sim_urls, start_bot

    # A SQLite file belongs to one process (a second would wait as a cold standby): without a shared
    # MongoDB (`--store-url`), each replica gets its own file, which is enough to time a takeover.
    store_url = store_url or f"sqlite:///{tmp / f'{name}.sqlite'}"
    config = {
        "name": "bench-bot", "mode": "testnet", "interval": "1m", "short_window": 2, "long_window": 5,
        **sim_urls(sim_port), "store_url": store_url, "http_port": free_port(),
        "http_host": "127.0.0.1", "lease_ttl_ms": ttl_ms, "lease_renew_ms": renew_ms, "depth_limit": 100,
    }  # fmt: skip
    env = bot_env(
        config, POD_NAME=name, REDIS_URL=redis_url,
        TRADEFLEET_API_KEY="tradefleet-sim-key", TRADEFLEET_API_SECRET="tradefleet-sim-secret",
    )  # fmt: skip
    log = tmp / f"{name}.log"
    return Bot(name, start_bot(env, log), log)


def run_bots(a: argparse.Namespace, binary: str) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        rport, sport = free_port(), free_port()
        redis_proc = subprocess.Popen(
            [binary, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--dir", tmp_s],
            stdout=subprocess.DEVNULL,
        )
        sim = subprocess.Popen(
            [sys.executable, "-m", "tradefleet.app.cli", "sim", "--port", str(sport),
             "--kline-interval", "1m", "--speed", "1", "--history", "60", "--depth-rate", "5"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        bots: list[Bot] = []
        lease_times: list[float] = []
        ready_times: list[float] = []
        try:
            _wait_port(rport)
            _wait_port(sport)
            url = f"redis://127.0.0.1:{rport}/0"
            for i in range(a.replicas):
                bots.append(spawn_bot(f"bot-{i}", tmp, sport, url, a.ttl_ms, a.renew_ms, a.store_url))
            for i in range(a.repeats):
                wait_for(lambda: all(b.events("orders_recovered") for b in bots), 120)
                wait_for(lambda: any(b.leading_since() for b in bots), 60)
                old = next(b for b in bots if b.leading_since())
                time.sleep(a.renew_ms / 1000 * (1 + random.random()))
                t_kill = time.time()
                old.proc.kill()
                old.proc.wait()
                bots.remove(old)

                def new_leader(t_kill: float = t_kill) -> Bot | None:
                    for b in bots:
                        since = b.leading_since()
                        if since is not None and since >= t_kill:
                            return b
                    return None

                wait_for(new_leader, 60)
                new = new_leader()
                assert new is not None
                t_lead = new.leading_since() or t_kill
                wait_for(lambda b=new, t0=t_lead: any(t >= t0 for t, _ in b.events("orders_recovered")), 60)
                t_ready = min(t for t, _ in new.events("orders_recovered") if t >= t_lead)
                lease_times.append(t_lead - t_kill)
                ready_times.append(t_ready - t_kill)
                print(f"  kill {i + 1}: lease {t_lead - t_kill:.3f}s, trading-ready {t_ready - t_kill:.3f}s")
                bots.append(
                    spawn_bot(f"bot-{a.replicas + i}", tmp, sport, url, a.ttl_ms, a.renew_ms, a.store_url)
                )
        finally:
            for b in bots:
                b.proc.kill()
                b.proc.wait()
            sim.terminate()
            sim.wait()
            redis_proc.terminate()
            redis_proc.wait()
    return lease_times, ready_times


def describe(name: str, xs: list[float]) -> str:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return (
        f"{name:<22} n={len(xs):<3} median={statistics.median(xs):6.3f}s  p90={p90:6.3f}s  "
        f"worst={xs[-1]:6.3f}s  best={xs[0]:6.3f}s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--ttl-ms", type=int, default=5000, help="the bot's default lease_ttl_ms")
    p.add_argument("--renew-ms", type=int, default=1000, help="the bot's default lease_renew_ms")
    p.add_argument("--bots", action="store_true", help="real `tradefleet bot` processes + simulator")
    p.add_argument(
        "--store-url",
        help="with --bots: a shared store (mongodb://...); default: one SQLite file per replica",
    )
    p.add_argument("--child", nargs=4, metavar=("URL", "HOLDER", "TTL", "RENEW"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        url, holder, ttl, renew = a.child
        asyncio.run(child(url, holder, int(ttl), int(renew)))
        return 0

    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    if a.bots:
        lease_t, ready_t = run_bots(a, binary)
        ttl, renew = a.ttl_ms / 1000, a.renew_ms / 1000
        print(f"bot takeover after kill -9, {a.replicas} replicas, ttl={ttl}s renew={renew}s")
        print(describe("standby holds lease", lease_t) + f"   bound ttl+renew={ttl + renew:.3f}s")
        print(describe("standby trading-ready", ready_t) + "   (+ reconcile of in-flight orders)")
        return 0
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory() as tmp:
        redis_proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        counter = [0]
        replicas: list[Replica] = []
        try:
            time.sleep(0.3)
            for _ in range(a.replicas):
                counter[0] += 1
                replicas.append(spawn(url, f"bench-{counter[0]}:{os.getpid()}", a.ttl_ms, a.renew_ms))
            crash = run_rounds(url, replicas, signal.SIGKILL, a.repeats, a.ttl_ms, a.renew_ms, counter)
            clean = run_rounds(url, replicas, signal.SIGTERM, a.repeats, a.ttl_ms, a.renew_ms, counter)
        finally:
            for r in replicas:
                r.proc.kill()
                r.proc.wait()
            redis_proc.terminate()
            redis_proc.wait()
    ttl, renew = a.ttl_ms / 1000, a.renew_ms / 1000
    print(f"takeover, {a.replicas} replicas, ttl={ttl}s renew={renew}s, cpu cores={os.cpu_count()}")
    print(describe("kill -9 (key expires)", crash) + f"   bound ttl+renew={ttl + renew:.3f}s")
    print(describe("SIGTERM (key released)", clean) + f"   bound renew={renew:.3f}s")
    print(f"crash/clean median ratio: {statistics.median(crash) / statistics.median(clean):.1f}x")
    print("every takeover: fencing token increased, no overlap of may_trade between old and new leader")
    return 0


if __name__ == "__main__":
    sys.exit(main())
