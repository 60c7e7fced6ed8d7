"""Notable events become stored records (#11, #16), on a real SQLite file and on the MongoDB-protocol
server: a position mismatch once per episode (not once per check), halts and resumes once per bot and
halt whichever replica or restart sees them.

The exchange account is the one seam faked here (`base_balance`, what `PositionCheck` asks the
execution client): the real account path is proven end to end in test_position_reconcile.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.store.conftest import BACKENDS, _discard, _open_backend
from tradefleet.config import BotConfig
from tradefleet.coord.risk_state import LocalRiskState
from tradefleet.domain.models import EventKind, Position
from tradefleet.domain.risk import Halt
from tradefleet.engine.position_check import PositionCheck
from tradefleet.engine.risk_gate import RiskGate
from tradefleet.metrics import BotMetrics
from tradefleet.ports import Store
from tradefleet.store import BufferedStore

BOT = "evt-bot"


class Account:
    """The exchange account's base-asset balance, as the execution client reports it."""

    def __init__(self, held: str) -> None:
        self.held = Decimal(held)

    async def base_balance(self) -> Decimal:
        return self.held


class Clock:
    """A clock the test moves: `step` ms a reading (0: it stands still, every reading one instant)."""

    def __init__(self, step: int = 1000) -> None:
        self.now, self.step = 1_700_000_000_000, step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


@pytest.fixture(params=BACKENDS)
async def buffered(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BufferedStore]:
    raw: Store = await _open_backend(request.param, tmp_path, request)
    store = BufferedStore(raw, BotMetrics(), flush_ms=10)
    store.start()
    try:
        yield store  # type: ignore[misc]
    finally:
        await store.flush(10)
        await _discard(raw)


async def test_a_mismatch_is_stored_once_per_episode_and_its_end_is_stored_too(
    buffered: BufferedStore,
) -> None:
    account = Account("0.0256")
    check = PositionCheck(account, BotMetrics(), Decimal("0.00001"), bot=BOT, store=buffered, clock=Clock())
    for _ in range(5):  # five periodic checks of one disagreement: one record
        await check.check(Decimal(0))
    assert check.mismatch is not None
    account.held = Decimal("0.0300")  # new numbers inside the episode: a second record says so
    await check.check(Decimal(0))
    await check.check(Decimal(0))
    account.held = Decimal("0.000001")  # below a lot step: they agree, the episode ends
    await check.check(Decimal(0))
    await check.check(Decimal(0))
    account.held = Decimal("0.0256")  # a new episode
    await check.check(Decimal(0))
    assert await buffered.flush(10)

    events = await buffered.events(BOT)
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.POSITION_MISMATCH, EventKind.POSITION_MISMATCH, EventKind.POSITION_MATCH,
                     EventKind.POSITION_MISMATCH]  # fmt: skip
    first, changed, match, again = events
    assert first.fields["account_qty"] == "0.0256" and first.fields["position_qty"] == "0"
    assert "holds 0.0256" in first.summary
    assert changed.fields["account_qty"] == "0.0300"
    assert first.fields["episode_started_ms"] == changed.fields["episode_started_ms"] == match.fields[
        "episode_started_ms"]  # fmt: skip
    assert again.fields["episode_started_ms"] != first.fields["episode_started_ms"]


@pytest.mark.parametrize("step_ms", [1000, 0], ids=["clock moving", "one instant"])
async def test_halts_and_resumes_a_bot_learns_of_are_stored_once_per_halt_whoever_sees_them(
    buffered: BufferedStore, tmp_path: Path, step_ms: int
) -> None:
    """Also when the halt and its resume are seen within one millisecond ("one instant": the store
    lists a tie by the events' ids, which once put the resume first)."""
    halt_file = tmp_path / "halt.json"
    state = LocalRiskState(str(halt_file))
    config = BotConfig(name=BOT, risk_halt_file=str(halt_file))
    clock = Clock(step_ms)

    def gate() -> RiskGate:
        return RiskGate(
            config=config, state=state, metrics=BotMetrics(), quote_asset="USDT",
            position=lambda: Position(bot=BOT, symbol="BTC/USDT"), mark=lambda: None,
            may_trade=lambda: False, on_flatten=lambda h: None, store=buffered, clock=clock,
        )  # fmt: skip

    one, replica = gate(), gate()
    await state.halt(Halt("h-1", "exchange misbehaving", "ops (alice)", 1_700_000_000_000))
    for g in (one, replica, one):  # two replicas, and repeated polls
        await g.poll_once()
    restarted = gate()  # a restart sees the same halt again
    await restarted.poll_once()
    await state.resume(None, "ops (bob)")
    for g in (one, replica, restarted):
        await g.poll_once()
    for g in (one, replica, restarted):
        await g.recorded()
    assert await buffered.flush(10)

    events = await buffered.events(BOT)
    assert [e.kind for e in events] == [EventKind.HALT, EventKind.RESUME]
    halt, resume = events
    assert halt.fields["by"] == "ops (alice)" and halt.fields["reason"] == "exchange misbehaving"
    assert halt.fields["scope"] == "fleet" and halt.fields["halted_at_ms"] == "1700000000000"
    assert halt.summary == "halted (fleet) by ops (alice): exchange misbehaving"
    assert resume.fields["halt_id"] == "h-1" and "lifted" in resume.summary
    assert json.loads(json.dumps(resume.fields)) == resume.fields  # plain strings only
