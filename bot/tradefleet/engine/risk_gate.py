"""The bot's side of the fleet risk controls: asks `domain.risk` before every send, keeps the kill
switch's state fresh, reserves fleet room before a BUY, releases it when the order is final, and trips
the bot's own halt on a loss or order-rate limit.

The order manager calls `before_send(...)` (a reason string, stored as the signal's action, or None),
or its two halves `start_send` / `finish_send` (the reserve's round trip beside the order's commit),
and `order_final(position)`. Everything else runs in `run()`, a loop
every `risk_poll_ms` that reads the halts (one Redis round trip), renews this bot's exposure entry
while it leads, checks the loss limits on the mark the app supplies, and hands flatten halts to the
app's `on_flatten` (which submits the deterministic flatten signal).

The limits in force are the bot's own (its config) tightened by the fleet's (a TradingFleet's
spec.limits, which the operator mirrors into Redis and every poll reads with the halts): a fleet can
lower a cap or a loss limit for every bot of its scope without a restart, never raise one.

What the bot learns is also stored (#11, #16): a `halt` event when it first sees a halt in force for it
(or trips one itself) and a `resume` event when that halt is lifted, with who, scope, reason and when.
Their ids are functions of the bot and the halt id, so replicas and restarts record each once; they are
written in the background through the never-drop store queue, so a slow store never delays the switch.

Failure rule: a read that fails, or a state older than `risk_stale_ms`, is "unknown", and unknown opens
nothing. A reserve that fails is a denial. A release that fails is retried by the next renewal (the
entry is replaced with what the position really holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from tradefleet.config import BotConfig
from tradefleet.domain.ids import event_id
from tradefleet.domain.models import BotEvent, EventKind, Position, Side
from tradefleet.domain.risk import (
    ORDER_RATE,
    STATE_UNKNOWN,
    ZERO,
    EquityTrack,
    FleetEquity,
    Halt,
    RiskLimits,
    RiskView,
    check_order,
    deny,
    equity,
    fleet_drawdown_breach,
    fleet_loss_breach,
    halts_for,
    loss_breach,
    merge_limits,
    orders_in_last_minute,
    position_exposure,
    track_equity,
)
from tradefleet.logs import log_event, now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.ports import RiskState, Store

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SendCheck:
    """What `RiskGate.start_send` decided and started, for `finish_send`."""

    signal_id: str
    side: Side
    amount: Decimal
    position: Position
    now: int
    denial: str | None
    """Denied by the checks in this process (no reserve was started)."""
    reserve: Awaitable[str | None] | None
    """A BUY's fleet reserve, on its way: its answer is the denial (None: reserved)."""

    @property
    def answered(self) -> bool:
        """Nothing left to wait for: denied here, nothing to reserve, or the answer is in."""
        r = self.reserve
        return r is None or (isinstance(r, asyncio.Future) and r.done())


def _reason_label(denial: str) -> str:
    """`risk: fleet_cap (…)` -> `fleet_cap` (a bounded label set for the metric)."""
    return denial.removeprefix("risk: ").split(" ", 1)[0]


class RiskGate:
    def __init__(
        self,
        *,
        config: BotConfig,
        state: RiskState,
        metrics: BotMetrics,
        quote_asset: str,
        position: Callable[[], Position],
        mark: Callable[[], Decimal | None],
        may_trade: Callable[[], bool],
        on_flatten: Callable[[Halt], None],
        clock: Callable[[], int] = now_ms,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self._recording: set[asyncio.Task[None]] = set()
        self.bot = config.name
        self.own_limits = config.risk_limits
        self.limits = self.own_limits
        self.fleet_limits = RiskLimits()
        self.state = state
        self.metrics = metrics
        self.quote_asset = quote_asset
        self.position = position
        self.mark = mark
        self.may_trade = may_trade
        self.on_flatten = on_flatten
        self.clock = clock
        self._last_record_ms = 0
        self.halts: tuple[Halt, ...] = ()
        self.last_read_ms: int | None = None
        self.last_error: str | None = None
        self.reserved = ZERO
        self._reserved_for: str | None = None
        self._recent: deque[int] = deque(maxlen=max(64, 2 * self.own_limits.max_orders_per_minute))
        self.track = EquityTrack()
        self.equity: Decimal | None = None
        self.fleet_equity: FleetEquity | None = None
        self.exposure_sent: Decimal | None = None
        self._last_renew_ms = 0
        self._flatten_sent: dict[str, int] = {}
        self.seen_ms: dict[str, int] = {}  # halt id -> when this bot first saw it (for /status, tests)

    # ---- asked by the order manager ---------------------------------------------------------------

    def view(self) -> RiskView:
        now = self.clock()
        known = self.last_read_ms is not None and now - self.last_read_ms <= self.config.risk_stale_ms
        self.metrics.risk_state_known.set(1 if known else 0)
        return RiskView(halts=self.halts, state_known=known, recent_orders_ms=tuple(self._recent))

    async def before_send(
        self, signal_id: str, side: Side, quote_amount: Decimal | None, position: Position
    ) -> str | None:
        """None: the order may leave (fleet room reserved for a BUY). Otherwise the stored reason."""
        return await self.finish_send(await self.start_send(signal_id, side, quote_amount, position))

    def read_ready(self) -> None:
        """The fleet reserve's reply, if it is already in its socket, read now (where the state can)."""
        read = getattr(self.state, "read_ready", None)
        if read is not None:
            read()

    def rehearse(
        self, signal_id: str, side: Side, quote_amount: Decimal | None, position: Position
    ) -> str | None:
        """`start_send`'s checks in this process, with nothing tripped or reserved: the denial they
        would give now, or None (`OrderManager.rehearse`)."""
        return self._checks(signal_id, side, quote_amount, position, self.clock())

    def _checks(
        self, signal_id: str, side: Side, quote_amount: Decimal | None, position: Position, now: int
    ) -> str | None:
        view = self.view()
        return check_order(side, quote_amount, position, signal_id=signal_id, view=view, limits=self.limits,
                           now_ms=now)  # fmt: skip

    async def start_send(
        self, signal_id: str, side: Side, quote_amount: Decimal | None, position: Position
    ) -> SendCheck:
        """`before_send` in two halves: the checks in this process now (a rate denial trips the bot's
        halt), and a BUY's fleet reserve started (its request written: `RiskState.start_reserve`).
        `finish_send` must follow, always: it reads the reserve's answer and keeps the books. In
        between, the order manager commits the PENDING order while the reserve is on its way."""
        now = self.clock()
        denial = self._checks(signal_id, side, quote_amount, position, now)
        if denial is not None and denial.startswith(deny(ORDER_RATE)):
            await self.trip(denial.removeprefix("risk: "))
        amount = quote_amount or ZERO
        reserve: Awaitable[str | None] | None = None
        if denial is None and side is Side.BUY and self._reserved_for != signal_id:
            try:
                reserve = self.state.start_reserve(
                    self.bot, self.quote_asset, amount, self.limits, self.config.reservation_ttl_ms
                )
            except Exception as e:
                denial = deny(STATE_UNKNOWN, f"reserve failed: {e!r}"[:200])
        return SendCheck(signal_id, side, amount, position, now, denial, reserve)

    async def finish_send(self, check: SendCheck) -> str | None:
        """The other half of `before_send`: None, the order may leave; else the reason (counted and
        logged). A reserve that failed is a denial."""
        denial = check.denial
        if check.reserve is not None:
            try:
                denial = await check.reserve
            except Exception as e:
                denial = deny(STATE_UNKNOWN, f"reserve failed: {e!r}"[:200])
            if denial is None:
                self.reserved, self._reserved_for = check.amount, check.signal_id
                self.exposure_sent = position_exposure(check.position) + check.amount
                self.metrics.risk_exposure.set(float(self.exposure_sent))
        if denial is not None:
            self.metrics.risk_denials.labels(_reason_label(denial)).inc()
            log_event(
                log, "risk_denied", logging.WARNING, signal_id=check.signal_id, side=check.side.value,
                reason=denial,
            )  # fmt: skip
            return denial
        self._recent.append(check.now)
        return None

    async def order_final(self, position: Position) -> None:
        """The order in flight is final: its reservation becomes what the position really holds."""
        self.reserved, self._reserved_for = ZERO, None
        await self._renew(position, force=True)

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.state.open()  # the reserve's connection, before the first BUY needs it
        while True:
            await self.poll_once()
            await asyncio.sleep(self.config.risk_poll_ms / 1000)

    async def poll_once(self) -> None:
        try:
            every, fleet_limits = await self.state.switch()
            halts = halts_for(every, self.bot)
        except Exception as e:
            self.last_error = repr(e)[:200]
            self.view()  # updates the "known" gauge once the state is stale
            return
        now = self.clock()
        self.last_read_ms, self.last_error = now, None
        if fleet_limits != self.fleet_limits:
            set_limits = {k: str(v) for k, v in dataclasses.asdict(fleet_limits).items() if v}
            log_event(log, "risk_fleet_limits", logging.INFO, limits=set_limits)
            self.fleet_limits = fleet_limits
            self.limits = merge_limits(self.own_limits, fleet_limits)
        for h in halts:
            if h.halt_id not in self.seen_ms:
                self.seen_ms[h.halt_id] = now
                log_event(log, "risk_halt_seen", logging.WARNING, halt_id=h.halt_id, scope=h.scope,
                          reason=h.reason, by=h.by, flatten=h.flatten, halted_at_ms=h.at_ms)  # fmt: skip
                self._record(EventKind.HALT, h, now)
        if self.halts and not halts:
            log_event(log, "risk_resumed", halt_ids=[h.halt_id for h in self.halts])
        in_force = {h.halt_id for h in halts}
        for h in self.halts:
            if h.halt_id not in in_force:
                self._record(EventKind.RESUME, h, now)
        self.halts = halts
        self.metrics.risk_halted.set(1 if halts else 0)
        self.view()
        if not self.may_trade():
            return  # the leader speaks for the bot: its exposure, its loss, its flatten
        position = self.position()
        await self._renew(position)
        await self._check_loss(position, now)
        for h in halts:
            # Re-offered (at most each second) while the position is long: a flatten that met an order
            # in flight is acted on once that order is final. The signal id makes it one order.
            if h.flatten and position.qty > 0 and now - self._flatten_sent.get(h.halt_id, 0) >= 1000:
                self._flatten_sent[h.halt_id] = now
                self.on_flatten(h)

    async def _renew(self, position: Position, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_renew_ms < self.config.reservation_ttl_ms // 3:
            return
        amount = position_exposure(position) + self.reserved
        try:
            await self.state.set_exposure(self.bot, self.quote_asset, amount, self.config.reservation_ttl_ms)
        except Exception as e:
            self.last_error = repr(e)[:200]
            return
        self._last_renew_ms = now
        self.exposure_sent = amount
        self.metrics.risk_exposure.set(float(amount))

    async def _check_loss(self, position: Position, now: int) -> None:
        lim = self.limits
        if not (lim.max_daily_loss_quote or lim.max_drawdown_quote or lim.max_fleet_daily_loss_quote
                or lim.max_fleet_drawdown_quote):  # fmt: skip
            return
        value = equity(position, self.mark())
        self.track = track_equity(self.track, value, now)
        self.equity = value
        self.metrics.risk_equity.set(float(value))
        self.metrics.risk_drawdown.set(float(self.track.peak - value))
        breach = loss_breach(self.track, value, self.limits)
        if breach is not None and not any(h.bot == self.bot for h in self.halts):
            await self.trip(breach)
        if lim.max_fleet_drawdown_quote > 0:
            try:
                self.fleet_equity = await self.state.report_equity(
                    self.bot, value, self.config.reservation_ttl_ms
                )
            except Exception as e:
                self.last_error = repr(e)[:200]
            else:
                self.metrics.risk_fleet_drawdown.set(float(self.fleet_equity.drawdown))
                fleet_dd = fleet_drawdown_breach(self.fleet_equity, lim)
                if fleet_dd is not None and not any(h.bot is None for h in self.halts):
                    await self.trip(fleet_dd, fleet_wide=True)
        if lim.max_fleet_daily_loss_quote > 0:
            try:
                await self.state.report_pnl(
                    self.bot, value - self.track.day_start, self.config.reservation_ttl_ms
                )
                fleet = fleet_loss_breach(await self.state.fleet_pnl(), lim)
            except Exception as e:
                self.last_error = repr(e)[:200]
                return
            if fleet is not None and not any(h.bot is None for h in self.halts):
                await self.trip(fleet, fleet_wide=True)

    async def trip(self, reason: str, *, fleet_wide: bool = False) -> None:
        """Halt this bot, or the whole scope for the fleet's loss limit (in the shared state, so every
        replica, every bot of the scope and the operator see it)."""
        at = self.clock()
        bot = None if fleet_wide else self.bot
        h = Halt(f"{at}-{secrets.token_hex(4)}", reason, f"bot {self.bot} (risk limit)", at, bot=bot)
        with contextlib.suppress(Exception):
            h = await self.state.halt(h)
            log_event(log, "risk_tripped", logging.ERROR, halt_id=h.halt_id, reason=h.reason)
        if all(x.halt_id != h.halt_id for x in self.halts):
            self.halts = (*self.halts, h)  # in force here at once, whatever the next poll reads
            if h.halt_id not in self.seen_ms:
                self.seen_ms[h.halt_id] = at
                self._record(EventKind.HALT, h, at)
        self.metrics.risk_halted.set(1)

    # ---- the stored record ------------------------------------------------------------------------

    def _record(self, kind: EventKind, h: Halt, seen_ms: int) -> None:
        if self.store is None:
            return
        if kind is EventKind.HALT:
            summary = f"halted ({h.scope}) by {h.by}: {h.reason}"
        else:
            summary = f"halt {h.halt_id} ({h.scope}, {h.reason}) lifted"
        fields = {
            "halt_id": h.halt_id, "scope": h.scope, "reason": h.reason, "by": h.by,
            "halted_at_ms": str(h.at_ms), "flatten": str(h.flatten).lower(), "seen_ms": str(seen_ms),
        }  # fmt: skip
        # Strictly after this gate's previous record: a halt and its resume seen within one millisecond
        # must not be listed the other way round (the store orders a tie by the events' ids).
        at = self._last_record_ms = max(seen_ms, self._last_record_ms + 1)
        event = BotEvent(event_id(self.bot, kind.value, h.halt_id), self.bot, kind, at, summary, fields)
        task = asyncio.get_running_loop().create_task(self._store(event), name=f"record-{kind.value}")
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _store(self, event: BotEvent) -> None:
        assert self.store is not None
        try:
            await self.store.insert_event(event)
        except Exception as e:  # the log line above has it; the store's own failure is counted there
            log_event(log, "event_store_failed", logging.WARNING, kind=event.kind.value, error=str(e)[:200])

    async def recorded(self) -> None:
        """Wait until the events handed to the store so far are queued or written (tests, shutdown)."""
        while self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)

    # ---- what people see -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        v = self.view()
        now = self.clock()
        return {
            "halted": bool(v.halts),
            "halts": [
                {
                    "halt_id": h.halt_id,
                    "scope": h.scope,
                    "reason": h.reason,
                    "by": h.by,
                    "at_ms": h.at_ms,
                    "flatten": h.flatten,
                    "seen_ms": self.seen_ms.get(h.halt_id),
                }
                for h in v.halts
            ],
            "state_known": v.state_known,
            "last_error": self.last_error,
            "scope": self.config.risk_scope,
            "exposure_quote": None if self.exposure_sent is None else format(self.exposure_sent, "f"),
            "reserved_quote": format(self.reserved, "f"),
            "orders_last_minute": orders_in_last_minute(self._recent, now),
            "equity_quote": None if self.equity is None else format(self.equity, "f"),
            "peak_equity_quote": format(self.track.peak, "f"),
            "limits": {k: str(x) for k, x in dataclasses.asdict(self.limits).items()},
            "fleet_limits": {k: str(x) for k, x in dataclasses.asdict(self.fleet_limits).items() if x},
            "fleet_equity_quote": None if self.fleet_equity is None else format(self.fleet_equity.total, "f"),
            "fleet_drawdown_quote": (
                None if self.fleet_equity is None else format(self.fleet_equity.drawdown, "f")
            ),
        }
