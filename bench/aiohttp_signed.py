"""The bot's signed Binance REST client as it was before its own HTTP/1.1 client: the same signing and
answer reading as `BinanceSignedRest`, on an aiohttp `ClientSession`. Kept only as the peer for
`bench.orders` (same order path, only the HTTP client differs); the bot no longer sends orders
through aiohttp.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from yarl import URL

from tradefleet.adapters.binance_signed import (
    BinanceTransportError,
    Params,
    _clean,
    query_string,
    read_answer,
)
from tradefleet.adapters.credentials import Credentials
from tradefleet.adapters.http_session import client_session
from tradefleet.adapters.http_session import retry_after as retry_after_of


class AiohttpSignedRest:
    """`BinanceSignedRest`'s contract on one aiohttp session (created on first use)."""

    def __init__(self, base_url: str, credentials: Credentials, *, timeout_ms: int = 10_000) -> None:
        self.base = base_url.rstrip("/")
        self._credentials = credentials
        self._headers = {"X-MBX-APIKEY": credentials.api_key}
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None
        self._succeeded = False

    async def request(self, method: str, path: str, params: Params) -> Any:
        if self._session is None:
            self._session = client_session(timeout=self._timeout)
        query = query_string(params)
        url = URL(f"{self.base}{path}?{query}&signature={self._credentials.sign(query)}", encoded=True)
        try:
            async with self._session.request(method, url, headers=self._headers) as r:
                status = r.status
                body = await r.read()
                retry_after = retry_after_of(r.headers)
        except (aiohttp.ClientError, OSError) as e:
            raise BinanceTransportError(f"{method} {path}: {type(e).__name__}: {_clean(str(e))}") from None
        if 200 <= status < 300:
            self._succeeded = True
        return read_answer(method, path, status, body, retry_after, after_success=self._succeeded)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
