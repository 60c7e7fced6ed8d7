"""kill -9 of a bot process between "stored" and "sent", and between "sent" and "acknowledged":
after a restart there is exactly one order on the exchange and the position is right.
Real processes, a real SQLite file, the simulator over sockets, ccxt as the client."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.orders.conftest import sim_orders
from tradefleet.domain.ids import client_order_id

ROOT = Path(__file__).resolve().parents[2]


async def _run(sim, store: Path | str, *extra: str) -> tuple[int, dict]:
    where = ["--store", str(store)] if isinstance(store, Path) else ["--store-url", store]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.orders.crash_runner", "--rest-url", sim.rest_url,
        "--ws-api-url", f"{sim.ws_url}/ws-api/v3", *where, *extra,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    assert proc.returncode is not None
    if proc.returncode == 0:
        assert lines, err.decode()[-2000:]
    return proc.returncode, json.loads(lines[-1]) if lines else {}


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["after_store", "after_send"])
async def test_kill_9_then_restart_ends_with_exactly_one_order_and_the_right_position(
    sim, tmp_path, crash_at
):
    db = tmp_path / "crash.sqlite"
    cid = client_order_id("crash-bot:1m:1700000060000:BUY")
    code, _ = await _run(sim, db, "--buy", "1", "--crash-at", crash_at)
    assert code == -signal.SIGKILL, "the bot really died at the crash point"
    before = await sim_orders(sim)
    assert before["client_ids_seen"] == ({} if crash_at == "after_store" else {cid: 1})

    code, result = await _run(sim, db)  # restart: recover() reconciles before anything else
    assert code == 0
    state = await sim_orders(sim)
    assert state["accepted_per_client_id"] == {cid: 1}
    assert state["duplicates"] == 0
    assert result["orders"][cid]["status"] == "FILLED"
    filled, fee = Decimal(result["orders"][cid]["filled_qty"]), Decimal(result["orders"][cid]["fee"])
    assert fee > 0
    assert Decimal(result["position_qty"]) == filled - fee
    # The simulator's account agrees with the bot's position.
    assert Decimal(state["accounts"][next(iter(state["accounts"]))]["BTC"]) == filled - fee


@pytest.mark.slow
@pytest.mark.mongo
@pytest.mark.parametrize("crash_at", ["after_store", "after_send"])
async def test_kill_9_then_restart_on_mongodb_ends_with_one_order_and_its_signal_acted_on(
    sim, mongodb_url, crash_at
):
    """On MongoDB the one write is the order document with its signal embedded; killed before the
    signal's own document was written, the restart still reads the signal as acted on."""
    parts = urlsplit(mongodb_url)
    url = urlunsplit(parts._replace(path=f"/tf_crash_{uuid.uuid4().hex[:12]}"))
    signal_id = "crash-bot:1m:1700000060000:BUY"
    cid = client_order_id(signal_id)
    code, _ = await _run(sim, url, "--buy", "1", "--crash-at", crash_at)
    assert code == -signal.SIGKILL, "the bot really died at the crash point"

    code, result = await _run(sim, url)
    assert code == 0
    state = await sim_orders(sim)
    assert state["accepted_per_client_id"] == {cid: 1}
    assert state["duplicates"] == 0
    assert result["orders"][cid]["status"] == "FILLED"
    assert result["signals"] == {signal_id: "order"}
