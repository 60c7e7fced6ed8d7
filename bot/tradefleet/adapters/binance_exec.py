"""Orders on Binance Spot (live or testnet, or the simulator) through our own signed REST client.

The `Execution` edge for real money. `binance_signed` signs and sends (HMAC-SHA256 of the exact query
string, `X-MBX-APIKEY`, on its own keep-alive HTTP/1.1 client; no ccxt since #17: it cost ~1 ms of
Python per order and ~17 MiB per bot); this module decides what each answer *means* for an order, because that
decides whether a second order can happen. The mapping is from the HTTP status and Binance's
`{"code", "msg"}` body, and keeps exactly the outcomes the ccxt client had (its Binance error table,
`_REJECT_CODES` etc. below):

- certainly refused before acceptance: 429/418/-1003/-1015 → `RateLimited(retry_after)` (from the
  `Retry-After` header, 1 s without one); -1021 timestamp outside recvWindow → `ExchangeUnavailable`.
  Re-sending the same client order id afterwards is safe.
- may have been accepted: timeouts, dropped connections, 5xx, -1007 "execution status unknown",
  any code we do not know, and "Duplicate order sent." (that id is live right now) →
  `ExecutionUnknown`: query, never re-send.
- refused for good: filters, balance, bad parameters, unknown symbol/order → `OrderRejected(code)`;
  auth and permissions → `PermanentError`.

Quantities are sent as decimal strings (never floats). Each fill in a FULL response or in
`myTrades` becomes a TRADE `OrderUpdate` with its trade id and commission, queued on `updates()`
next to the user data stream's reports: the store keys updates by trade id, so a fill seen both
ways is stored and charged once. `unknown_settle_s` (recvWindow + 1 s) tells the order manager when
"the exchange has never seen this id" becomes a final answer: after that, the original request can
no longer be accepted.

What it refuses: order types other than MARKET, reading credentials from config, logging them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradefleet.adapters.binance_signed import BinanceHttpError, BinanceSignedRest
from tradefleet.adapters.credentials import Credentials
from tradefleet.adapters.market_rest import BINANCE_REST, TESTNET_REST, TESTNET_WS_API, market_id_of
from tradefleet.adapters.userdata import LIVE_WS_API, UserDataStream
from tradefleet.config import BotConfig
from tradefleet.domain.models import Order, OrderStatus, OrderUpdate, Side
from tradefleet.errors import (
    ConfigError,
    ExchangeUnavailable,
    ExecutionUnknown,
    LeaseLost,
    OrderRejected,
    PermanentError,
    RateLimited,
    TradefleetError,
)
from tradefleet.logs import now_ms
from tradefleet.metrics import BotMetrics
from tradefleet.tasks import stop_task

ZERO = Decimal(0)

ORDER_PATH = "/api/v3/order"
_now_s = time.monotonic
"""The clock a request signed ahead is judged by (`prepare_submit`; a test's own)."""
MIN_RECV_WINDOW_MS = 100
"""Below this much lease validity an order is not sent: a window that short would be refused by an
exchange whose clock is a little ahead of ours, and the lease renews long before it gets there."""

# Binance Spot error codes by meaning: the table ccxt 4.5's Binance client applied (its `exceptions`
# for the spot URLs), so the bot's outcomes did not change when ccxt left its path.
_RATE_CODES = frozenset({-1003, -1015})
_AUTH_CODES = frozenset({-1002, -1022, -1099, -1125, -2008, -2014, -2015})
_NOT_FOUND_CODES = frozenset({-2011, -2013})  # "Unknown order sent." / "Order does not exist."
_REJECT_CODES = frozenset({
    -1013, -1014, -1016, -1020, -1100, -1101, -1102, -1103, -1104, -1105, -1106, -1108, -1111, -1114,
    -1115, -1116, -1117, -1118, -1119, -1120, -1121, -1127, -1128, -1130, -1131, -1134, -1135, -1145,
    -1151, -2010, -2026, *_NOT_FOUND_CODES,
})  # fmt: skip
# Messages that decide before the code does (ccxt matched them first): exact, then substrings. Only
# those ccxt's Python client could match: its transpiler turned "this" into "self" in the others
# ("This symbol is restricted for self account."), which then fell to their code (-2010: rejected).
_RATE_MESSAGES = frozenset({"Too many requests. Please try again later."})
_AUTH_MESSAGES = frozenset({
    "API key does not exist", "Rest API trading is not enabled.",
    "This account may not place or cancel orders.", "You don't have permission.",
})  # fmt: skip
_REJECT_MESSAGES = frozenset({
    "Account has insufficient balance for requested action.", "Order would trigger immediately.",
    "Stop price would trigger immediately.", "Order would immediately match and take.",
})  # fmt: skip
_REJECT_IN_BODY = ("Price * QTY is zero or less", "LOT_SIZE", "PRICE_FILTER", "MAX_POSITION",
                   "PERCENT_PRICE_BY_SIDE", "This order type is not possible")  # fmt: skip
_AUTH_STATUSES = frozenset({401, 407, 511})


def _kind(e: BinanceHttpError) -> str:
    """What a non-2xx answer says: "rate", "nonce", "auth", "reject" or "other"."""
    if e.status in (418, 429) or e.code in _RATE_CODES or e.msg in _RATE_MESSAGES:
        return "rate"
    if e.msg in _AUTH_MESSAGES or "has no operation privilege" in e.msg:
        return "auth"
    if e.msg in _REJECT_MESSAGES or any(s in e.body for s in _REJECT_IN_BODY):
        return "reject"
    if e.code == -1021:
        return "nonce"
    if e.code == -2015 and e.after_success:
        return "rate"  # Binance's answer to a key banned for a while, once that key has worked
    if e.code in _AUTH_CODES:
        return "auth"
    if e.code in _REJECT_CODES:
        return "reject"
    if e.code is None and e.status in _AUTH_STATUSES:
        return "auth"
    return "other"  # 5xx, -1007 and the other "busy" codes, codes we do not know, 4xx without a code


def translate(e: Exception, *, sending: bool) -> TradefleetError:
    """A failed request (`BinanceHttpError`, `BinanceTransportError` or anything else) as one of our
    errors. `sending`: the request would place an order, so "no answer" means "maybe placed"."""
    msg = str(e)[:500]
    if isinstance(e, BinanceHttpError):
        kind = _kind(e)
        if kind == "rate":
            return RateLimited(msg, retry_after=e.retry_after if e.retry_after is not None else 1.0)
        if kind == "nonce":
            return ExchangeUnavailable(msg, retry_after=1.0)  # -1021: refused before acceptance
        if kind == "auth":
            return PermanentError(msg)
        if "Duplicate order sent" in e.msg:
            return ExecutionUnknown(msg)  # that id is live on the exchange: find it, never re-send
        if kind == "reject":
            return OrderRejected(msg, code=e.code)
    if sending:
        # Timeouts, lost connections, 5xx, -1007, anything unexpected: the order may exist.
        return ExecutionUnknown(msg)
    return ExchangeUnavailable(msg, retry_after=1.0)


def _dec(raw: dict[str, Any], key: str) -> Decimal:
    v = raw.get(key)
    return Decimal(str(v)) if v not in (None, "") else ZERO


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An order's request signed ahead (`BinanceExecution.prepare_submit`)."""

    client_order_id: str
    valid_until: float  # `_now_s()`: the exchange refuses the request after this
    request: Any


class BinanceExecution:
    def __init__(
        self,
        config: BotConfig,
        credentials: Credentials | None,
        *,
        metrics: BotMetrics | None = None,
        client: BinanceSignedRest | None = None,
        recv_window_ms: int = 5000,
        user_stream: bool = True,
        timeout_ms: int = 10_000,
        lease_window_ms: Callable[[], int] | None = None,
    ) -> None:
        if credentials is None:
            raise ConfigError(
                f"mode {config.mode} needs API credentials: set TRADEFLEET_API_KEY_FILE and "
                "TRADEFLEET_API_SECRET_FILE (or TRADEFLEET_API_KEY and TRADEFLEET_API_SECRET)"
            )
        testnet = config.mode == "testnet"
        self.symbol = config.symbol
        self.market_id = market_id_of(config.symbol)
        self.metrics = metrics
        rest_url = config.rest_url or (TESTNET_REST if testnet else BINANCE_REST)
        self._rest = client or BinanceSignedRest(rest_url, credentials, timeout_ms=timeout_ms)
        self.recv_window_ms = recv_window_ms
        # The lease's remaining validity (Lease.remaining_ms): an order is signed so that the exchange
        # refuses it once that validity is over, however long this process is paused after the check.
        self._lease_window_ms = lease_window_ms
        self.unknown_settle_s = recv_window_ms / 1000 + 1.0
        self._queue: asyncio.Queue[OrderUpdate] = asyncio.Queue()
        ws_api = config.ws_api_url or (TESTNET_WS_API if testnet else LIVE_WS_API)
        self.stream = UserDataStream(ws_api, credentials, self._queue.put_nowait) if user_stream else None
        self._stream_task: asyncio.Task[None] | None = None
        self._prepared: _Prepared | None = None

    async def prepare(self) -> None:
        """Open the user data stream before the first signal, so the first order does not pay for it
        (at replay speed that cost a candle). The signed account request also proves the credentials
        and opens the connection the first order reuses: a wrong key fails here, loudly, not at the
        first signal."""
        await self._get("/api/v3/account", {})
        if self.stream is not None and self._stream_task is None:
            self._stream_task = asyncio.get_running_loop().create_task(self.stream.run())

    async def _get(self, path: str, params: dict[str, str | int]) -> Any:
        """A signed GET (never places anything: a failure is `ExchangeUnavailable`, not unknown)."""
        params["timestamp"] = now_ms()
        params["recvWindow"] = self.recv_window_ms
        try:
            return await self._rest.request("GET", path, params)
        except Exception as e:
            raise translate(e, sending=False) from e

    def _count(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.rest_errors.labels(kind).inc()

    def _order_params(self, order: Order) -> dict[str, str | int]:
        params: dict[str, str | int] = {"symbol": self.market_id, "side": order.side.value, "type": "MARKET"}
        if order.side is Side.BUY and order.quote_amount is not None:
            params["quoteOrderQty"] = format(order.quote_amount, "f")
        elif order.quantity is not None:
            params["quantity"] = format(order.quantity, "f")
        else:
            raise OrderRejected("an order needs a quantity (SELL) or a quote amount (BUY)", code=-1102)
        params["newClientOrderId"] = order.client_order_id
        params["newOrderRespType"] = "FULL"
        params.update(self._fenced_window())
        return params

    def rehearse(self, order: Order) -> None:
        """`submit`'s request built, signed and encoded, then dropped: nothing is sent
        (`engine.hot_close`)."""
        self._sign_order(order)

    def prepare_submit(self, order: Order) -> None:
        """Sign `order`'s request now, for `submit` to send as it is if it comes for this order while
        the request is still valid for at least `MIN_RECV_WINDOW_MS` (else it signs again). The order
        manager calls this before the order's commit, which leaves the CPU idle in fsync: signed after
        it, the same work took ~70 µs, cold (`bench.tick_to_order`). The timestamp and the window are
        the lease's of now, so the request can only lapse sooner, never later (`_fenced_window`)."""
        self._prepared = None
        signed = self._sign_order(order)
        if signed is not None:
            window_ms, request = signed
            self._prepared = _Prepared(order.client_order_id, _now_s() + window_ms / 1000, request)

    def _sign_order(self, order: Order) -> tuple[int, Any] | None:
        """`submit`'s request signed now, with its recvWindow in ms; None when the REST client cannot
        sign ahead (a client with only `request`)."""
        sign = getattr(self._rest, "sign", None)
        if sign is None:
            return None
        params = self._order_params(order)
        return int(params["recvWindow"]), sign("POST", ORDER_PATH, params)

    def _signed_order(self, order: Order) -> Any:
        """The prepared request for `order` if it is still good (`prepare_submit`), else None."""
        prepared, self._prepared = self._prepared, None
        if prepared is None or prepared.client_order_id != order.client_order_id:
            return None
        if _now_s() + MIN_RECV_WINDOW_MS / 1000 > prepared.valid_until:
            return None
        return prepared.request

    async def submit(self, order: Order) -> OrderUpdate:
        signed = self._signed_order(order)
        params = self._order_params(order) if signed is None else {}
        try:
            if signed is not None:
                raw = await self._rest.send(signed)
            else:
                raw = await self._rest.request("POST", ORDER_PATH, params)
        except Exception as e:
            err = translate(e, sending=True)
            self._count(type(err).__name__)
            raise err from e
        if not isinstance(raw, dict):
            err = ExecutionUnknown(f"order answer is not an object: {str(raw)[:200]}")
            self._count(type(err).__name__)
            raise err
        return self._from_raw(order, raw, fills=raw.get("fills") or [])

    def _fenced_window(self) -> dict[str, int]:
        """`timestamp` and `recvWindow` for an order request, fenced by the lease.

        The timestamp is read BEFORE the lease: if the process is paused anywhere after this point
        (SIGSTOP, a GC pause, a frozen VM), the request is only staler when it leaves, and Binance
        refuses any request that arrives later than timestamp + recvWindow (-1021). The window ends
        no later than the lease's own safety deadline, which already lies before another replica can
        take the lease — so a woken ex-leader's request cannot be accepted, even with a reused client
        order id after the first order closed. Without a lease the window is `recv_window_ms`."""
        timestamp = now_ms()
        if self._lease_window_ms is None:
            return {"timestamp": timestamp, "recvWindow": self.recv_window_ms}
        remaining = self._lease_window_ms()
        if remaining < MIN_RECV_WINDOW_MS:
            raise LeaseLost(f"lease has {remaining} ms of validity left; the order is not sent")
        return {"timestamp": timestamp, "recvWindow": min(self.recv_window_ms, remaining)}

    def _from_raw(self, order: Order, raw: dict[str, Any], *, fills: list[dict[str, Any]]) -> OrderUpdate:
        """The order's state from a REST body; its fills are queued as TRADE updates."""
        event_time = int(raw.get("updateTime") or raw.get("transactTime") or raw.get("time") or now_ms())
        exchange_id = str(raw["orderId"]) if raw.get("orderId") is not None else None
        status = OrderStatus(raw["status"]) if raw.get("status") else OrderStatus.NEW
        filled = cum = fee = ZERO
        fee_asset = None
        for f in fills:
            qty, price = _dec(f, "qty"), _dec(f, "price")
            filled += qty
            cum += qty * price
            fee += _dec(f, "commission")
            fee_asset = f.get("commissionAsset") or fee_asset
            trade_status = OrderStatus.PARTIALLY_FILLED
            self._queue.put_nowait(
                OrderUpdate(
                    client_order_id=order.client_order_id,
                    status=trade_status,
                    event_time=event_time,
                    exchange_order_id=exchange_id,
                    filled_qty=filled,
                    cum_quote=cum,
                    last_qty=qty,
                    last_price=price,
                    fee=_dec(f, "commission"),
                    fee_asset=f.get("commissionAsset"),
                    trade_id=int(f["tradeId"] if "tradeId" in f else f["id"]),
                    exec_type="TRADE",
                    source="rest",
                )
            )
        return OrderUpdate(
            client_order_id=order.client_order_id,
            status=status,
            event_time=event_time,
            exchange_order_id=exchange_id,
            filled_qty=_dec(raw, "executedQty") or filled,
            cum_quote=_dec(raw, "cummulativeQuoteQty") or cum,
            fee=fee,
            fee_asset=fee_asset,
            exec_type="QUERY",
            source="rest",
        )

    async def query(self, order: Order) -> OrderUpdate | None:
        cid = order.client_order_id
        try:
            raw = await self._get("/api/v3/order", {"symbol": self.market_id, "origClientOrderId": cid})
        except OrderRejected as e:
            if e.code in _NOT_FOUND_CODES:
                return None  # the exchange has never seen this id (or no longer keeps it)
            raise
        if not isinstance(raw, dict):
            raise ExchangeUnavailable(f"order query: unexpected body: {str(raw)[:200]}", retry_after=1.0)
        fills: list[dict[str, Any]] = []
        if _dec(raw, "executedQty") > 0 and raw.get("orderId") is not None:
            by_order: dict[str, str | int] = {"symbol": self.market_id, "orderId": raw["orderId"]}
            trades = await self._get("/api/v3/myTrades", by_order)
            if not isinstance(trades, list):
                raise ExchangeUnavailable(f"myTrades: unexpected body: {str(trades)[:200]}", retry_after=1.0)
            fills = [dict(t, tradeId=t.get("id")) for t in trades if isinstance(t, dict)]
        return self._from_raw(order, raw, fills=fills)

    async def base_balance(self) -> Decimal:
        """The account's total (free + locked) balance of the bot's base asset, from the exchange's own
        decimal strings."""
        asset = self.symbol.split("/")[0]
        body = await self._get("/api/v3/account", {})
        try:
            for b in body["balances"]:
                if b["asset"] == asset:
                    return Decimal(str(b["free"])) + Decimal(str(b["locked"]))
        except (KeyError, TypeError, ArithmeticError) as e:
            raise ExchangeUnavailable(f"account: unexpected body: {e!r}"[:300], retry_after=1.0) from e
        return ZERO

    async def open_orders(self, symbol: str) -> list[OrderUpdate]:
        rows = await self._get("/api/v3/openOrders", {"symbol": market_id_of(symbol)})
        if not isinstance(rows, list):
            raise ExchangeUnavailable(f"openOrders: unexpected body: {str(rows)[:200]}", retry_after=1.0)
        return [open_order_update(raw) for raw in rows]

    async def updates(self) -> AsyncIterator[OrderUpdate]:  # type: ignore[override]
        if self.stream is not None and self._stream_task is None:
            self._stream_task = asyncio.get_running_loop().create_task(self.stream.run())
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        await stop_task(self._stream_task)
        self._stream_task = None
        await self._rest.close()


def open_order_update(raw: dict[str, Any]) -> OrderUpdate:
    """One row of Binance's openOrders as the order's state."""
    return OrderUpdate(
        client_order_id=str(raw.get("clientOrderId", "")),
        status=OrderStatus(raw.get("status", "NEW")),
        event_time=int(raw.get("updateTime") or raw.get("time") or now_ms()),
        exchange_order_id=str(raw.get("orderId")),
        filled_qty=_dec(raw, "executedQty"),
        cum_quote=_dec(raw, "cummulativeQuoteQty"),
        exec_type="QUERY",
        source="rest",
    )


def describe_error_body(body: str) -> dict[str, Any]:
    """Binance's `{"code", "msg"}` body, or {} (used by tests and logs)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
