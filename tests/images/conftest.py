"""The real Docker engine for the image and compose tests: started if it is not running
(scripts/docker-engine.sh), base images made from Debian's packages and both product images built
(scripts/images.sh, cached on this machine). Where no engine can start these tests skip with the
reason in the summary, except when TFTEST_REQUIRE_DOCKER=1 (CI sets it): then they fail.

At the end of the run a summary says what was built and how long each build and test took."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
COMPOSE_CONFIG = "/var/cache/tradefleet/compose/docker-config"
TIMINGS: list[str] = []


def run(*args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=ROOT
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    return run(DOCKER, *args, timeout=timeout, check=check)


def ip_of(container: str) -> str:
    out = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container)
    return out.split()[0]


def http(url: str, timeout: float = 4) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            return r.status, json.loads(body) if body[:1] in (b"{", b"[") else body.decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)


def wait_for(what: str, probe: Callable[[], Any], timeout: float, on_fail: Callable[[], str] = str) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` and `on_fail()` after timeout
    (a generous bound on waiting, never a performance assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{on_fail()}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def docker_engine() -> str:
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker-engine.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        reason = f"NO DOCKER ENGINE, image and compose tests NOT RUN: {proc.stderr.strip()[-500:]}"
        if os.environ.get("TFTEST_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    TIMINGS.append(
        f"docker engine up: {time.monotonic() - started:.1f}s ({docker('version', '--format', '{{.Server.Version}}').strip()})"
    )
    return DOCKER


@pytest.fixture(scope="session")
def images(docker_engine: str) -> Iterator[dict[str, str]]:
    """Base images (cached) and both product images built with the classic builder.

    The engine and its tags are the machine's: another clone's test run would re-tag
    tradefleet-bot:dev under this one's feet, so a run holds a machine-wide lock from building its
    images to its last image test (other runs wait; scripts/images.sh has its own lock)."""
    lock_path = Path("/var/cache/tradefleet/images/tests.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        waited = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)
        TIMINGS.append(f"waited {time.monotonic() - waited:.1f}s for other runs' image tests")
        started = time.monotonic()
        out = run("bash", "scripts/images.sh", "all", timeout=3600)
        TIMINGS.extend(line for line in out.splitlines() if line.startswith("images: "))
        TIMINGS.append(f"images: all steps {time.monotonic() - started:.1f}s")
        yield {"bot": "tradefleet-bot:dev", "operator": "tradefleet-operator:dev"}


@pytest.fixture
def network(docker_engine: str) -> Iterator[str]:
    """A bridge network of our own; containers on it reach nothing outside this machine (a
    DOCKER-USER rule drops their traffic to other addresses while the test runs)."""
    name = f"tf-test-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    docker("network", "create", name)
    subnet = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", name).strip()
    with offline(subnet):
        yield name
    for cid in docker("ps", "-aq", "--filter", f"network={name}").split():
        docker("rm", "-f", cid, check=False)
    docker("network", "rm", name, check=False)


class offline:
    """Drop traffic from `subnet` to anywhere but `subnet` (DOCKER-USER chain) while inside."""

    def __init__(self, subnet: str) -> None:
        self.rule = ["DOCKER-USER", "-s", subnet, "!", "-d", subnet, "-j", "DROP"]

    def __enter__(self) -> None:
        proc = subprocess.run(["iptables", "-I", *self.rule], capture_output=True, text=True, check=False)
        self.ok = proc.returncode == 0
        if not self.ok:  # the test would not be offline: say so rather than pretend
            raise AssertionError(f"could not add the DOCKER-USER rule {self.rule}: {proc.stderr}")

    def __exit__(self, *exc: object) -> None:
        if self.ok:
            subprocess.run(["iptables", "-D", *self.rule], capture_output=True, check=False)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and "tests/images/" in report.nodeid:
        TIMINGS.append(f"test {report.nodeid.split('::', 1)[1]}: {report.outcome} in {report.duration:.1f}s")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("images and compose on the real Docker engine")
        for line in TIMINGS:
            terminalreporter.write_line(re.sub(r"^images: ", "build ", line))
