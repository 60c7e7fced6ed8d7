"""Risk rules: a proposed order, what the bot knows about the fleet, and the limits in; None (allow)
or a reason out. Pure: no clock (times are passed in), no I/O, Decimal only.

The order manager asks `check_order` before every send. A denial is a reason string that gets stored
as the signal's action ("risk: halted (…)", "risk: position_cap", …), never an exception: the record
says why nothing was sent. The fleet-wide part (the kill switch, the exposure of every bot) lives in
Redis (`coord.risk_state`); this module holds the arithmetic both the Redis scripts and the
in-process fallback follow, so they can be tested against each other.

What the rules guarantee and what they do not is written in DESIGN.md ("Risk controls"). In short:
- a halt (kill switch, loss limit, order-rate trip) refuses every new order except the halt's own
  flatten orders;
- a bot that has not learnt the switch state recently (Redis unreachable) opens nothing (BUY), but
  may still close (SELL): closing only ever lowers exposure;
- caps are on notional at cost (quote spent), checked before a BUY leaves, never on market value
  afterwards: a position that grows in value is not cut;
- loss limits are checked on equity marks the caller supplies (realized + unrealized at the mark).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from tradefleet.domain.models import Position, Side

ZERO = Decimal(0)
MINUTE_MS = 60_000
DAY_MS = 86_400_000
FLATTEN_PREFIX = "flatten:"

# Denial reasons (the signal's stored action is "risk: <reason>").
HALTED = "halted"
STATE_UNKNOWN = "risk_state_unknown"
POSITION_CAP = "position_cap"
FLEET_CAP = "fleet_cap"
QUOTE_ASSET_CAP = "quote_asset_cap"
ORDER_RATE = "order_rate"
# Reasons a bot trips its own halt with.
DAILY_LOSS = "daily_loss"
DRAWDOWN = "drawdown"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Per-bot and per-fleet limits; 0 means "no limit" for each one."""

    max_position_quote: Decimal = ZERO
    """Largest position one bot may open, in quote spent (the BUY's quote amount)."""
    max_fleet_quote: Decimal = ZERO
    """Largest total exposure of every bot in the scope, in quote."""
    max_quote_asset_quote: Decimal = ZERO
    """Largest total exposure of the bots in the scope that trade against the same quote asset."""
    max_daily_loss_quote: Decimal = ZERO
    """Realized + unrealized loss since the start of the UTC day that halts the bot."""
    max_drawdown_quote: Decimal = ZERO
    """Fall of equity from its highest mark that halts the bot."""
    max_orders_per_minute: int = 0
    """Orders one bot may send in any 60 s; one more trips the bot's halt (a runaway loop)."""
    max_fleet_daily_loss_quote: Decimal = ZERO
    """Sum of every live bot's loss since 00:00 UTC in the scope that halts the whole fleet."""
    max_fleet_drawdown_quote: Decimal = ZERO
    """Fall of the fleet's summed equity from its highest mark that halts the whole fleet."""


FLEET_LIMIT_FIELDS = (
    "max_fleet_quote",
    "max_quote_asset_quote",
    "max_fleet_daily_loss_quote",
    "max_fleet_drawdown_quote",
)
"""The limits a fleet (a TradingFleet, mirrored into Redis) may set for every bot of its scope."""


def merge_limits(own: RiskLimits, fleet: RiskLimits) -> RiskLimits:
    """The bot's own limits tightened by the fleet's: for each fleet limit the smaller of the two that
    are set (0 = not set). A fleet can lower a bot's limit, never loosen it."""
    changes = {}
    for name in FLEET_LIMIT_FIELDS:
        mine, theirs = getattr(own, name), getattr(fleet, name)
        if theirs > 0 and (mine <= 0 or theirs < mine):
            changes[name] = theirs
    return replace(own, **changes) if changes else own


@dataclass(frozen=True, slots=True)
class Halt:
    """A kill switch in force: the whole scope (`bot` None) or one bot. Who, why and when are kept
    so every refusal can point at the decision that caused it."""

    halt_id: str
    reason: str
    by: str
    at_ms: int
    bot: str | None = None
    flatten: bool = False

    @property
    def scope(self) -> str:
        return "fleet" if self.bot is None else f"bot {self.bot}"

    def describe(self) -> str:
        """Who halted what, why and when: the text stored on every signal this halt refuses."""
        when = ""
        if self.at_ms > 0:
            when = " at " + dt.datetime.fromtimestamp(self.at_ms / 1000, dt.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        return f"{self.scope}: {self.reason}; by {self.by}{when}"


@dataclass(frozen=True, slots=True)
class RiskView:
    """What the bot knows right now about the switch and its own orders."""

    halts: tuple[Halt, ...] = ()
    state_known: bool = True
    """False when the switch state could not be read recently (Redis unreachable)."""
    recent_orders_ms: tuple[int, ...] = ()
    """Send times (ms) of this bot's recent orders, for the order-rate guard."""


def flatten_signal_id(halt: Halt, bot: str) -> str:
    """The signal id of the one SELL a flatten halt asks of `bot`: a pure function of the halt, so a
    restart, a second replica or a repeated poll computes the same id and the order is placed once."""
    return f"{FLATTEN_PREFIX}{halt.halt_id}:{bot}"


def is_flatten(signal_id: str) -> bool:
    return signal_id.startswith(FLATTEN_PREFIX)


def deny(reason: str, detail: str = "") -> str:
    return f"risk: {reason}" + (f" ({detail})" if detail else "")


def check_order(
    side: Side,
    quote_amount: Decimal | None,
    position: Position,
    *,
    signal_id: str,
    view: RiskView,
    limits: RiskLimits,
    now_ms: int,
) -> str | None:
    """None when the order may leave, else the reason it may not (see module docstring)."""
    flatten = is_flatten(signal_id)
    if view.halts and not (flatten and side is Side.SELL):
        return deny(HALTED, view.halts[0].describe())
    if flatten:
        return None  # the halt's own SELL: closing is what was asked for
    if not view.state_known and side is Side.BUY:
        return deny(STATE_UNKNOWN, "cannot read the kill switch; opening nothing")
    if limits.max_orders_per_minute > 0:
        n = orders_in_last_minute(view.recent_orders_ms, now_ms)
        if n >= limits.max_orders_per_minute:
            return deny(ORDER_RATE, f"{n} orders in 60 s, limit {limits.max_orders_per_minute}")
    if side is Side.BUY and limits.max_position_quote > 0:
        after = position.cost_quote + (quote_amount or ZERO)
        if after > limits.max_position_quote:
            return deny(POSITION_CAP, f"{after} > {limits.max_position_quote}")
    return None


def orders_in_last_minute(times_ms: Iterable[int], now_ms: int) -> int:
    return sum(1 for t in times_ms if now_ms - MINUTE_MS < t <= now_ms)


# ---- fleet exposure: the arithmetic of the atomic reserve (Redis script and in-process) --------


@dataclass(frozen=True, slots=True)
class Exposure:
    """One bot's entry in the scope's exposure table: quote held or reserved, until `expires_ms`
    unless the bot renews it (a bot that died stops counting after the TTL)."""

    amount: Decimal
    quote_asset: str
    expires_ms: int


def live_entries(table: Mapping[str, Exposure], now_ms: int) -> dict[str, Exposure]:
    return {bot: e for bot, e in table.items() if e.expires_ms > now_ms}


def try_reserve(
    table: Mapping[str, Exposure],
    bot: str,
    quote_asset: str,
    amount: Decimal,
    *,
    limits: RiskLimits,
    now_ms: int,
    ttl_ms: int,
) -> tuple[dict[str, Exposure], str | None]:
    """Add `amount` to `bot`'s entry if every cap still holds with it; expired entries are dropped.
    Returns the new table and None, or the unchanged (but purged) table and the denial reason.
    Exactly what `coord.risk_state`'s Lua script does, inside Redis, in one step."""
    live = live_entries(table, now_ms)
    own = live.get(bot)
    total = sum((e.amount for e in live.values()), ZERO)
    same_quote = sum((e.amount for e in live.values() if e.quote_asset == quote_asset), ZERO)
    if limits.max_fleet_quote > 0 and total + amount > limits.max_fleet_quote:
        return live, deny(FLEET_CAP, f"{total} held + {amount} > {limits.max_fleet_quote}")
    if limits.max_quote_asset_quote > 0 and same_quote + amount > limits.max_quote_asset_quote:
        return live, deny(
            QUOTE_ASSET_CAP, f"{quote_asset}: {same_quote} + {amount} > {limits.max_quote_asset_quote}"
        )
    live[bot] = Exposure((own.amount if own else ZERO) + amount, quote_asset, now_ms + ttl_ms)
    return live, None


def set_exposure(
    table: Mapping[str, Exposure], bot: str, quote_asset: str, amount: Decimal, *, now_ms: int, ttl_ms: int
) -> dict[str, Exposure]:
    """Replace `bot`'s entry (release, renew, or re-register after a restart): 0 removes it. Never
    refused: it records what the bot really holds, which may exceed a cap that was lowered."""
    live = live_entries(table, now_ms)
    if amount > 0:
        live[bot] = Exposure(amount, quote_asset, now_ms + ttl_ms)
    else:
        live.pop(bot, None)
    return live


def position_exposure(position: Position) -> Decimal:
    """The notional a position holds for the caps: what it cost (fees included)."""
    return position.cost_quote if position.qty > 0 else ZERO


# ---- loss limits ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EquityTrack:
    """Equity marks of one bot: the UTC day they belong to, equity at its start, the peak."""

    day: int = -1
    day_start: Decimal = ZERO
    peak: Decimal = ZERO


def equity(position: Position, mark: Decimal | None) -> Decimal:
    """Realized P&L plus the open position valued at `mark` (at cost when there is no mark)."""
    value = position.qty * mark if mark is not None else position.cost_quote
    return position.realized_pnl_quote + value - position.cost_quote


def track_equity(track: EquityTrack, value: Decimal, now_ms: int) -> EquityTrack:
    day = now_ms // DAY_MS
    if day != track.day:
        track = EquityTrack(
            day=day, day_start=value, peak=max(track.peak, value) if track.day >= 0 else value
        )
    return replace(track, peak=max(track.peak, value))


def loss_breach(track: EquityTrack, value: Decimal, limits: RiskLimits) -> str | None:
    """The reason to halt when today's loss or the drawdown from peak reaches its limit."""
    loss = track.day_start - value
    if limits.max_daily_loss_quote > 0 and loss >= limits.max_daily_loss_quote:
        return f"{DAILY_LOSS}: lost {loss} today, limit {limits.max_daily_loss_quote}"
    drawdown = track.peak - value
    if limits.max_drawdown_quote > 0 and drawdown >= limits.max_drawdown_quote:
        return f"{DRAWDOWN}: {drawdown} below peak {track.peak}, limit {limits.max_drawdown_quote}"
    return None


def fleet_loss_breach(day_pnl: Mapping[str, Decimal], limits: RiskLimits) -> str | None:
    """The reason to halt the fleet when the bots' summed P&L today reaches the fleet's loss limit."""
    if limits.max_fleet_daily_loss_quote <= 0 or not day_pnl:
        return None
    loss = -sum(day_pnl.values(), ZERO)
    if loss >= limits.max_fleet_daily_loss_quote:
        cap = limits.max_fleet_daily_loss_quote
        return f"fleet_{DAILY_LOSS}: {len(day_pnl)} bots lost {loss} today, limit {cap}"
    return None


@dataclass(frozen=True, slots=True)
class FleetEquity:
    """The fleet's summed equity (every live bot's realized + unrealized P&L) and its highest mark.

    Bots joining or leaving move the peak with the sum (like a deposit or a withdrawal), so only the
    members' own gains and losses move the drawdown: a bot paused with a profit does not look like a
    fall of the fleet's equity, and a new bot does not hide one. Resuming the fleet drops the peak
    (the drawdown so far is accepted), or the limit would trip again at the next poll."""

    total: Decimal = ZERO
    peak: Decimal | None = None
    members: int = 0

    @property
    def drawdown(self) -> Decimal:
        return ZERO if self.peak is None else self.peak - self.total


def report_equity(
    table: Mapping[str, tuple[Decimal, int]],
    peak: Decimal | None,
    bot: str,
    value: Decimal,
    *,
    now_ms: int,
    ttl_ms: int,
) -> tuple[dict[str, tuple[Decimal, int]], FleetEquity]:
    """`bot` reports its equity: the new table ({bot: (equity, expires_ms)}) and fleet equity. What
    `coord.risk_state`'s `_EQUITY` script does inside Redis, in one step."""
    live: dict[str, tuple[Decimal, int]] = {}
    for member, (amount, expires) in table.items():
        if expires <= now_ms:
            if peak is not None:
                peak -= amount  # left the fleet: its equity leaves the peak too
        else:
            live[member] = (amount, expires)
    if bot not in live and peak is not None:
        peak += value  # joined: it brings its equity into the peak too
    live[bot] = (value, now_ms + ttl_ms)
    total = sum((a for a, _ in live.values()), ZERO)
    peak = total if peak is None or total > peak else peak
    return live, FleetEquity(total=total, peak=peak, members=len(live))


def fleet_drawdown_breach(fleet: FleetEquity, limits: RiskLimits) -> str | None:
    """The reason to halt the fleet when its summed equity fell the fleet's drawdown limit from peak."""
    cap = limits.max_fleet_drawdown_quote
    if cap <= 0 or fleet.peak is None:
        return None
    if fleet.drawdown >= cap:
        return f"fleet_{DRAWDOWN}: {fleet.members} bots {fleet.drawdown} below peak {fleet.peak}, limit {cap}"
    return None


def halts_for(halts: Sequence[Halt], bot: str) -> tuple[Halt, ...]:
    """The halts that apply to `bot`, the fleet's first."""
    return tuple(
        sorted((h for h in halts if h.bot in (None, bot)), key=lambda h: (h.bot is not None, h.at_ms))
    )
