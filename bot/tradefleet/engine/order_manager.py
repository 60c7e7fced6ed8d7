"""Signals in, exactly-once orders out: the one place where a bot spends money.

The rules it lives by, in the order they protect the account:

1. An order is stored (PENDING) before its request leaves, in ONE write with its signal and the
   signal's action (`Store.commit_order`: both or neither after a crash); everything else the store
   needs is written after the request. Its client order id is a pure function of the signal
   (`domain.ids.client_order_id`), so a retry, a restart or a new leader computes the same id and
   asks the exchange about it before doing anything else.
2. An uncertain outcome (timeout, lost response, 5xx, Binance -1007: `ExecutionUnknown`) is answered by
   querying that id, never by re-sending. "Never seen" only counts as an answer once the original
   request can no longer be accepted: its recvWindow has passed (`unknown_settle_s`, taken from the
   execution). Only then is the same id sent again. A request that certainly did not leave (429 with
   Retry-After, -1021) is re-sent with the same id after the wait.
3. Before each send the lease must say we may trade, the coordinator must confirm it, and the order
   carries the fencing token. Otherwise the signal is stored as it came (pending) and nothing else:
   a standby writes no action. When no other process writes the store, the confirmation's round
   trip runs while the order is being committed, and the request waits for both (`_confirm_during_commit`).
4. The fleet's risk gate (`engine.risk_gate`, rules in `domain.risk`) is asked right before an order
   is created: a halt, a cap or the order-rate guard is stored as the action "risk: <reason>".
5. A signal that cannot act (BUY while long, SELL while flat, below the minimum notional, standby) is
   stored with its reason. Nothing is dropped silently.
6. The position is a fold over the stored orders' cumulative fills (`domain.position`), recomputed
   after every update, so it can never drift from the order history.

`recover()` reloads orders from the store, reconciles every non-final one with the exchange, acts on
the latest signal that has no order yet and still applies (takeover), and only then lets signals
through. What this module refuses to do: place an order without a stored record, guess an outcome,
or trade before `recover()` has finished.

Public surface (the app wires it): `OrderManager(config=, store=, execution=, lease=, rules=, metrics=,
publisher=None)`, `await recover()` (again on every takeover), `submit_signal(signal)` (non-blocking),
`ready_to_act()` (the engine asks it before handing a signal over unstored), `rehearse(signal)` (the
path run with nothing stored or sent, just before a close: `engine.hot_close`),
`await run()` (until cancelled), `await drain(timeout_s)` (SIGTERM: stop taking signals, let the
order in flight become final), `position`, `last_order`, `trading_ready`. Signal actions stored:
"order", "rejected", "standby", "order_in_flight", the `domain.position` reasons, and
"not_sent: <reason>" for a stored order that was never sent and no longer applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal as signal_mod
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tradefleet.config import BotConfig
from tradefleet.domain.ids import client_order_id, is_ours
from tradefleet.domain.models import SIGNAL_PENDING, Order, OrderStatus, OrderUpdate, Position, Side, Signal
from tradefleet.domain.position import (
    ORDER_IN_FLIGHT,
    Filters,
    OrderIntent,
    PositionFold,
    Skip,
    decide,
    merge_update,
)
from tradefleet.engine.position_check import PositionCheck
from tradefleet.engine.risk_gate import RiskGate, SendCheck
from tradefleet.errors import (
    ExecutionUnknown,
    OrderRejected,
    PermanentError,
    RateLimited,
    TemporaryError,
)
from tradefleet.logs import log_event, now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.ports import EventPublisher, Execution, Lease, Store, SymbolRules
from tradefleet.tasks import start_eagerly

log = logging.getLogger(__name__)

STANDBY = "standby"
ORDER = "order"
REJECTED = "rejected"
NOT_SENT = "not_sent"
PENDING = SIGNAL_PENDING
POSITION_CHECK_S = 30.0
"""How often the stored position is compared with the exchange account between takeovers."""
SUPERSEDED = "superseded"
"""Action of a stored signal that was never acted on and is older than another one also never acted
on: only the newest still applies after a restart or takeover (#11)."""


def filters_from_rules(rules: SymbolRules) -> Filters:
    return Filters(
        base_asset=rules.base_asset,
        quote_asset=rules.quote_asset,
        step_size=rules.step_size,
        min_qty=rules.min_qty,
        max_qty=rules.max_qty,
        tick_size=rules.tick_size,
        min_notional=rules.min_notional,
    )


class OrderManager:
    def __init__(
        self,
        *,
        config: BotConfig,
        store: Store,
        execution: Execution,
        lease: Lease,
        rules: SymbolRules,
        metrics: BotMetrics,
        publisher: EventPublisher | None = None,
        risk: RiskGate | None = None,
        reconcile_interval_s: float = 5.0,
        max_send_attempts: int = 5,
        crash_at: str | None = None,
        clock: Callable[[], int] = now_ms,
        timed: bool = True,
    ) -> None:
        self.config = config
        self.store = store
        self.execution = execution
        self.lease = lease
        self.rules = rules
        self.filters = filters_from_rules(rules)
        self.metrics = metrics
        self.publisher = publisher
        self.risk = risk
        # No other process writes this store (an SQLite file under its one-writer lock): the lease's
        # confirmation may overlap the order's commit (`_confirm_during_commit`).
        self._exclusive_store = bool(getattr(store, "exclusive", False))
        self._store_request_left: Callable[[], None] | None = getattr(store, "request_left", None)
        self.reconcile_interval_s = reconcile_interval_s
        self.max_send_attempts = max_send_attempts
        # Test hook: SIGKILL this process right after the PENDING order is stored ("after_store") or
        # right after the exchange accepted it, before the answer is applied ("after_send").
        self.crash_at = crash_at
        # Order and update timestamps come from the bot's one clock (simulated in replays/backtests).
        self.clock = clock
        # "Never seen" by the exchange is final only this long after the last send (recvWindow + margin).
        self.unknown_settle_s = float(getattr(execution, "unknown_settle_s", 6.0))
        self.position = Position(bot=config.name, symbol=config.symbol)
        self._fold = PositionFold(config.name, config.symbol, self.filters)  # position_from_orders, kept
        # Pre-bound metric children (`labels()` is a locked lookup costing more than the update).
        # `timed=False` on a simulated clock (backtests): a replay's wall-clock latencies mean nothing.
        self._signal_to_order = metrics.op_latency["signal_to_order"].observe if timed else _unmeasured
        self._order_ack = metrics.op_latency["order_ack"].observe if timed else _unmeasured
        self._orders_sent = {side: metrics.orders.labels(side.value) for side in Side}
        self._updates_seen: dict[OrderStatus, Any] = {}  # filled on first use: no series before
        # The stored position against the exchange account, on start, takeover and periodically (#11).
        self.position_check = PositionCheck(
            execution, metrics, self.filters.step_size, publisher, bot=config.name, store=store, clock=clock
        )
        self._position_checked = 0.0
        self.last_order: Order | None = None
        self.trading_ready = False
        self._orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}
        """The orders of `_orders` not final yet, kept as each is put (`_keep`): asked on every signal,
        and a bot's history grows without bound (a list of 10,000 orders took ~0.5 ms to filter)."""
        self._quiet = asyncio.Event()  # set: no order request is about to leave (`quiet`)
        self._quiet.set()
        self._last_send: dict[str, float] = {}
        self._signals: asyncio.Queue[tuple[Signal, float] | None] = asyncio.Queue()  # None: `_failed`
        self._acting_now: set[asyncio.Task[None]] = set()  # `act_now`'s, not yet done
        self._failed: BaseException | None = None  # an `act_now` task's error, for `run` to raise
        self._lock = asyncio.Lock()
        self._unfinished = 0  # signals queued or being acted on
        self._ready = asyncio.Event()
        self._draining = False

    # ---- public API -----------------------------------------------------------------------------

    def submit_signal(self, signal: Signal) -> None:
        """Queue a signal; the manager's own task handles signals one at a time, in order."""
        self._taking_one()
        self._signals.put_nowait((signal, time.monotonic()))

    def act_now(self, signal: Signal) -> None:
        """`submit_signal` for a signal to act on at once (the engine's, as its candle closes): when
        `ready_to_act`, the order path runs now, on the caller's stack, up to the first time it has to
        wait (`tasks.start_eagerly`; usually that is for the exchange's answer, after the request has
        left), then goes on as a task of its own. Otherwise it is queued like any other.

        Queued, it waited for a turn of the loop before the manager's task took it (~0.09 ms at the
        median, `bench.tick_to_order`'s `hop`), behind whatever else that turn ran. Acting now is as
        safe: nothing else is queued or being acted on (the lock is free and taken without waiting),
        the signals that come meanwhile queue behind it (`ready_to_act` is False until it is done), and
        the caller's cancellation cannot reach it once it is waiting (its own task)."""
        if not self.ready_to_act():
            self.submit_signal(signal)
            return
        self._taking_one()
        task = start_eagerly(self._act_alone(signal, time.monotonic()), name=f"act-{signal.signal_id}")
        self._acting_now.add(task)
        task.add_done_callback(self._acted_now)

    def ready_to_act(self) -> bool:
        """A signal submitted now would be acted on at once: recovered, not stopping, nothing queued
        or in progress. The engine then leaves storing the signal to the manager, which stores it in
        the same write as its action (and order): one durable write between the tick and the order.
        Otherwise the engine stores it first, so a signal that has to wait is never only in memory."""
        return self.trading_ready and not self._draining and not self._unfinished and not self._lock.locked()

    def rehearse(self, signal: Signal) -> str:
        """The order path for `signal`, run now with nothing stored, reserved, sent, logged or counted
        (`engine.hot_close`: a candle whose close could make `signal` is about to close, and the path
        that then runs is faster for having just run). What an order would need is built and dropped:
        the decision, the risk gate's checks in this process, the order, its rows in a store
        transaction rolled back (`Store.rehearse_commit`, where the store has one) and its signed
        request (`Execution.rehearse`, where the execution has one). Returns "order" when an order
        would follow, "no_order" when the signal would be stored with a reason, "not_ready" when the
        manager would not act on it at once."""
        if not self.ready_to_act() or self._open or not self.lease.may_trade():
            return "not_ready"
        cid = client_order_id(signal.signal_id)
        if cid in self._orders:
            return "no_order"
        quote = self.config.quote_amount
        decision = decide(signal.side, self.position, self.filters, quote_amount=quote, price=signal.close)
        if isinstance(decision, Skip):
            return "no_order"
        if self.risk is not None and self.risk.rehearse(
            signal.signal_id, decision.side, decision.quote_amount, self.position
        ):
            return "no_order"
        order = self._new_order(signal, cid, decision)
        decided = dataclasses.replace(signal, action=ORDER)
        rehearse_commit = getattr(self.store, "rehearse_commit", None)
        if rehearse_commit is not None:
            rehearse_commit(decided, order)
        rehearse_send = getattr(self.execution, "rehearse", None)
        if rehearse_send is not None:
            rehearse_send(order)
        return "order"

    async def quiet(self) -> None:
        """Return once no order request is about to leave: the one for the signals submitted so far
        has been written (or none will be). The feed waits for this after the frame that made a
        signal, so the rest of a burst does not run between the order path's steps."""
        await self._quiet.wait()

    def acting(self) -> bool:
        """A signal is queued or being acted on: stored, sent, answered (cheap, checked per frame)."""
        return self._unfinished > 0

    def idle(self) -> bool:
        """No signal waiting or being acted on and no order still open (checked without yielding)."""
        return self._unfinished == 0 and not self._open_orders()

    async def settle(self) -> None:
        """Wait until every queued signal has been acted on (stored, sent, answered, applied). A
        replay driver awaits this before it advances its simulated clock (`drain` is shutdown's)."""
        while True:
            if self._acting_now:
                await asyncio.wait(set(self._acting_now))
            await self._signals.join()
            if not self._acting_now:
                return

    async def recover(self) -> None:
        """Reload, reconcile, take over the pending signal; then trading is ready. Re-entrant (call
        it again on every takeover)."""
        self.trading_ready = False
        self._ready.clear()
        started = time.monotonic()
        if self.risk is not None:
            # The kill switch and the limits as they are now, before anything below may send: the
            # gate's own loop starts polling only once trading is ready, and an unread switch opens
            # nothing (a takeover BUY was refused as "risk_state_unknown" and its signal lost).
            await self.risk.poll_once()
        async with self._lock:
            orders = await self.store.orders(self.config.name)
            self._orders = {o.client_order_id: o for o in orders}
            self._open = {o.client_order_id: o for o in orders if not o.status.is_final}
            self._refresh_position()
            saved = await self.store.load_position(self.config.name, self.config.symbol)
            if saved is not None and saved.qty != self.position.qty:
                log_event(log, "position_mismatch", logging.WARNING, saved_qty=saved.qty,
                          rebuilt_qty=self.position.qty)  # fmt: skip
            for order in sorted(self._open_orders(), key=lambda o: o.created_at):
                # Anything in flight was sent before we started: that is the send time to settle from.
                cid = order.client_order_id
                self._last_send[cid] = max(self._last_send.get(cid, 0.0), started)
                if not await self._settle(order, wait=True):
                    await self._resend(order)
            for order in list(self._orders.values()):
                if order.status.is_final and order.filled_qty > 0 and order.fee == 0:
                    # Filled, but the fills that carry the fee were not recorded before a crash: ask
                    # again, or the position would hold the fee we never received.
                    await self._settle(order, wait=False)
            self._refresh_position()
            await self._check_exchange_open_orders()
            await self._take_over_latest_signal()
            await self._save_position()
            if not self._open_orders():
                await self.position_check.check(self.position.qty)
                self._position_checked = time.monotonic()
        self.trading_ready = True
        self._ready.set()
        log_event(log, "orders_recovered", orders=len(self._orders), position_qty=self.position.qty)

    async def run(self) -> None:
        """Process signals and order updates until cancelled (recovers first if nobody did)."""
        if not self.trading_ready:
            await self.recover()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._consume_updates())
                tg.create_task(self._reconcile_loop())
                while True:
                    item = await self._signals.get()
                    if item is None:  # an `act_now` task failed: this task fails with it, as if its own
                        self._signals.task_done()
                        assert self._failed is not None
                        raise self._failed
                    try:
                        await self._handle(*item)
                    finally:
                        self._done_with_one()
                        self._signals.task_done()
        finally:
            for task in self._acting_now:
                task.cancel()  # as the one this task was acting on is

    async def _act_alone(self, signal: Signal, queued_at: float) -> None:
        try:
            await self._handle(signal, queued_at)
        finally:
            self._done_with_one()

    def _acted_now(self, task: asyncio.Task[None]) -> None:
        self._acting_now.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        self._failed = task.exception()
        self._signals.put_nowait(None)

    def _taking_one(self) -> None:
        self._unfinished += 1
        self._quiet.clear()  # a request may be about to leave

    def _done_with_one(self) -> None:
        self._unfinished -= 1
        if not self._unfinished:
            self._quiet.set()  # no request (or it has left long ago): nothing to wait for

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking signals, then wait (at most `timeout_s`) until no signal is being acted on and
        no order is in flight. True when the bot may exit without leaving an order half done."""
        self._draining = True
        deadline = time.monotonic() + timeout_s
        while busy := self._lock.locked() or bool(self._open_orders()):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        log_event(log, "orders_drained", logging.WARNING if busy else logging.INFO, settled=not busy,
                  open_orders=[o.client_order_id for o in self._open_orders()])  # fmt: skip
        return not busy

    async def _handle(self, signal: Signal, queued_at: float) -> None:
        """Act on one signal; a temporary failure (store, lease, exchange) is retried with the same
        signal (acting is idempotent: the order id is fixed and checked first), never dropped."""
        delay = 0.5
        while True:
            await self._ready.wait()
            try:
                async with self._lock:
                    if self._draining:
                        # Stopping: the signal is stored as it came (pending; the engine may have left
                        # that to us) and the next leader's takeover acts on it. Never half an order.
                        await self.store.insert_signal(signal)
                        log_event(log, "signal_deferred", signal_id=signal.signal_id, reason="stopping")
                        return
                    await self._act(signal, queued_at)
                return
            except PermanentError as e:
                log_event(log, "signal_failed", logging.ERROR, signal_id=signal.signal_id, error=str(e))
                return
            except TemporaryError as e:
                log_event(log, "signal_retry", logging.WARNING, signal_id=signal.signal_id, error=str(e))
                await asyncio.sleep(e.retry_after or delay)
                delay = min(delay * 2, 10.0)

    # ---- signals -> orders ----------------------------------------------------------------------

    async def _act(self, signal: Signal, queued_at: float) -> None:
        """Decide what to do about `signal` and store it with that action. When it trades, the signal,
        its action and the PENDING order are ONE write (`_commit`), and the request leaves right after
        it; anything else the store needs comes after the request (`after_commit_order`)."""
        if signal.action != PENDING:
            await self.store.insert_signal(signal)
            return  # decided already (e.g. missed while the bot was down): stored with its reason
        cid = client_order_id(signal.signal_id)
        if cid in self._orders:
            await self.store.insert_signal(signal)  # stored with its order already: changes nothing
            return  # this signal already has its order (a replay, a second delivery)
        if self._open_orders():
            await self._store_decided(signal, ORDER_IN_FLIGHT)
            return
        decision = decide(
            signal.side,
            self.position,
            self.filters,
            quote_amount=self.config.quote_amount,
            price=signal.close,
        )
        if not self.lease.may_trade():  # the local deadline: no round trip
            await self._standby(signal)
            return
        overlap = self._exclusive_store and isinstance(decision, OrderIntent)
        if not overlap and not await self._may_trade():
            await self._standby(signal)
            return
        if isinstance(decision, Skip):
            await self._store_decided(signal, decision.reason)
            return
        # On the wire now; its answer arrives during the risk gate's reserve and the commit.
        confirmed = self._confirm_during_commit() if overlap else None
        check: SendCheck | None = None  # a BUY's fleet reserve whose answer is read after the commit
        try:
            if self.risk is not None:  # the fleet's rules: kill switch, caps, rate (domain.risk)
                check = await self.risk.start_send(
                    signal.signal_id, decision.side, decision.quote_amount, self.position
                )
                denial = None
                if not overlap or check.answered:
                    denial = await self.risk.finish_send(check)
                    check = None
                if denial is not None:
                    if confirmed is not None and not await self._answer(confirmed):
                        await self._standby(signal)  # a denial is the leader's to store, like any action
                    else:
                        await self._store_decided(signal, denial)
                    return
            order = self._new_order(signal, cid, decision)
            decided = dataclasses.replace(signal, action=ORDER)
            self._prepare_submit(order)
            if not await self._commit(decided, order):
                if check is not None:  # reserved for this signal or not, the gate's books say so
                    await self._finish_risk(check)
                    check = None
                # Someone (another replica, an earlier run) stored it first, with the signal: follow
                # that order instead.
                existing = await self.store.get_order(cid)
                if existing is not None:
                    self._keep(existing)
                await self.store.insert_signal(signal)  # stored by that commit: changes nothing
                return
            self._keep(order)
            self.last_order = order
            self._crash_point("after_store")
            # The answers (the lease's, a BUY's reserve) arrived while the commit held the loop: read
            # from their sockets now, not at the loop's next turns (`RespClient.read_ready`).
            self._read_ready()
            # Nothing of ours is scheduled before the confirmation's answer is read: the loop turn
            # that reads it runs only what was already due.
            lost = confirmed is not None and not await self._answer(confirmed)
            denial = None
            if check is not None:
                denial = await self._finish_risk(check)
                check = None
            await self.store.after_commit_order(decided, order)
            if denial is not None and not lost:
                # The fleet's reserve said no while the order was being stored: it is closed here,
                # never sent ("not_sent: risk: ..."; logged as that, with no PENDING line before it:
                # a PENDING line means a request follows), and the signal's action is the denial, as
                # when the answer comes before the commit. A crash before this point leaves it PENDING
                # and unsent: `_never_sent` then asks the gate again, as for any such order.
                self._request_left()
                await self._close_unsent(order, denial)
                await self._store_decided(signal, denial)
                return
            # The PENDING line (replica tests count them) is written at the loop's next turn: once the
            # request is on its way (the send yields only after writing it), not in front of it (~0.1
            # ms of formatting and writing, measured with `bench.tick_to_order`).
            asyncio.get_running_loop().call_soon(self._log_order, order)
            if lost:
                # The lease was lost while the order was being stored: it stays PENDING and unsent,
                # for whoever leads next (`recover` / the reconcile loop: `_never_sent`).
                log_event(log, "order_send_standby", logging.WARNING, client_order_id=cid)
                self._request_left()
                return
        except BaseException as e:
            self._request_left()  # no request follows
            if check is not None and not isinstance(e, asyncio.CancelledError):
                # The reserve's answer still comes: the gate's books must say whether this signal
                # holds fleet room (a retry of this signal must not reserve it twice).
                with contextlib.suppress(Exception):
                    await self._finish_risk(check)
            raise
        finally:
            if confirmed is not None and not confirmed.done():
                confirmed.cancel()  # the commit failed (or we are stopping): its answer is moot
        await self._send(order, queued_at)
        log_event(log, "signal_action", signal_id=signal.signal_id, side=signal.side.value, action=ORDER)

    def _prepare_submit(self, order: Order) -> None:
        """The request signed before the commit, while the path is warm (`prepare_submit`, where the
        execution has it); whatever it refuses, `submit` refuses again and reports."""
        prepare = getattr(self.execution, "prepare_submit", None)
        if prepare is not None:
            with contextlib.suppress(Exception):
                prepare(order)

    def _read_ready(self) -> None:
        read = getattr(self.lease, "read_ready", None)
        if read is not None:
            read()
        if self.risk is not None:
            self.risk.read_ready()

    async def _finish_risk(self, check: SendCheck) -> str | None:
        assert self.risk is not None  # a check comes only from the gate
        return await self.risk.finish_send(check)

    def _request_left(self) -> None:
        """Tell a buffered store the request that follows the commit has left (or will not): its
        writer held off meanwhile (`BufferedStore.request_left`)."""
        if self._store_request_left is not None:
            self._store_request_left()

    def _confirm_during_commit(self) -> asyncio.Future[bool]:
        """The lease's confirmation (a read-only round trip to the coordinator), written to it now,
        before the risk gate's reserve and the order's commit; the request leaves only once it said
        yes (`Lease.start_confirm`: the answer is read while the commit blocks the loop).

        Only for an order, and only when no other process writes this store (`Store.exclusive`: an
        SQLite file under its one-writer lock). Then every outcome is one the order rules allow:
        - "no" (or no answer) after the commit: the PENDING order is stored and never sent, exactly
          as when the lease lapses between the commit and the send, or the process dies there: the
          next leader's `recover()` (or this process's reconcile loop once it leads again) asks the
          exchange, finds it never seen, and sends it with its one client order id (through the risk
          gate again) or closes it "not_sent: <reason>" (`_never_sent`), and the signal's action says so;
        - the risk gate denies: the denial is stored only once the lease is confirmed; a replica that
          turns out not to lead may have reserved fleet room it does not use, which tightens the cap
          until the reservation expires;
        - a BUY's fleet reserve (`RiskGate.start_send`) is on its way during the commit as well, and
          its answer read after it: a no closes the stored PENDING order unsent ("not_sent: risk:
          ...", the signal's action the denial itself), and a crash before that leaves a PENDING
          order unsent, which `_never_sent` takes through the gate again. An answer known before the
          commit (the in-process twin) is acted on before it, storing no order.
        A store other processes write too (MongoDB shared by replicas) keeps the confirmation before
        the risk gate and the commit: a replica that has lost the lease without knowing it yet must
        not replace, in the shared store, the action its successor stored."""
        try:
            return asyncio.ensure_future(self.lease.start_confirm())
        except Exception as e:  # cannot prove leadership: do not trade (fail closed)
            log_event(log, "lease_confirm_failed", logging.WARNING, error=repr(e)[:200])
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            answer.set_result(False)
            return answer

    async def _answer(self, confirmed: asyncio.Future[bool]) -> bool:
        """The confirmation's answer; anything but a yes (an error included) is a no."""
        try:
            return bool(await confirmed)
        except Exception as e:
            log_event(log, "lease_confirm_failed", logging.WARNING, error=repr(e)[:200])
            return False

    async def _standby(self, signal: Signal) -> None:
        # What is done about a signal is the leader's to record: a standby writing "standby" (or a
        # reason from its own, possibly stale, view of the position) into the shared store would
        # overwrite the leader's "order". It stores the signal as it came (pending) and only logs.
        await self.store.insert_signal(signal)
        log_event(log, "signal_action", signal_id=signal.signal_id, side=signal.side.value,
                  action=STANDBY, stored=False)  # fmt: skip

    async def _commit(self, signal: Signal, order: Order) -> bool:
        """The one durable write before the request: the signal with its action, and the PENDING order
        (`Store.commit_order`; atomic: both or neither). False if that order id is stored already."""
        return await self.store.commit_order(signal, order)

    async def _store_decided(self, signal: Signal, action: str) -> None:
        """Store `signal` with the reason it does not trade (new, or stored earlier as pending)."""
        await self.store.insert_signal(dataclasses.replace(signal, action=action))
        await self._set_action(signal, action)

    def _new_order(self, signal: Signal, cid: str, intent: OrderIntent) -> Order:
        now = self.clock()
        return Order(
            client_order_id=cid,
            bot=self.config.name,
            exchange=self.config.exchange,
            symbol=self.config.symbol,
            side=intent.side,
            order_type="MARKET",
            signal_id=signal.signal_id,
            status=OrderStatus.PENDING,
            created_at=now,
            updated_at=now,
            quantity=intent.quantity,
            quote_amount=intent.quote_amount,
            fencing_token=self.lease.fencing_token,
        )

    async def _may_trade(self) -> bool:
        if not self.lease.may_trade():
            return False
        try:
            return await self.lease.confirm()
        except Exception as e:  # cannot prove leadership: do not trade (fail closed)
            log_event(log, "lease_confirm_failed", logging.WARNING, error=repr(e)[:200])
            return False

    async def _send(self, order: Order, queued_at: float | None = None) -> None:
        """Send `order` (same id every time) until the exchange has it, refused it, or we must stop."""
        delay = 0.5
        for attempt in range(self.max_send_attempts):
            if attempt and not await self._may_trade():
                log_event(log, "order_send_standby", logging.WARNING, client_order_id=order.client_order_id)
                return  # still PENDING: whoever leads next reconciles it
            if not self.lease.may_trade():
                self._request_left()
                # The lease may have lapsed since `_act` confirmed it (the process was paused, a store
                # write was slow): the monotonic deadline costs nothing to check as the request leaves.
                log_event(log, "order_send_standby", logging.WARNING, client_order_id=order.client_order_id)
                return  # still PENDING: whoever leads next reconciles it
            start = time.monotonic()
            if queued_at is not None:
                self._signal_to_order(start - queued_at)
                queued_at = None
            self._last_send[order.client_order_id] = start
            # At the send's first yield, i.e. once its request is written: the feed goes on (`quiet`).
            asyncio.get_running_loop().call_soon(self._quiet.set)
            try:
                try:
                    update = await self.execution.submit(order)
                finally:
                    self._request_left()
            except OrderRejected as e:
                await self._reject(order, e)
                return
            except ExecutionUnknown as e:
                log_event(log, "order_unknown", logging.WARNING, client_order_id=order.client_order_id,
                          error=str(e))  # fmt: skip
                if await self._settle(order, wait=True):
                    return
                continue  # the exchange never saw it and never will: the same id may go again
            except RateLimited as e:
                await asyncio.sleep(e.retry_after or delay)
            except TemporaryError as e:
                log_event(log, "order_retry", logging.WARNING, client_order_id=order.client_order_id,
                          error=str(e))  # fmt: skip
                await asyncio.sleep(e.retry_after or delay)
            except PermanentError:
                raise
            except Exception as e:
                # Anything unexpected after the request may have left (a parse error, a bug): treat
                # it as an unknown outcome. Querying is always safe; guessing is not.
                log_event(log, "order_unknown", logging.ERROR, client_order_id=order.client_order_id,
                          error=repr(e)[:300])  # fmt: skip
                if await self._settle(order, wait=True):
                    return
                continue
            else:
                self._orders_sent[order.side].inc()
                self._crash_point("after_send")
                self._order_ack(time.monotonic() - start)
                await self._apply(update)
                return
            delay = min(delay * 2, 10.0)
        log_event(log, "order_send_gave_up", logging.ERROR, client_order_id=order.client_order_id)

    async def _resend(self, order: Order) -> None:
        """Send a stored PENDING order the exchange never saw, with its same id, if we lead."""
        if await self._may_trade():
            log_event(log, "order_resend", client_order_id=order.client_order_id)
            await self._send(order)

    async def _reject(self, order: Order, e: OrderRejected) -> None:
        self.metrics.orders_rejected.inc()
        await self._apply(
            OrderUpdate(
                client_order_id=order.client_order_id,
                status=OrderStatus.REJECTED,
                event_time=self.clock(),
                exec_type="REJECTED",
                reason=f"{e.code}: {e}" if e.code is not None else str(e),
                source="rest",
            )
        )
        await self.store.update_signal_action(order.signal_id, REJECTED)

    # ---- finding out what happened ----------------------------------------------------------------

    async def _settle(self, order: Order, *, wait: bool) -> bool:
        """Ask the exchange about `order` until it answers. True when the order's fate is known
        (applied, or marked not sent); False when it was never seen and may be sent again."""
        cid = order.client_order_id
        delay = 0.25
        while True:
            try:
                update = await self.execution.query(order)
            except TemporaryError as e:
                if not wait:
                    return True
                await asyncio.sleep(e.retry_after or delay)
                delay = min(delay * 2, 5.0)
                continue
            if update is not None:
                await self._apply(update)
                return True
            left = self._last_send.get(cid, 0.0) + self.unknown_settle_s - time.monotonic()
            if left > 0:
                if not wait:
                    return True
                await asyncio.sleep(min(left, delay))
                delay = min(delay * 2, 2.0)
                continue
            current = self._orders.get(cid, order)
            if current.status is not OrderStatus.PENDING:
                log_event(log, "order_unknown_to_exchange", logging.WARNING, client_order_id=cid,
                          status=current.status.value)  # fmt: skip
                return True
            return await self._never_sent(current)

    async def _never_sent(self, order: Order) -> bool:
        """A PENDING order the exchange never saw: send it again (same id) if its signal still wants
        it and we lead; otherwise close it locally with the reason. True when closed."""
        signal = await self._find_signal(order.signal_id)
        decision: OrderIntent | Skip
        if signal is None:
            decision = Skip("signal_missing")
        else:
            decision = decide(
                signal.side, self.position, self.filters, quote_amount=self.config.quote_amount, price=None
            )
        if isinstance(decision, OrderIntent) and decision.side is order.side:
            # Sent again only through the fleet's gate, like the first time: a halt set, or a cap
            # reached, while the order sat unsent (a crash, a restart) closes it with that reason.
            denial = None
            if self.risk is not None:
                denial = await self.risk.before_send(
                    order.signal_id, order.side, order.quote_amount, self.position
                )
            if denial is None:
                return False
            reason = denial
        else:
            reason = decision.reason if isinstance(decision, Skip) else "side_changed"
        await self._close_unsent(order, reason)
        await self.store.update_signal_action(order.signal_id, f"{NOT_SENT}: {reason}")
        return True

    async def _close_unsent(self, order: Order, reason: str) -> None:
        """Close a stored PENDING order the exchange never got, here: CANCELED, `not_sent: <reason>`."""
        await self._apply(
            OrderUpdate(
                client_order_id=order.client_order_id,
                status=OrderStatus.CANCELED,
                event_time=self.clock(),
                exec_type="CANCELED",
                reason=f"{NOT_SENT}: {reason}",
                source="local",
            )
        )

    async def _find_signal(self, signal_id: str) -> Signal | None:
        for s in await self.store.signals(self.config.name):
            if s.signal_id == signal_id:
                return s
        return None

    async def _take_over_latest_signal(self) -> None:
        """Every stored signal still `pending` with no order gets an outcome (#11): the newest is
        acted on (if it is the newest signal of all), the older ones are stored as superseded.
        Before, only the newest stored signal was looked at, and older pending ones stayed pending
        for good (after 40 kill -9 restarts, 6 of them, two SELLs while long)."""
        signals = await self.store.signals(self.config.name)
        if not signals:
            return
        ordered = sorted(signals, key=lambda s: (s.candle_close_time, s.created_at))
        latest = ordered[-1]
        if not await self._may_trade():
            return  # the leader's to decide; a standby writes nothing
        for s in ordered[:-1]:
            if s.action == PENDING and client_order_id(s.signal_id) not in self._orders:
                log_event(log, "signal_superseded", signal_id=s.signal_id, by=latest.signal_id)
                await self._set_action(s, f"{SUPERSEDED} by {latest.signal_id}")
        if client_order_id(latest.signal_id) in self._orders or latest.action not in (PENDING, STANDBY):
            return
        log_event(log, "signal_takeover", signal_id=latest.signal_id, side=latest.side.value)
        await self._act(dataclasses.replace(latest, action=PENDING), time.monotonic())

    async def _check_exchange_open_orders(self) -> None:
        try:
            open_ = await self.execution.open_orders(self.config.symbol)
        except TemporaryError as e:
            log_event(log, "open_orders_unavailable", logging.WARNING, error=str(e))
            return
        for u in open_:
            if u.client_order_id in self._orders:
                await self._apply(u)
            elif is_ours(u.client_order_id):
                log_event(log, "unknown_open_order", logging.ERROR, client_order_id=u.client_order_id)

    # ---- applying reports -------------------------------------------------------------------------

    async def _apply(self, update: OrderUpdate) -> None:
        cid = update.client_order_id
        order = self._orders.get(cid)
        if order is None:
            order = await self.store.get_order(cid) if is_ours(cid) else None
            if order is None:
                return  # not ours (a manual order on the same account)
        # The store keeps the history and its own forward-only document; the manager's view follows
        # the same pure merge, which also takes a REST query's fee total at once (the store waits
        # for the individual fills), so the position is right as soon as the answer arrives.
        await self.store.apply_order_update(update)
        new = merge_update(order, update)
        seen = self._updates_seen.get(update.status)
        if seen is None:
            seen = self._updates_seen[update.status] = self.metrics.order_updates.labels(update.status.value)
        seen.inc()
        self._keep(new)
        if new == order:
            return
        if self.last_order is None or new.created_at >= self.last_order.created_at:
            self.last_order = new
        self._log_order(new)
        if new.filled_qty != order.filled_qty or new.fee != order.fee:
            self._refresh_position(new)
            await self._save_position()
        if self.risk is not None and new.status.is_final and not self._open_orders():
            await self.risk.order_final(self.position)  # the reservation becomes what is held
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await self.publisher.publish("order", _order_payload(new))

    async def _consume_updates(self) -> None:
        async for update in self.execution.updates():
            delay = 0.5
            while True:
                try:
                    async with self._lock:
                        await self._apply(update)
                    break
                except TemporaryError as e:
                    cid = update.client_order_id
                    log_event(log, "order_update_retry", logging.WARNING, client_order_id=cid, error=str(e))
                    await asyncio.sleep(e.retry_after or delay)
                    delay = min(delay * 2, 10.0)

    async def _reconcile_loop(self) -> None:
        """The stream may be down or silent: ask the exchange about every non-final order."""
        while True:
            await asyncio.sleep(self.reconcile_interval_s)
            if not self.trading_ready:
                continue  # recover() is reconciling right now
            try:
                async with self._lock:
                    for order in self._open_orders():
                        if not await self._settle(order, wait=False) and order.status is OrderStatus.PENDING:
                            await self._resend(order)
                    if (
                        not self._open_orders()
                        and time.monotonic() - self._position_checked >= POSITION_CHECK_S
                    ):
                        await self.position_check.check(self.position.qty)
                        self._position_checked = time.monotonic()
            except TemporaryError as e:
                log_event(log, "reconcile_failed", logging.WARNING, error=str(e))

    # ---- helpers ------------------------------------------------------------------------------------

    def _open_orders(self) -> list[Order]:
        return list(self._open.values())

    def _keep(self, order: Order) -> None:
        cid = order.client_order_id
        self._orders[cid] = order
        if order.status.is_final:
            self._open.pop(cid, None)
        else:
            self._open[cid] = order

    def _refresh_position(self, changed: Order | None = None) -> None:
        """The position again: from `changed` on when one order changed (nothing sorted), else from
        every order (a reload)."""
        fold = self._fold
        self.position = fold.put(changed) if changed is not None else fold.position(self._orders.values())
        self.metrics.position_qty.set(float(self.position.qty))

    async def _save_position(self) -> None:
        if not self.lease.may_trade():
            # The positions row is the leader's (#11): a standby's view is only as complete as the
            # reports it happened to see, and writing it overwrote the leader's. Order updates are
            # the exchange's facts, merged forward-only, so any replica may still record those.
            return
        try:
            await self.store.save_position(self.position)
        except TemporaryError as e:
            # The orders are the truth; the saved position is a convenience copy rebuilt on restart.
            log_event(log, "position_save_failed", logging.WARNING, error=str(e))

    async def _set_action(self, signal: Signal, action: str) -> None:
        await self.store.update_signal_action(signal.signal_id, action)
        log_event(log, "signal_action", signal_id=signal.signal_id, side=signal.side.value, action=action)

    def _log_order(self, order: Order) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # (the fields cost more than the call: backtests log warnings only)
        log_event(
            log,
            "order",
            client_order_id=order.client_order_id,
            exchange_order_id=order.exchange_order_id,
            side=order.side.value,
            status=order.status.value,
            filled_qty=order.filled_qty,
            avg_price=order.avg_price,
            signal_id=order.signal_id,
            fencing_token=order.fencing_token,
        )

    def _crash_point(self, name: str) -> None:
        if self.crash_at == name:
            os.kill(os.getpid(), signal_mod.SIGKILL)


def _unmeasured(seconds: float) -> None:
    """A latency nobody measures (see `OrderManager(timed=False)`)."""


def _order_payload(o: Order) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(o):
        v = getattr(o, f.name)
        out[f.name] = (
            str(v) if isinstance(v, Decimal) else (v.value if isinstance(v, Side | OrderStatus) else v)
        )
    out["avg_price"] = None if o.avg_price is None else str(o.avg_price)
    return out
