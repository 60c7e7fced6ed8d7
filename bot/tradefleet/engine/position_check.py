"""The stored position against the exchange account: a disagreement is loud, never silent (#11).

Why it exists: the position is a fold over the stored orders, so it can only be as right as the store.
A database deleted or restored from an old copy, an order placed by hand or by a second process, or a
fill whose report was lost all leave a bot believing one quantity while the account holds another
(seen: 0.0115 BTC believed, 0.0256 BTC held). The order manager asks on start, on every takeover and
periodically; a difference of one lot step or more is a metric (`tradefleet_position_mismatch_qty`),
a `position_mismatch` event (log and event stream), a stored event record (once per episode: when the
disagreement begins or its numbers change, and a `position_match` record when it ends, never one per
check) and a failed readiness check naming both numbers.

Assumption, stated: the account's base asset belongs to this bot (one bot per account and base
asset, as the chart deploys them). An account shared with other holdings reads as a mismatch.
What it refuses to do: correct either side. Which one is right is an operator's call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tradefleet.domain.ids import event_id
from tradefleet.domain.models import BotEvent, EventKind
from tradefleet.errors import TemporaryError
from tradefleet.logs import log_event, now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.ports import EventPublisher, Store

log = logging.getLogger("tradefleet.position_check")


class PositionCheck:
    def __init__(
        self,
        execution: Any,
        metrics: BotMetrics,
        step: Decimal,
        publisher: EventPublisher | None = None,
        *,
        bot: str = "",
        store: Store | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._balance = getattr(execution, "base_balance", None)  # None: paper mode (its own account)
        self.metrics = metrics
        self.step = step if step > 0 else Decimal("1e-8")
        self.publisher = publisher
        self.mismatch: str | None = None
        """Why the stored position disagrees with the account; None while they agree (or unknown)."""
        self.bot = bot
        self.store = store
        self.clock = clock
        self._last_record_ms = 0
        self.episode_ms: int | None = None
        """When the current mismatch episode began (this process's clock); None while they agree."""

    async def check(self, position_qty: Decimal) -> None:
        """Compare once. Call only with no order open (a fill in flight moves the account first)."""
        if self._balance is None:
            return
        try:
            held: Decimal = await self._balance()
        except TemporaryError as e:
            log_event(log, "position_check_unavailable", logging.WARNING, error=str(e)[:200])
            return
        diff = held - position_qty
        self.metrics.position_mismatch.set(float(diff))
        fields = {"position_qty": str(position_qty), "account_qty": str(held), "difference": str(diff)}
        if abs(diff) < self.step:
            if self.mismatch is not None:
                log_event(log, "position_match", position_qty=position_qty, account_qty=held)
                await self._record(EventKind.POSITION_MATCH, f"stored position agrees with the account again "
                                   f"({position_qty})", fields)  # fmt: skip
            self.mismatch = None
            self.episode_ms = None
            return
        detail = f"stored position {position_qty} but the exchange account holds {held} (difference {diff})"
        if detail != self.mismatch:
            if self.episode_ms is None:
                self.episode_ms = self.clock()
            await self._record(EventKind.POSITION_MISMATCH, detail, fields)
            log_event(log, "position_mismatch", logging.ERROR, position_qty=position_qty, account_qty=held,
                      difference=diff)  # fmt: skip
            if self.publisher is not None:
                try:
                    await self.publisher.publish(
                        "position_mismatch",
                        {
                            "position_qty": str(position_qty),
                            "account_qty": str(held),
                            "difference": str(diff),
                        },
                    )
                except Exception as e:  # best effort, like every event; the log and metric have it
                    log_event(log, "publish_failed", logging.WARNING, kind="position_mismatch", error=str(e))
        self.mismatch = detail

    async def _record(self, kind: EventKind, summary: str, fields: dict[str, str]) -> None:
        """Store the episode's record (the buffered store queues it through an outage, never drops it).
        The id names the episode and its numbers, so a repeated write of the same record is a no-op."""
        if self.store is None or not self.bot:
            return
        # Strictly after this check's previous record (a tie would be listed in the order of the ids).
        at = self._last_record_ms = max(self.clock(), self._last_record_ms + 1)
        key = f"{self.episode_ms}:{fields['position_qty']}:{fields['account_qty']}"
        event = BotEvent(event_id(self.bot, kind.value, key), self.bot, kind, at, summary,
                         {**fields, "episode_started_ms": str(self.episode_ms)})  # fmt: skip
        try:
            await self.store.insert_event(event)
        except Exception as e:  # a store that refuses: the log, metric and /readyz still say it
            log_event(log, "event_store_failed", logging.WARNING, kind=kind.value, error=str(e)[:200])
