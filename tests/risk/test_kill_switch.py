"""The kill switch on real processes: four bots, one redis-server, the simulator over sockets.

`tradefleet halt --flatten` (the real command) must stop every bot from sending any new order, close
each open position with exactly one market order, and have every refused signal stored with the halt's
reason; `tradefleet resume` lets them trade again. The time from the switch (the halt's own timestamp,
written by the command) to each bot seeing it is measured from the bots' logs and printed; it is not
asserted against the wall clock (the machine is shared), but the test asserts that no order other than
a flatten order was created after each bot saw the switch.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.risk.fleet import Bot, Sim, cli, ms, wait, write_candles, zigzag
from tradefleet.domain.ids import client_order_id

pytestmark = pytest.mark.slow

N = 4
STEP = Decimal("0.00001")


@pytest.fixture
def fleet(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[Sim, list[Bot]]]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/run installs it)")
    sim = Sim(tmp_path, write_candles(tmp_path / "zigzag.csv", zigzag(600)), speed=1.5)
    bots = [Bot(tmp_path, sim, redis_server.url, f"bot-{i}") for i in range(N)]
    try:
        yield sim, bots
    finally:
        for b in bots:
            b.stop()
        sim.stop()


def _flat(b: Bot) -> bool:
    """Flat as the exchange allows: what is left is below one lot step (the BUY's fee was paid in BTC)."""
    q = b.qty()
    return q is not None and q < STEP


def _all_long(bots: list[Bot]) -> bool:
    return all((b.qty() or 0) > 0 for b in bots)


def test_halt_with_flatten_stops_every_bot_closes_each_position_once_and_resume_trades_again(
    fleet: tuple[Sim, list[Bot]], redis_server: RedisServer
) -> None:
    sim, bots = fleet
    # Every bot long at once (they signal on the same candle), then the replay paused: no strategy
    # SELL can race the flatten, so each bot must close its position with the flatten order alone.
    for _ in range(10):
        wait(lambda: _all_long(bots), 120, "every bot long")
        sim.pause()
        wait(lambda: all(not b.status()["last_order"] or b.status()["last_order"]["status"] == "FILLED"
                         for b in bots), 30, "orders settled")  # fmt: skip
        if _all_long(bots):
            break
        sim.start()
    else:
        raise AssertionError("never had every bot long with the replay paused")

    halted = cli("halt", "--reason", "test: exchange misbehaving", "--flatten", "--by", "pytest",
                 redis_url=redis_server.url)["halted"]  # fmt: skip
    switch_ms = halted["at_ms"]
    wait(lambda: all(_flat(b) for b in bots), 60, "every position flat")

    # Signals keep coming: every bot refuses them with the halt's reason, stored.
    sim.start()

    def refused(b: Bot) -> list[dict[str, object]]:
        return [s for s in b.rows("signals") if str(s["action"]).startswith("risk: halted")]

    wait(lambda: all(len(refused(b)) >= 2 for b in bots), 120, "two refused signals per bot")
    sim.pause()

    seen = {}
    orders = sim.orders()
    for b in bots:
        ev = [e for e in b.events("risk_halt_seen") if e["halt_id"] == halted["halt_id"]]
        assert len(ev) == 1, ev
        seen[b.name] = ms(ev[0]["time"])
        flatten_cid = client_order_id(f"flatten:{halted['halt_id']}:{b.name}")
        mine = [o for o in orders if o["clientOrderId"] == flatten_cid]
        assert len(mine) == 1 and mine[0]["side"] == "SELL" and mine[0]["status"] == "FILLED", mine
        late = [
            e for e in b.created() if ms(e["time"]) >= seen[b.name] and e["client_order_id"] != flatten_cid
        ]
        assert late == [], f"{b.name} created orders after it saw the halt: {late}"
        # Who, what and when, on every stored refusal.
        assert all(" by pytest at 20" in str(s["action"]) for s in refused(b))
        st = b.status()
        assert (
            st is not None and st["risk"]["halted"] and st["risk"]["halts"][0]["reason"].startswith("test:")
        )
    assert sim.describe()["duplicates"] == 0
    delays = sorted(v - switch_ms for v in seen.values())
    # From the switch to the moment the last of the N bots refuses every order (it has seen the halt).
    print(
        f"\nkill switch: switch -> refusing, per bot (ms): {delays}; all {N} refusing after {delays[-1]} ms"
    )

    # Resume: the fleet trades again (a new BUY from every bot).
    before = {b.name: len(b.created()) for b in bots}
    assert (
        cli("resume", "--by", "pytest", redis_url=redis_server.url)["resumed"]["halt_id"] == halted["halt_id"]
    )
    sim.start()
    wait(lambda: all(len(b.created()) > before[b.name] for b in bots), 120, "every bot trading again")

    # Each bot's store holds the halt and its resume once (#16), with who, scope, reason and when.
    # (Only the halt and resume records: the four bots share one simulator account, so a position
    # check, which assumes an account per bot, records a mismatch whenever they hold at once.)
    def stored(b: Bot) -> list[dict[str, object]]:
        return [
            e for e in b.rows("events")
            if e["kind"] in ("halt", "resume") and json.loads(str(e["fields"]))["halt_id"] == halted["halt_id"]
        ]  # fmt: skip

    wait(lambda: all(len(stored(b)) == 2 for b in bots), 30, "the halt and the resume stored by every bot")
    for b in bots:
        halt, resume = sorted(stored(b), key=lambda e: int(str(e["at_ms"])))
        fields = json.loads(str(halt["fields"]))
        assert (halt["kind"], resume["kind"]) == ("halt", "resume")
        assert (fields["by"], fields["scope"], fields["reason"]) == (
            "pytest",
            "fleet",
            "test: exchange misbehaving",
        )
        assert int(fields["halted_at_ms"]) == switch_ms and int(fields["seen_ms"]) >= switch_ms


def test_without_redis_the_file_switch_halts_a_single_bot_and_resume_lifts_it(tmp_path: Path) -> None:
    """The embedded default (no REDIS_URL, in-process lease): `tradefleet halt --file` is the switch."""
    sim = Sim(tmp_path, write_candles(tmp_path / "zigzag.csv", zigzag(600)), speed=1.5)
    switch = tmp_path / "HALT"
    bot = Bot(tmp_path, sim, None, "solo", risk_halt_file=switch)
    try:
        wait(lambda: len(bot.created()) >= 1, 120, "the bot trading")
        halted = cli("halt", "--file", str(switch), "--reason", "maintenance", "--by", "pytest")["halted"]
        seen = wait(lambda: bot.events("risk_halt_seen"), 30, "the bot to see the file")
        seen_ms = ms(seen[0]["time"])
        wait(lambda: any(str(s["action"]).startswith("risk: halted (fleet: maintenance") for s in bot.rows("signals")),
             60, "a refused signal")  # fmt: skip
        assert [e for e in bot.created() if ms(e["time"]) >= seen_ms] == []
        print(f"\nfile switch: seen {seen_ms - halted['at_ms']} ms after the halt")
        before = len(bot.created())
        cli("resume", "--file", str(switch), "--by", "pytest")
        wait(lambda: len(bot.created()) > before, 120, "trading again after resume")
    finally:
        bot.stop()
        sim.stop()
