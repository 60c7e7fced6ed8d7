"""`tradefleet sim` as a process: one ready line, serves, exits 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import free_port
from tradefleet_sim.cli import main, parse_fault


def test_parse_fault_reads_kind_options_and_delay() -> None:
    assert parse_fault("gap:diffs=5,symbol=BTCUSDT@2.5") == (
        2.5,
        {"kind": "gap", "diffs": 5, "symbol": "BTCUSDT"},
    )
    assert parse_fault("drop") == (0.0, {"kind": "drop"})


def test_bad_options_exit_2_with_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0", "--replay-capture", "1999-01-01"]) == 2
    assert "unknown capture" in capsys.readouterr().err
    assert main(["--port", "0", "--fault", "explode@3"]) == 2
    assert "unknown fault kind" in capsys.readouterr().err
    assert main(["--port", "0", "--fault", "gap:diffs=0"]) == 2
    assert "'diffs' must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_process_prints_one_ready_line_serves_and_exits_cleanly(sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradefleet.app.cli", "sim", "--port", str(port), "--depth-rate", "5",
         "--fault", "fail_rest:status=503,count=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == f"tradefleet-sim ready rest=http://127.0.0.1:{port} ws=ws://127.0.0.1:{port}\n"
        url = f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT&limit=5"
        with pytest.raises(urllib.error.HTTPError) as err:  # the startup fault: the first request fails
            urllib.request.urlopen(url, timeout=30)
        assert err.value.code == 503
        with urllib.request.urlopen(url, timeout=30) as r:
            assert len(json.load(r)["bids"]) == 5
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read() == ""  # exactly one line on stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
