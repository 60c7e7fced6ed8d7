"""The bot's Binance trading client as it was before #17: ccxt's async client. Kept only as the peer
for `bench.orders` (ours against ccxt in the same run) and for `tests/orders/test_signed_rest.py`
(our error translation against ccxt's, answer by answer); the bot itself no longer imports ccxt.
Only the transport differs from `BinanceExecution`: the lease fencing, the reading of answers and
fills and the user data stream are the bot's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ccxt

from bench.ccxt_client import make_binance
from tradefleet.adapters.binance_exec import BinanceExecution, open_order_update
from tradefleet.adapters.credentials import Credentials
from tradefleet.config import BotConfig
from tradefleet.domain.models import Order, OrderUpdate, Side
from tradefleet.errors import (
    ExchangeUnavailable,
    ExecutionUnknown,
    OrderRejected,
    PermanentError,
    RateLimited,
    TradefleetError,
)
from tradefleet.metrics import BotMetrics

ZERO = Decimal(0)
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


class CcxtBinanceExecution(BinanceExecution):
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
        super().__init__(
            config, credentials, metrics=metrics, recv_window_ms=recv_window_ms,
            user_stream=user_stream, timeout_ms=timeout_ms, lease_window_ms=lease_window_ms,
        )  # fmt: skip
        assert credentials is not None  # refused above otherwise
        self._ex = exchange or make_binance(
            rest_url=config.rest_url,
            api_key=credentials.api_key,
            secret=credentials.secret,
            testnet=config.mode == "testnet",
            timeout_ms=timeout_ms,
            client_rate_limit=False,  # orders are rare; Binance's 429/Retry-After is obeyed upstream
        )
        self._ex.options["recvWindow"] = recv_window_ms
        # Spot only: with a key set, ccxt would also load margin pairs (a SAPI call we do not need).
        self._ex.options["fetchMargins"] = False
        self._markets_loaded = False

    async def prepare(self) -> None:
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
        if Decimal(str(raw.get("executedQty") or 0)) > 0 and raw.get("orderId") is not None:
            try:
                trades = await self._ex.fetch_my_trades(self.symbol, None, None, {"orderId": raw["orderId"]})
            except Exception as e:
                raise translate(e, self._ex, sending=False) from e
            fills = [dict(f, tradeId=f.get("id")) for f in (t.get("info") or {} for t in trades)]
        return self._from_raw(order, raw, fills=fills)

    async def base_balance(self) -> Decimal:
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
        return [open_order_update(r.get("info") or {}) for r in rows]

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(Exception):
            await self._ex.close()
