"""Faults on demand: the failures a real exchange connection goes through, made reproducible.

One request shape serves `POST /sim/faults`, the CLI's `--fault` and `--fault-every`:

    {"kind": "drop"}                                   cut every websocket (no close handshake)
    {"kind": "gap", "diffs": 5, "symbol": "BTCUSDT"}   apply the next N diffs without sending them
    {"kind": "malformed", "count": 3, "shape": "mixed"} invalid_json | truncated | wrong_types |
                                                       bad_numbers | mixed
    {"kind": "stall", "seconds": 3}                    websockets stay open and silent, then resume
    {"kind": "slow_rest", "delay_ms": 500, "count": 10} delay REST replies (count omitted: until cleared)
    {"kind": "fail_rest", "status": 429, "count": 2, "retry_after": 1}   429 | 418 | 500 | 503
    {"kind": "server_shutdown", "close_after": 1.0}    send serverShutdown, close 1001 after the grace
    {"kind": "clear"}                                  end stall/slow/fail faults

Unknown kinds or keys are rejected with the list of valid ones (a typo must not be a silent
no-op in a fault test). Every applied fault is counted in `counters`, shown by `/sim/state`.
The controller owns only fault state; the hub, markets and REST middleware consult it.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tradefleet_sim.hub import Client, Hub, dumps
from tradefleet_sim.market import SimMarket

FAULT_KEYS: dict[str, set[str]] = {
    "drop": set(),
    "gap": {"diffs", "symbol"},
    "malformed": {"count", "shape"},
    "stall": {"seconds"},
    "slow_rest": {"delay_ms", "count"},
    "fail_rest": {"status", "count", "retry_after"},
    "server_shutdown": {"close_after"},
    "clear": set(),
}
SHAPES = ("invalid_json", "truncated", "wrong_types")
EXTRA_SHAPES = ("bad_numbers",)
"""Not in `mixed` (which keeps its meaning): well-formed frames of each subscribed stream whose numbers
are poison (NaN/Infinity closes, 1e30, zero and negative prices, Unicode digits, thousands of digits);
the kline one is the open candle marked closed, so a bot that accepts it replaces a real candle."""
BAD_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e30", "0", "-5.0", "\u0661\u0662", "1" * 3000, "1_0", " 1")
FAIL_STATUSES = (418, 429, 500, 503)


class FaultError(ValueError):
    """A fault request that cannot be applied; the message says why."""


@dataclass
class RestFailure:
    status: int
    retry_after: int

    def body(self, now_ms: int) -> dict[str, Any]:
        # Binance-shaped bodies; the codes are the ones the spot API documents for these cases.
        if self.status == 429:
            return {
                "code": -1003,
                "msg": "Too many requests; current limit of IP(127.0.0.1) is 6000 requests "
                "per minute. Please use the websocket for live updates to avoid polling the API.",
            }
        if self.status == 418:
            return {
                "code": -1003,
                "msg": "Way too many requests; IP(127.0.0.1) banned until "
                f"{now_ms + self.retry_after * 1000}. Please use the websocket for live "
                "updates to avoid bans.",
            }
        if self.status == 503:
            return {
                "code": -1008,
                "msg": "Server is currently overloaded with other requests. "
                "Please try again in a few minutes.",
            }
        return {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}


class FaultController:
    def __init__(
        self, hub: Hub, markets: Mapping[str, SimMarket], clock: Callable[[], int], rng: random.Random
    ) -> None:
        self.hub = hub
        self.markets = markets
        self.clock = clock
        self.rng = rng
        self.counters: Counter[str] = Counter()
        self.stalled_until = 0.0  # time.monotonic() deadline
        self.rest_delay_ms = 0
        self.rest_delay_left: int | None = None  # None: until cleared
        self.rest_failures: list[RestFailure] = []
        self.open_kline: Callable[[], dict[str, Any] | None] = lambda: None
        """The open candle's `@kline` payload (set by the exchange when it replays klines)."""
        self._bad_numbers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the one entry point -----------------------------------------------------------------
    def validate(self, request: Any) -> str:
        """Check a fault request completely without applying it; returns its kind."""
        if not isinstance(request, Mapping):
            raise FaultError("a fault is a JSON object with a 'kind'")
        kind = request.get("kind")
        if kind not in FAULT_KEYS:
            raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KEYS)}")
        extra = set(request) - FAULT_KEYS[kind] - {"kind"}
        if extra:
            raise FaultError(
                f"fault {kind!r} takes {sorted(FAULT_KEYS[kind]) or 'no options'}, not {sorted(extra)}"
            )
        for key in ("diffs", "count"):
            if key in request:
                _int(request, key, 1, low=1)
        for key in ("delay_ms", "retry_after"):
            if key in request:
                _int(request, key, 0, low=0)
        for key in ("seconds", "close_after"):
            if key in request:
                _num(request, key, 0.0, low=0.0)
        symbol = request.get("symbol")
        if symbol is not None and symbol not in self.markets:
            raise FaultError(f"no market {symbol!r}; markets: {', '.join(self.markets)}")
        if request.get("shape", "mixed") not in (*SHAPES, *EXTRA_SHAPES, "mixed"):
            known = ", ".join((*SHAPES, *EXTRA_SHAPES, "mixed"))
            raise FaultError(f"unknown malformed shape {request['shape']!r}; known: {known}")
        if "status" in request and request["status"] not in FAIL_STATUSES:
            raise FaultError(f"fail_rest status must be one of {FAIL_STATUSES}, not {request['status']!r}")
        return str(kind)

    def apply(self, request: Any) -> dict[str, Any]:
        """Validate and apply one fault request; returns what was done (for the HTTP reply)."""
        kind = self.validate(request)
        result: dict[str, Any] = getattr(self, f"_{kind}")(request)
        self.counters[kind] += 1
        return {"kind": kind, **result}

    # -- websocket faults --------------------------------------------------------------------
    def _drop(self, _: Mapping[str, Any]) -> dict[str, Any]:
        return {"dropped": self.hub.drop_all()}

    def _gap(self, req: Mapping[str, Any]) -> dict[str, Any]:
        diffs = _int(req, "diffs", 5, low=1)
        symbol = req.get("symbol")
        targets = [self.markets[symbol]] if symbol else list(self.markets.values())
        for m in targets:
            m.gap_pending += diffs
        return {"diffs": diffs, "symbols": [m.symbol for m in targets]}

    def _malformed(self, req: Mapping[str, Any]) -> dict[str, Any]:
        count = _int(req, "count", 3, low=1)
        shape = req.get("shape", "mixed")
        sent = 0
        for i in range(count):
            s = SHAPES[i % len(SHAPES)] if shape == "mixed" else shape
            if s == "bad_numbers":
                sent += self._send_bad_numbers()
                continue
            sent += self.hub.send_all(functools.partial(self._malformed_frame, shape=s))
        return {"count": count, "shape": shape, "frames": sent}

    def _send_bad_numbers(self) -> int:
        """One poisoned frame per subscribed stream of every client (one hub send per stream)."""
        sent = 0
        width = max((len(c.streams) for c in self.hub.clients.values()), default=0)
        for index in range(width):
            sent += self.hub.send_all(functools.partial(self._bad_number_frame, index=index))
        return sent

    def _bad_number_frame(self, client: Client, index: int) -> str | None:
        if index >= len(client.streams):
            return None
        stream = client.streams[index]
        symbol, _, name = stream.partition("@")
        symbol = symbol.upper()
        self._bad_numbers += 1
        bad = BAD_NUMBERS[self._bad_numbers % len(BAD_NUMBERS)]
        now = self.clock()
        if name.startswith("depth"):
            m = self.markets.get(symbol)
            u = m.update_id + 1 if m is not None else 1
            data: dict[str, Any] = {"e": "depthUpdate", "E": now, "s": symbol, "U": u, "u": u,
                                    "b": [["1.00", "1.00"], [bad, "2.0"]], "a": []}  # fmt: skip
        elif name == "bookTicker":
            data = {"u": 1, "s": symbol, "b": bad, "B": "1.0", "a": "2.0", "A": "1.0"}
        elif name in ("trade", "aggTrade"):
            data = {
                "e": name,
                "E": now,
                "s": symbol,
                "t": 1,
                "a": 1,
                "p": bad,
                "q": "0.1",
                "T": now,
                "m": False,
            }
        elif name.startswith("kline_"):
            payload = self.open_kline()
            if payload is None:
                return None
            k = dict(payload["k"], x=True)  # the open candle, "closed" early, with a poisoned close
            k["c"] = bad
            data = dict(payload, k=k)
        else:
            return None
        return client.frame(stream, dumps(data))

    def _malformed_frame(self, client: Client, shape: str) -> str | None:
        stream = client.streams[0] if client.streams else "btcusdt@depth@100ms"
        symbol = stream.split("@", 1)[0].upper()
        wrong = {
            "e": "depthUpdate",
            "E": "soon",
            "s": symbol,
            "U": "one",
            "u": None,
            "b": "lots",
            "a": [[1, 2, 3]],
        }
        good = {
            "e": "depthUpdate",
            "E": self.clock(),
            "s": symbol,
            "U": 1,
            "u": 2,
            "b": [["1.00", "1.00"]],
            "a": [],
        }
        if shape == "wrong_types":
            return client.frame(stream, dumps(wrong))
        text = client.frame(stream, dumps(good))
        if shape == "truncated":
            return text[: len(text) // 2]
        return "{this is not json" + text[1:]

    def _stall(self, req: Mapping[str, Any]) -> dict[str, Any]:
        seconds = _num(req, "seconds", 3.0, low=0.0)
        self.stalled_until = max(self.stalled_until, time.monotonic() + seconds)
        return {"seconds": seconds}

    def _server_shutdown(self, req: Mapping[str, Any]) -> dict[str, Any]:
        close_after = _num(req, "close_after", 1.0, low=0.0)
        event = dumps({"e": "serverShutdown", "E": self.clock()})
        n = self.hub.send_all(lambda c: event)
        if close_after > 0:
            self._spawn(self._close_later(close_after))
        return {"notified": n, "close_after": close_after}

    async def _close_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.hub.close_all(1001, b"server shutdown")

    # -- REST faults -------------------------------------------------------------------------
    def _slow_rest(self, req: Mapping[str, Any]) -> dict[str, Any]:
        self.rest_delay_ms = _int(req, "delay_ms", 500, low=0)
        self.rest_delay_left = _int(req, "count", 0, low=1) if "count" in req else None
        return {"delay_ms": self.rest_delay_ms, "count": self.rest_delay_left}

    def _fail_rest(self, req: Mapping[str, Any]) -> dict[str, Any]:
        status = _int(req, "status", 503, low=0)
        count = _int(req, "count", 1, low=1)
        retry_after = _int(req, "retry_after", 1, low=0)
        self.rest_failures.extend(RestFailure(status, retry_after) for _ in range(count))
        return {"status": status, "count": count, "retry_after": retry_after}

    def _clear(self, _: Mapping[str, Any]) -> dict[str, Any]:
        self.stalled_until = 0.0
        self.rest_delay_ms = 0
        self.rest_delay_left = None
        self.rest_failures.clear()
        for m in self.markets.values():
            m.gap_pending = 0
        return {}

    def next_rest_fault(self) -> tuple[float, RestFailure | None]:
        """Called once per REST request: (delay seconds, failure to return or None)."""
        delay = 0.0
        if self.rest_delay_ms:
            delay = self.rest_delay_ms / 1000
            if self.rest_delay_left is not None:
                self.rest_delay_left -= 1
                if self.rest_delay_left <= 0:
                    self.rest_delay_ms, self.rest_delay_left = 0, None
        failure = self.rest_failures.pop(0) if self.rest_failures else None
        if failure is not None:
            self.counters[f"rest_{failure.status}_served"] += 1
        return delay, failure

    # -- periodic random faults --------------------------------------------------------------
    def random_request(self) -> dict[str, Any]:
        """A short, recoverable fault (the demo's --fault-every)."""
        menu: list[dict[str, Any]] = [
            {"kind": "drop"},
            {"kind": "gap", "diffs": self.rng.randint(1, 5)},
            {"kind": "malformed", "count": self.rng.randint(1, 3)},
            {"kind": "stall", "seconds": round(self.rng.uniform(0.5, 2.0), 2)},
            {"kind": "slow_rest", "delay_ms": self.rng.choice([200, 500, 1000]), "count": 3},
            {"kind": "fail_rest", "status": self.rng.choice(FAIL_STATUSES), "count": 1, "retry_after": 1},
            {"kind": "server_shutdown", "close_after": 0.5},
        ]
        return self.rng.choice(menu)

    async def run_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.counters["random"] += 1
            self.apply(self.random_request())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def state(self) -> dict[str, Any]:
        return {
            "counters": dict(self.counters),
            "stalled_for": max(0.0, round(self.stalled_until - time.monotonic(), 3)),
            "rest_delay_ms": self.rest_delay_ms,
            "rest_failures_pending": [f.status for f in self.rest_failures],
            "gaps_pending": {s: m.gap_pending for s, m in self.markets.items() if m.gap_pending},
        }


def _int(req: Mapping[str, Any], key: str, default: int, *, low: int) -> int:
    v = req.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise FaultError(f"{key!r} must be an integer >= {low}, not {v!r}")
    return v


def _num(req: Mapping[str, Any], key: str, default: float, *, low: float) -> float:
    v = req.get(key, default)
    if not isinstance(v, int | float) or isinstance(v, bool) or v < low:
        raise FaultError(f"{key!r} must be a number >= {low}, not {v!r}")
    return float(v)
