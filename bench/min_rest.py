"""The depth snapshot over a bare aiohttp GET, for the benchmark's `ours` side only.

Why: the benchmark measures the feed and the book. It was written when the bot's REST edge imported
ccxt (~19 MiB counted in 'our' RSS for one request); the bot's `BinanceMarketRest` is now this same
aiohttp GET plus error translation, so the two differ by a few KiB. The snapshot body is the same
Binance JSON either way. Not for production: no error translation, no retries."""

from __future__ import annotations

from typing import Any

import aiohttp

from tradefleet.domain.market import DepthSnapshot


class MinimalRest:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def fetch_depth_snapshot(self, market_id: str, limit: int) -> DepthSnapshot:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"{self.base}/api/v3/depth?symbol={market_id}&limit={limit}"
        async with self._session.get(url) as r:
            body: dict[str, Any] = await r.json()
        return DepthSnapshot(market_id, int(body["lastUpdateId"]), [tuple(x) for x in body["bids"]],
                             [tuple(x) for x in body["asks"]])  # type: ignore[misc]  # fmt: skip

    async def fetch_candles(self, symbol: str, interval: str, since_ms: int, until_ms: int) -> list[Any]:
        raise NotImplementedError

    async def fetch_symbol_rules(self, symbol: str) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
