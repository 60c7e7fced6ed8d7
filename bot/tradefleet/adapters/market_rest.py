"""Public market REST over aiohttp: depth snapshots, closed candles, symbol rules.

Why it exists: the book needs a REST snapshot to sync, the strategy needs 200+ closed daily candles
at start, and sizing needs the exchange's filters. Four public GETs (`/api/v3/depth`, `/time`,
`/klines`, `/exchangeInfo`) on the aiohttp client the feed already loads for its websocket. It was
ccxt's implicit API (`public_get_depth`, ...) until the memory work: importing ccxt's Binance
client costs ~19 MiB of RSS per bot (`python -m bench.imports`); a paper bot now loads no ccxt at
all, only the trading client of a testnet/live bot does (`binance_exec`). Raw bodies keep the
exchange's decimal strings and the depth snapshot keeps `lastUpdateId`, which the sync algorithm
needs.

Errors, mapped as ccxt mapped them for these endpoints (the retry policy depends on it):
`RateLimited` for 429/418 and Binance codes -1003/-1015, with the server's Retry-After;
`ExchangeUnavailable` for the network, timeouts, 5xx, Binance's "busy" codes, a 4xx without a
Binance error body (a proxy, a WAF, a maintenance page) and malformed bodies; `PermanentError` for a
4xx carrying a Binance error code (bad symbol, bad parameter: a retry cannot help).

What it refuses to do: retry (callers own retry policy, with `retry_after` as a hint), follow an
environment proxy (like the feed: `trust_env=False`), or let an aiohttp exception escape.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import msgspec

from tradefleet.adapters.http_session import client_session, retry_after
from tradefleet.domain import numbers
from tradefleet.domain.market import DepthSnapshot
from tradefleet.domain.models import Candle
from tradefleet.errors import (
    ExchangeUnavailable,
    MalformedFrame,
    PermanentError,
    RateLimited,
)
from tradefleet.ports import SymbolRules

BINANCE_REST = "https://api.binance.com"
TESTNET_REST = "https://testnet.binance.vision"
TESTNET_WS = "wss://stream.testnet.binance.vision"
TESTNET_WS_API = "wss://ws-api.testnet.binance.vision/ws-api/v3"
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


# Binance error codes that mean "not now" rather than "never".
_RATE_CODES = frozenset({-1003, -1015})
_BUSY_CODES = frozenset({-1000, -1001, -1004, -1006, -1007, -1008})


class _ErrorBody(msgspec.Struct):
    code: int
    msg: str = ""


_error_body = msgspec.json.Decoder(_ErrorBody)


def error_for(status: int, body: bytes, retry_after: float | None, what: str) -> Exception:
    """Our error for a non-2xx answer (`status`, raw `body`, the server's Retry-After)."""
    try:
        err: _ErrorBody | None = _error_body.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        err = None
    detail = f"HTTP {status}" + (f" code {err.code}: {err.msg[:200]}" if err is not None else "")
    code = err.code if err is not None else None
    if status in (418, 429) or code in _RATE_CODES:
        return RateLimited(
            f"{what}: rate limited: {detail}", retry_after=retry_after or _DEFAULT_RATE_LIMIT_WAIT_S
        )
    if status >= 500 or code in _BUSY_CODES or err is None:
        return ExchangeUnavailable(f"{what}: {detail}", retry_after=retry_after)
    return PermanentError(f"{what}: {detail}")


class BinanceMarketRest:
    """`MarketRest` over aiohttp, against Binance Spot (or any server speaking its public REST)."""

    def __init__(
        self, *, rest_url: str | None = None, testnet: bool = False, timeout_ms: int = 10_000
    ) -> None:
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be positive, got {timeout_ms}")
        base = rest_url or (TESTNET_REST if testnet else BINANCE_REST)
        if not base.startswith(("http://", "https://")):
            raise PermanentError(f"REST URL must be http:// or https://, got {base!r}")
        self.base = base.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get(self, endpoint: str, params: dict[str, Any], what: str, shape: Any = Any) -> Any:
        """The JSON body of `GET /api/v3/<endpoint>` decoded as `shape`, or one of our errors."""
        body = await self._fetch(endpoint, params, what)
        try:
            return msgspec.json.decode(body, type=shape)
        except msgspec.ValidationError as e:
            raise ExchangeUnavailable(f"{what}: unexpected body: {e}", retry_after=1.0) from e
        except msgspec.DecodeError as e:
            raise ExchangeUnavailable(f"{what}: body is not JSON: {e}", retry_after=1.0) from e

    async def _fetch(self, endpoint: str, params: dict[str, Any], what: str) -> bytes:
        """The raw body of `GET /api/v3/<endpoint>` (2xx), or one of our errors."""
        if self._session is None:  # created on first use, inside the running loop
            self._session = client_session(timeout=self._timeout)
        url = f"{self.base}/api/v3/{endpoint}"
        query = {k: str(v) for k, v in params.items()}
        try:
            async with self._session.get(url, params=query) as r:
                body = await r.read()
                if r.status >= 300:
                    raise error_for(r.status, body, retry_after(r.headers), what)
        except (aiohttp.ClientError, OSError) as e:  # OSError covers TimeoutError
            raise ExchangeUnavailable(f"{what}: {type(e).__name__}: {e}") from e
        return body

    async def fetch_depth_snapshot(self, market_id: str, limit: int) -> DepthSnapshot:
        what = f"depth snapshot {market_id}"
        # Decoded straight into its shape: a generic decode first made a second copy of the 2,000
        # levels (lists and strings) to convert and free, ~0.2 MiB of a bot's RSS at ready.
        depth = await self._get("depth", {"symbol": market_id, "limit": limit}, what, _DepthBody)
        return DepthSnapshot(market_id, depth.lastUpdateId, depth.bids, depth.asks)

    async def server_time_ms(self) -> int:
        body = await self._get("time", {}, "server time")
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
            body = await self._get("klines", params, f"klines {market_id} {interval}")
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
        body = await self._get("exchangeInfo", {"symbol": market_id}, what)
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
