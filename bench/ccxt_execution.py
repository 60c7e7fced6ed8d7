"""The bot's Binance trading client as it was before #17: ccxt's async client. Kept only as the peer
for `bench.orders` (ours against ccxt in the same run); the bot itself no longer imports ccxt
(`tradefleet.adapters.binance_exec`). Same surface as `BinanceExecution`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import ccxt

from bench.ccxt_client import TESTNET_WS_API, make_binance
from tradefleet.adapters.credentials import Credentials
from tradefleet.adapters.userdata import LIVE_WS_API, UserDataStream, cancel_and_wait
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

ZERO = Decimal(0)

MIN_RECV_WINDOW_MS = 100
"""Below this much lease validity an order is not sent: a window that short would be refused by an
exchange whose clock is a little ahead of ours, and the lease renews long before it gets there."""
_CODE_RE = re.compile(r'"code"\s*:\s*(-?\d+)')


def error_code(e: Exception, exchange: Any = None) -> int | None:
    """Binance's error code: from the message, else from the last response body (ccxt raises some
    errors, e.g. insufficient balance, with the message only)."""
    for text in (str(e), str(getattr(exchange, "last_http_response", "") or "")):
        m = _CODE_RE.search(text)
        if m:
            return int(m.group(1))
    return None


def _retry_after(exchange: Any, default: float = 1.0) -> float:
    headers = getattr(exchange, "last_response_headers", None) or {}
    for k, v in dict(headers).items():
        if k.lower() == "retry-after":
            try:
                return max(float(v), 0.0)
            except ValueError:
                break
    return default


def translate(e: Exception, exchange: Any, *, sending: bool) -> TradefleetError:
    """A ccxt (or transport) error as one of ours. `sending`: the request would place an order."""
    msg = str(e)[:500]
    if isinstance(e, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return RateLimited(msg, retry_after=_retry_after(exchange))
    if isinstance(e, ccxt.InvalidNonce):
        return ExchangeUnavailable(msg, retry_after=1.0)  # -1021: refused before acceptance
    if isinstance(e, ccxt.AuthenticationError):
        return PermanentError(msg)
    if "Duplicate order sent" in msg:
        return ExecutionUnknown(msg)  # that id is live on the exchange: find it, never re-send
    if isinstance(e, ccxt.InvalidOrder | ccxt.InsufficientFunds | ccxt.BadRequest | ccxt.BadSymbol):
        return OrderRejected(msg, code=error_code(e, exchange))
    if sending:
        # Timeouts, lost connections, 5xx, -1007, anything unexpected: the order may exist.
        return ExecutionUnknown(msg)
    return ExchangeUnavailable(msg, retry_after=1.0)


def _dec(raw: dict[str, Any], key: str) -> Decimal:
    v = raw.get(key)
    return Decimal(str(v)) if v not in (None, "") else ZERO


class CcxtBinanceExecution:
    def __init__(
        self,
        config: BotConfig,
        credentials: Credentials | None,
        *,
        metrics: BotMetrics | None = None,
        exchange: Any | None = None,
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
        self.metrics = metrics
        self._ex = exchange or make_binance(
            rest_url=config.rest_url,
            api_key=credentials.api_key,
            secret=credentials.secret,
            testnet=testnet,
            timeout_ms=timeout_ms,
            client_rate_limit=False,  # orders are rare; Binance's 429/Retry-After is obeyed upstream
        )
        self._ex.options["recvWindow"] = recv_window_ms
        self.recv_window_ms = recv_window_ms
        # The lease's remaining validity (Lease.remaining_ms): an order is signed so that the exchange
        # refuses it once that validity is over, however long this process is paused after the check.
        self._lease_window_ms = lease_window_ms
        # Spot only: with a key set, ccxt would also load margin pairs (a SAPI call we do not need).
        self._ex.options["fetchMargins"] = False
        self.unknown_settle_s = recv_window_ms / 1000 + 1.0
        self._queue: asyncio.Queue[OrderUpdate] = asyncio.Queue()
        ws_api = config.ws_api_url or (TESTNET_WS_API if testnet else LIVE_WS_API)
        self.stream = UserDataStream(ws_api, credentials, self._queue.put_nowait) if user_stream else None
        self._stream_task: asyncio.Task[None] | None = None
        self._markets_loaded = False

    async def prepare(self) -> None:
        """Load markets and open the user data stream before the first signal, so the first order
        does not pay for them (at replay speed that cost a candle). The signed balance request also
        proves the credentials at start: a wrong key fails here, loudly, not at the first signal."""
        await self._markets()
        try:
            await self._ex.fetch_balance()
        except Exception as e:
            raise translate(e, self._ex, sending=False) from e
        if self.stream is not None and self._stream_task is None:
            self._stream_task = asyncio.get_running_loop().create_task(self.stream.run())

    async def _markets(self) -> None:
        if not self._markets_loaded:
            try:
                await self._ex.load_markets()
            except Exception as e:
                raise translate(e, self._ex, sending=False) from e
            self._markets_loaded = True

    def _count(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.rest_errors.labels(kind).inc()

    async def submit(self, order: Order) -> OrderUpdate:
        await self._markets()  # a failure here happens before anything is sent
        params: dict[str, Any] = {"newClientOrderId": order.client_order_id, "newOrderRespType": "FULL"}
        params.update(self._fenced_window())
        amount: str | None
        if order.side is Side.BUY and order.quote_amount is not None:
            params["quoteOrderQty"] = format(order.quote_amount, "f")
            amount = None
        elif order.quantity is not None:
            amount = format(order.quantity, "f")
        else:
            raise OrderRejected("an order needs a quantity (SELL) or a quote amount (BUY)", code=-1102)
        try:
            result = await self._ex.create_order(
                self.symbol, "market", order.side.value.lower(), amount, None, params
            )
        except Exception as e:
            err = translate(e, self._ex, sending=True)
            self._count(type(err).__name__)
            raise err from e
        raw = result.get("info") or {}
        return self._from_raw(order, raw, fills=raw.get("fills") or [])

    def _fenced_window(self) -> dict[str, int]:
        """`timestamp` and `recvWindow` for an order request, fenced by the lease.

        The timestamp is read BEFORE the lease: if the process is paused anywhere after this point
        (SIGSTOP, a GC pause, a frozen VM), the request is only staler when it leaves, and Binance
        refuses any request that arrives later than timestamp + recvWindow (-1021). The window ends
        no later than the lease's own safety deadline, which already lies before another replica can
        take the lease — so a woken ex-leader's request cannot be accepted, even with a reused client
        order id after the first order closed."""
        timestamp = now_ms()
        if self._lease_window_ms is None:
            return {"timestamp": timestamp}
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
        await self._markets()
        cid = order.client_order_id
        try:
            result = await self._ex.fetch_order(cid, self.symbol, {"origClientOrderId": cid})
        except ccxt.OrderNotFound:
            return None
        except Exception as e:
            raise translate(e, self._ex, sending=False) from e
        raw = result.get("info") or {}
        fills: list[dict[str, Any]] = []
        if _dec(raw, "executedQty") > 0 and raw.get("orderId") is not None:
            try:
                trades = await self._ex.fetch_my_trades(self.symbol, None, None, {"orderId": raw["orderId"]})
            except Exception as e:
                raise translate(e, self._ex, sending=False) from e
            fills = [t.get("info") or {} for t in trades]
            fills = [dict(f, tradeId=f.get("id")) for f in fills]
        return self._from_raw(order, raw, fills=fills)

    async def base_balance(self) -> Decimal:
        """The account's total (free + locked) balance of the bot's base asset, from the exchange's own
        decimal strings (ccxt's unified balance is float)."""
        asset = self.symbol.split("/")[0]
        try:
            body = await self._ex.private_get_account()
        except Exception as e:
            raise translate(e, self._ex, sending=False) from e
        try:
            for b in body["balances"]:
                if b["asset"] == asset:
                    return Decimal(str(b["free"])) + Decimal(str(b["locked"]))
        except (KeyError, TypeError, ArithmeticError) as e:
            raise ExchangeUnavailable(f"account: unexpected body: {e!r}"[:300], retry_after=1.0) from e
        return ZERO

    async def open_orders(self, symbol: str) -> list[OrderUpdate]:
        await self._markets()
        try:
            rows = await self._ex.fetch_open_orders(symbol)
        except Exception as e:
            raise translate(e, self._ex, sending=False) from e
        out = []
        for r in rows:
            raw = r.get("info") or {}
            out.append(
                OrderUpdate(
                    client_order_id=str(raw.get("clientOrderId", "")),
                    status=OrderStatus(raw.get("status", "NEW")),
                    event_time=int(raw.get("updateTime") or raw.get("time") or now_ms()),
                    exchange_order_id=str(raw.get("orderId")),
                    filled_qty=_dec(raw, "executedQty"),
                    cum_quote=_dec(raw, "cummulativeQuoteQty"),
                    exec_type="QUERY",
                    source="rest",
                )
            )
        return out

    async def updates(self) -> AsyncIterator[OrderUpdate]:  # type: ignore[override]
        if self.stream is not None and self._stream_task is None:
            self._stream_task = asyncio.get_running_loop().create_task(self.stream.run())
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        await cancel_and_wait(self._stream_task)
        self._stream_task = None
        with contextlib.suppress(Exception):
            await self._ex.close()


def describe_error_body(body: str) -> dict[str, Any]:
    """Binance's `{"code", "msg"}` body, or {} (used by tests and logs)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
