"""`bench.headroom` keeps working end to end (its stream server, a real bot, the idle-loop floor) and
judges a step the way its docstring says. It asserts no rate or delay figure: those are the
benchmark's to print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bench.headroom import Step, summary

ROOT = Path(__file__).resolve().parents[2]


def step(
    rate: float, sent: float, handled: float, *, blocked: float = 0.0, queue: list[float] | None = None
) -> Step:
    return Step(rate, 30.0, sent_per_s=sent, handled_per_s=handled, blocked=blocked, queue=queue or [0.0] * 8)


def test_a_step_is_behind_when_the_bot_handles_less_than_it_was_sent_or_chokes_the_socket() -> None:
    assert not step(6000, 6000, 5990).behind
    assert step(6000, 6000, 5000).behind  # handled < 97 % of sent
    assert step(6000, 4000, 4000, blocked=0.5).behind  # the server waited on the bot's full socket
    short = step(6000, 4000, 4000, blocked=0.0)  # the server itself was short of CPU
    assert not short.behind and short.server_limited
    assert step(6000, 6000, 6000, queue=[0, 0, 0, 0, 900, 900, 900, 900]).behind  # the store queue grew
    line = summary([step(600, 600, 600), short, step(9000, 9000, 5000)]).split()
    fields = dict(item.split("=") for item in line[1:])
    assert line[0] == "headroom"
    assert (fields["rate"], fields["first_behind"], fields["server_short_from"]) == ("600", "9000", "6000")


@pytest.mark.slow
def test_headroom_drives_a_real_bot_and_ends_with_the_summary_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.headroom", "--rates", "120,300", "--step-seconds", "3", "--warmup", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert sum(line.startswith("rate ") for line in lines) == 2, out.stdout
    last = lines[-1].split()
    assert last[0] == "headroom"
    fields = dict(item.split("=") for item in last[1:])
    assert {
        "rate",
        "first_behind",
        "loop_p99_ms",
        "store_growth",
        "floor_loop_p99_ms",
        "cpu_pct",
        "load",
    } <= set(fields)
    assert "in the step" not in out.stdout  # no gap, resync, reconnect or malformed frame at these rates
