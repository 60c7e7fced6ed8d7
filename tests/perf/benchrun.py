"""Running a benchmark module the way a user does, for the smoke tests that keep benchmarks working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench_lines(module: str, *args: str, timeout: float = 300) -> list[str]:
    """`python -m <module> <args>` from the repository root: its stdout lines; it must exit 0."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()
