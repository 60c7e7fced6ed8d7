"""Binance Spot's documented limits, enforced: request weight per IP per minute, orders per account
per 10 s and per day, and 5 incoming websocket messages a second.

Why: a testnet in a box is where a bot learns to stay inside the limits. Breaking one answers like
Binance: HTTP 429 `-1003` (weight) or `-1015` (orders) with `Retry-After` seconds to the end of the
window; an IP that keeps sending while limited (`ban_after` more requests inside one window) is
banned with HTTP 418 for 2 minutes, doubling for each repeat ban (Binance: "from 2 minutes to 3
days"). Every answer carries `X-MBX-USED-WEIGHT-1M` and order answers `X-MBX-ORDER-COUNT-10S` /
`X-MBX-ORDER-COUNT-1D`.

Windows are fixed intervals of the limiter's clock (minute boundaries, like Binance), read from a
`Clock`: the exchange clock when it runs at real rate (so a test's `ManualClock` drives them), the
wall clock while an accelerated kline replay races ahead (a limit per replayed minute would be no
limit). `enforce=False` keeps the counters and headers and never refuses (`SimOptions.enforce_limits`).

Weights (`weight_for`) follow the spot REST documentation per endpoint and parameters; an unlisted
path weighs 1. What it refuses: per-UID weight (Binance counts weight per IP) and RAW_REQUESTS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tradefleet_sim.clock import Clock

MINUTE, TEN_S, DAY = 60_000, 10_000, 86_400_000
BAN_MS = 120_000

# (method, path) -> weight when it does not depend on parameters.
_FIXED: dict[tuple[str, str], int] = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/trades"): 25,
    ("GET", "/api/v3/historicalTrades"): 25,
    ("GET", "/api/v3/aggTrades"): 4,
    ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/uiKlines"): 2,
    ("GET", "/api/v3/avgPrice"): 2,
    ("POST", "/api/v3/order"): 1,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("POST", "/api/v3/order/cancelReplace"): 1,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/allOrders"): 20,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/rateLimit/order"): 40,
    ("GET", "/api/v3/account/commission"): 20,
    ("POST", "/api/v3/userDataStream"): 2,
    ("PUT", "/api/v3/userDataStream"): 2,
    ("DELETE", "/api/v3/userDataStream"): 2,
}
ORDER_PATHS = {("POST", "/api/v3/order"), ("POST", "/api/v3/order/cancelReplace")}


def depth_weight(limit: int) -> int:
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _symbols_count(query: Mapping[str, str]) -> int | None:
    """1 with `symbol`, the list's length with `symbols`, None for "all symbols"."""
    if query.get("symbol"):
        return 1
    raw = query.get("symbols")
    if raw:
        return max(1, raw.count(",") + 1)
    return None


def weight_for(method: str, path: str, query: Mapping[str, str]) -> int:
    fixed = _FIXED.get((method, path))
    if fixed is not None:
        return fixed
    n = _symbols_count(query)
    if path == "/api/v3/depth":
        raw = query.get("limit", "100")
        return depth_weight(int(raw) if raw.isdigit() else 100)
    if path == "/api/v3/ticker/24hr":
        return 80 if n is None or n > 100 else 2 if n <= 20 else 40
    if path in ("/api/v3/ticker/price", "/api/v3/ticker/bookTicker"):
        return 2 if n == 1 else 4
    if path == "/api/v3/ticker":
        return 4 * min(n or 1, 50)
    if path == "/api/v3/openOrders":
        return 6 if n == 1 else 80
    if path == "/api/v3/myTrades":
        return 5 if query.get("orderId") else 20
    if path == "/api/v3/order/test":
        return 20 if query.get("computeCommissionRates") == "true" else 1
    return 1


@dataclass
class _Window:
    start: int = -1
    used: int = 0

    def count(self, now: int, size: int) -> int:
        start = now - now % size
        if start != self.start:
            self.start, self.used = start, 0
        return self.used

    def retry_after_s(self, now: int, size: int) -> int:
        return max(1, -(-(self.start + size - now) // 1000))


@dataclass
class _Ip:
    weight: _Window = field(default_factory=_Window)
    strikes: int = 0
    strikes_window: int = -1
    banned_until: int = 0
    bans: int = 0


@dataclass(frozen=True)
class Refusal:
    status: int
    code: int
    msg: str
    retry_after_s: int


class RateLimits:
    def __init__(
        self,
        clock: Clock,
        *,
        weight_limit: int,
        enforce: bool,
        orders_10s: int = 100,
        orders_day: int = 200_000,
    ) -> None:
        self.clock = clock
        self.weight_limit = weight_limit
        self.enforce = enforce
        self.orders_10s, self.orders_day = orders_10s, orders_day
        self.ban_after = 5
        self._ips: dict[str, _Ip] = {}
        self._orders: dict[str, tuple[_Window, _Window]] = {}
        self.refused = {"429": 0, "418": 0}

    def request(self, ip: str, weight: int) -> Refusal | None:
        """Count one request of `weight`; a Refusal (429/418) if it must not run."""
        now = self.clock.now_ms()
        state = self._ips.setdefault(ip, _Ip())
        if self.enforce and now < state.banned_until:
            self.refused["418"] += 1
            return Refusal(
                418,
                -1003,
                f"Way too much request weight used; IP banned until {state.banned_until}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
                max(1, -(-(state.banned_until - now) // 1000)),
            )
        used = state.weight.count(now, MINUTE)
        if self.enforce and used + weight > self.weight_limit:
            if state.strikes_window != state.weight.start:
                state.strikes_window, state.strikes = state.weight.start, 0
            state.strikes += 1
            if state.strikes > self.ban_after:
                state.bans += 1
                state.banned_until = now + BAN_MS * 2 ** (state.bans - 1)
                state.strikes = 0
            self.refused["429"] += 1
            return Refusal(
                429,
                -1003,
                f"Too much request weight used; current limit is {self.weight_limit} request weight "
                "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                state.weight.retry_after_s(now, MINUTE),
            )
        state.weight.used = used + weight
        return None

    def used_weight(self, ip: str) -> int:
        state = self._ips.get(ip)
        return state.weight.count(self.clock.now_ms(), MINUTE) if state else 0

    def total_weight(self) -> int:
        return sum(self.used_weight(ip) for ip in self._ips)

    def order(self, api_key: str) -> Refusal | None:
        """Count one new order for the account; -1015 when over either order limit."""
        now = self.clock.now_ms()
        ten, day = self._orders.setdefault(api_key, (_Window(), _Window()))
        n10, nday = ten.count(now, TEN_S), day.count(now, DAY)
        if self.enforce and n10 + 1 > self.orders_10s:
            return Refusal(
                429,
                -1015,
                f"Too many new orders; current limit is {self.orders_10s} orders per 10 SECOND.",
                ten.retry_after_s(now, TEN_S),
            )
        if self.enforce and nday + 1 > self.orders_day:
            return Refusal(
                429,
                -1015,
                f"Too many new orders; current limit is {self.orders_day} orders per DAY.",
                day.retry_after_s(now, DAY),
            )
        ten.used, day.used = n10 + 1, nday + 1
        return None

    def order_counts(self, api_key: str) -> tuple[int, int]:
        now = self.clock.now_ms()
        ten, day = self._orders.get(api_key, (_Window(), _Window()))
        return ten.count(now, TEN_S), day.count(now, DAY)

    def describe(self) -> dict[str, object]:
        return {
            "enforce": self.enforce,
            "weight_limit": self.weight_limit,
            "refused": dict(self.refused),
            "banned": {
                ip: s.banned_until for ip, s in self._ips.items() if s.banned_until > self.clock.now_ms()
            },
        }


class MessageRate:
    """Binance's 5 incoming messages per second per websocket connection."""

    def __init__(self, clock: Clock, *, per_second: int, enforce: bool) -> None:
        self.clock = clock
        self.per_second = per_second
        self.enforce = enforce
        self._window = _Window()

    def allow(self) -> bool:
        n = self._window.count(self.clock.now_ms(), 1000)
        self._window.used = n + 1
        return not self.enforce or n + 1 <= self.per_second
