"""Public market REST through ccxt (async): depth snapshots, closed candles, symbol rules.

Why it exists: the book needs a REST snapshot to sync, the strategy needs 200+ closed daily candles
at start, and sizing needs the exchange's filters. ccxt stays the HTTP client (rate limiting,
proxies, the simulator or testnet via `make_binance(rest_url=...)`), but we call Binance's raw
endpoints through ccxt's implicit API (`public_get_depth`, `public_get_klines`, ...): the unified
methods return floats, and a float cannot be a price. Raw bodies keep the exchange's decimal strings
and the depth snapshot keeps `lastUpdateId`, which the sync algorithm needs.

What it refuses to do: retry (callers own retry policy, with `retry_after` as a hint), or let a ccxt
exception escape. Every ccxt error becomes ours: `RateLimited` (429/418, with Retry-After),
`ExchangeUnavailable` (network, timeouts, 5xx, malformed bodies), `PermanentError` (bad symbol,
bad request: a retry cannot help).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt.async_support as ccxt
import msgspec

from tradefleet.adapters.ccxt_factory import make_binance
from tradefleet.domain import numbers
from tradefleet.domain.market import DepthSnapshot
from tradefleet.domain.models import Candle
from tradefleet.errors import (
    ExchangeUnavailable,
    MalformedFrame,
    PermanentError,
    RateLimited,
    TradefleetError,
)
from tradefleet.ports import SymbolRules

KLINES_PAGE = 1000  # Binance's maximum per /api/v3/klines request
_DEFAULT_RATE_LIMIT_WAIT_S = 1.0


class _DepthBody(msgspec.Struct):
    lastUpdateId: int  # Binance's field name, kept so the body converts as is
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


# open time, open, high, low, close, volume, close time, quote volume, trades, taker base, taker quote, ignore
_Kline = tuple[int, str, str, str, str, str, int, str, int, str, str, str]


def market_id_of(symbol: str) -> str:
    """BTC/USDT or BTCUSDT -> BTCUSDT."""
    return symbol.replace("/", "").upper()


# Binance error codes that mean "not now" rather than "never"; ccxt maps some of them to
# ExchangeError (e.g. -1008 on a 503), which alone would read as permanent.
_RATE_CODES = frozenset({-1003, -1015})
_BUSY_CODES = frozenset({-1000, -1001, -1004, -1006, -1007, -1008})
_CODE_RE = re.compile(r'"code"\s*:\s*(-?\d+)')


def _binance_code(error: Exception) -> int | None:
    match = _CODE_RE.search(str(error))
    return int(match.group(1)) if match else None


def translate(error: Exception, what: str, retry_after: float | None = None) -> TradefleetError:
    """Map a ccxt error to ours; `retry_after` is the server's Retry-After when it sent one."""
    code = _binance_code(error)
    if isinstance(error, ccxt.DDoSProtection | ccxt.RateLimitExceeded) or code in _RATE_CODES:
        return RateLimited(
            f"{what}: rate limited: {error}", retry_after=retry_after or _DEFAULT_RATE_LIMIT_WAIT_S
        )
    if isinstance(error, ccxt.OperationFailed) or code in _BUSY_CODES:  # network, timeouts, 5xx, busy
        return ExchangeUnavailable(f"{what}: {error}", retry_after=retry_after)
    return PermanentError(f"{what}: {error}")


class CcxtMarketRest:
    """`MarketRest` over a ccxt async Binance client."""

    def __init__(
        self,
        *,
        rest_url: str | None = None,
        testnet: bool = False,
        timeout_ms: int = 10_000,
        exchange: Any = None,
    ) -> None:
        self.exchange = exchange if exchange is not None else make_binance(
            rest_url=rest_url, testnet=testnet, timeout_ms=timeout_ms
        )  # fmt: skip

    async def close(self) -> None:
        await self.exchange.close()

    async def _get(self, method: str, params: dict[str, Any], what: str) -> Any:
        try:
            return await getattr(self.exchange, method)(params)
        except ccxt.BaseError as e:
            raise translate(e, what, self._retry_after()) from e

    def _retry_after(self) -> float | None:
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        for name, value in headers.items():
            if name.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except (TypeError, ValueError):
                    return None
        return None

    async def fetch_depth_snapshot(self, market_id: str, limit: int) -> DepthSnapshot:
        what = f"depth snapshot {market_id}"
        body = await self._get("public_get_depth", {"symbol": market_id, "limit": limit}, what)
        try:
            depth = msgspec.convert(body, _DepthBody)
        except msgspec.ValidationError as e:
            raise ExchangeUnavailable(f"{what}: unexpected body: {e}", retry_after=1.0) from e
        return DepthSnapshot(market_id, depth.lastUpdateId, depth.bids, depth.asks)

    async def server_time_ms(self) -> int:
        body = await self._get("public_get_time", {}, "server time")
        try:
            return int(body["serverTime"])
        except (KeyError, TypeError, ValueError) as e:
            raise ExchangeUnavailable(f"server time: unexpected body {body!r}", retry_after=1.0) from e

    async def fetch_candles(self, symbol: str, interval: str, since_ms: int, until_ms: int) -> list[Candle]:
        """Closed candles with open_time in [since_ms, until_ms), oldest first, paging by 1,000.

        'Closed' is judged by the exchange's clock (close_time < server time), not ours: the
        simulator may run faster than real time, and a local clock may be off."""
        market_id = market_id_of(symbol)
        now = await self.server_time_ms()
        out: list[Candle] = []
        start = since_ms
        while start < until_ms:
            params = {"symbol": market_id, "interval": interval, "startTime": start,
                      "endTime": until_ms - 1, "limit": KLINES_PAGE}  # fmt: skip
            body = await self._get("public_get_klines", params, f"klines {market_id} {interval}")
            try:
                rows = msgspec.convert(body, list[_Kline], strict=False)
                page = [_candle(symbol, interval, row) for row in rows]
            except (msgspec.ValidationError, InvalidOperation, MalformedFrame) as e:
                # The whole page is refused (the strategy counts it as malformed and refetches).
                raise ExchangeUnavailable(f"klines {market_id}: unexpected body: {e}", retry_after=1.0) from e
            page = [c for c in page if since_ms <= c.open_time < until_ms]
            if not page:
                break
            out.extend(c for c in page if c.close_time < now)
            if len(rows) < KLINES_PAGE:
                break
            next_start = page[-1].open_time + 1
            if next_start <= start:  # a server that ignores startTime must not loop us forever
                break
            start = next_start
        # Pages can overlap if the server rounds startTime; keep one candle per open time.
        unique = {c.open_time: c for c in out}
        return [unique[t] for t in sorted(unique)]

    async def fetch_symbol_rules(self, symbol: str) -> SymbolRules:
        market_id = market_id_of(symbol)
        what = f"exchangeInfo {market_id}"
        body = await self._get("public_get_exchangeinfo", {"symbol": market_id}, what)
        return rules_from_exchange_info(body, market_id)


def _candle(symbol: str, interval: str, row: _Kline) -> Candle:
    """One REST kline row, its numbers checked like the stream's (`domain.numbers`): MalformedNumber
    for any bad field, and the caller refuses the whole page, so no part of it is used."""
    open_, high = numbers.price(row[1], "kline open"), numbers.price(row[2], "kline high")
    low, close = numbers.price(row[3], "kline low"), numbers.price(row[4], "kline close")
    numbers.check_candle(open_, high, low, close, row[0], row[6])
    if row[8] < 0:
        raise numbers.MalformedNumber(f"kline trades {row[8]} is negative")
    return Candle(
        symbol=symbol,
        interval=interval,
        open_time=row[0],
        close_time=row[6],
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=numbers.quantity(row[5], "kline volume"),
        closed=True,
        trades=row[8],
    )


def rules_from_exchange_info(body: Any, market_id: str) -> SymbolRules:
    """SymbolRules from an exchangeInfo body (LOT_SIZE, MARKET_LOT_SIZE, PRICE_FILTER, (MIN_)NOTIONAL)."""
    try:
        entry = next(s for s in body["symbols"] if s["symbol"] == market_id)
    except (KeyError, TypeError, StopIteration) as e:
        raise PermanentError(f"exchangeInfo has no symbol {market_id}") from e
    filters = {f.get("filterType"): f for f in entry.get("filters", [])}

    def dec(filter_type: str, key: str, default: str | None = None) -> Decimal:
        raw = filters.get(filter_type, {}).get(key, default)
        if raw is None:
            raise PermanentError(f"exchangeInfo {market_id}: filter {filter_type}.{key} is missing")
        try:
            return Decimal(str(raw))
        except InvalidOperation as e:
            raise PermanentError(f"exchangeInfo {market_id}: {filter_type}.{key}={raw!r}") from e

    lot_step, lot_min, lot_max = (
        dec("LOT_SIZE", "stepSize"),
        dec("LOT_SIZE", "minQty"),
        dec("LOT_SIZE", "maxQty"),
    )
    # MARKET_LOT_SIZE tightens LOT_SIZE for market orders; Binance sends 0 for "no extra limit".
    mkt_max = dec("MARKET_LOT_SIZE", "maxQty", "0")
    mkt_min = dec("MARKET_LOT_SIZE", "minQty", "0")
    if "NOTIONAL" in filters:
        min_notional = dec("NOTIONAL", "minNotional", "0")
    else:
        min_notional = dec("MIN_NOTIONAL", "minNotional", "0")
    return SymbolRules(
        market_id=market_id,
        base_asset=str(entry.get("baseAsset", "")),
        quote_asset=str(entry.get("quoteAsset", "")),
        step_size=lot_step,
        min_qty=max(lot_min, mkt_min),
        max_qty=min(lot_max, mkt_max) if mkt_max > 0 else lot_max,
        tick_size=dec("PRICE_FILTER", "tickSize"),
        min_notional=min_notional,
    )
