"""Binance Spot's signed REST API: the few endpoints a trading bot calls, nothing else.

Why it exists: ccxt's async Binance client cost a bot ~1 ms of Python per signed order on the
tick -> order path and ~17 MiB of RSS (issue #17, README "Tick → order" and "Memory"). A SIGNED
request is small: the parameters as a query string, `signature` = hex HMAC-SHA256 of exactly that
string with the API secret, the key in the `X-MBX-APIKEY` header. Everything goes in the query string
(Binance accepts the parameters there for POST too), so the signed bytes are the bytes sent: the
request line is written as signed, never re-encoded.

It sends through `http1.Http1Client` (our keep-alive HTTP/1.1 client on asyncio protocols), not an
aiohttp session: from "submit" to the simulator's order handler took ~0.79 ms on aiohttp and takes
~0.58 ms on it (README "Tick → order"; `bench.signed_client` times the clients alone).
`connect()` opens a connection ahead of the first request (`BinanceExecution.prepare`'s account
request does the same).

What comes back: the decoded JSON body of a 2xx answer (numbers in Binance's decimal strings stay
strings), or `BinanceHttpError` with the HTTP status, Binance's `{"code", "msg"}` and the server's
`Retry-After` for any other answer, or `BinanceTransportError` when no answer was read (timeout,
refused or dropped connection, a 2xx body that is not JSON). What those mean for an order is
`binance_exec.translate`'s business, not this module's.

What it refuses: to retry (the order manager owns retries: a blind retry of an order can place it
twice), to follow an environment proxy, and to put the key, the secret or a signature in an error
message (the URL with its signature never leaves this module; the key is only ever a header).
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msgspec

from tradefleet import __version__
from tradefleet.adapters.credentials import Credentials
from tradefleet.adapters.http1 import Http1Client, Http1Error, retry_after_seconds
from tradefleet.logs import log_event

log = logging.getLogger(__name__)

Params = Mapping[str, str | int] | Sequence[tuple[str, str | int]]

_SIGNATURE_RE = re.compile(r"signature=[0-9A-Fa-f]+")
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9._~&=-]")


class BinanceHttpError(Exception):
    """A non-2xx answer. `code`/`msg` from Binance's error body when it has one (None/"" otherwise)."""

    def __init__(
        self, status: int, code: int | None, msg: str, retry_after: float | None, body: str,
        *, after_success: bool = False,
    ) -> None:  # fmt: skip
        self.status = status
        self.code = code
        self.msg = msg
        self.retry_after = retry_after
        self.body = body
        self.after_success = after_success  # this client had a 2xx answer before this one
        detail = f" code {code}: {msg}" if code is not None else (f": {body[:200]}" if body else "")
        super().__init__(f"HTTP {status}{detail}")


class BinanceTransportError(Exception):
    """No usable answer: the request may or may not have reached the exchange."""


class _ErrorBody(msgspec.Struct):
    code: int
    msg: str = ""


_error_body = msgspec.json.Decoder(_ErrorBody)


def query_string(params: Params) -> str:
    """`params` urlencoded in the given order. An order's parameters (symbol, side, decimal strings,
    client id, integers) need no quoting: they are joined as they are, and anything else goes through
    `urlencode` (the same bytes for plain values)."""
    pairs = params.items() if isinstance(params, Mapping) else params
    query = "&".join([f"{k}={v}" for k, v in pairs])
    if _NEEDS_QUOTING.search(query) is not None:
        query = urlencode(params)
    return query


def signed_query(credentials: Credentials, params: Params) -> str:
    """The query string, then `&signature=` + HMAC-SHA256 of exactly that string."""
    query = query_string(params)
    return f"{query}&signature={credentials.sign(query)}"


def _clean(text: str) -> str:
    """An error text without a signature (the client never quotes the target; this makes sure)."""
    return _SIGNATURE_RE.sub("signature=***", text)[:300]


def read_answer(
    method: str, path: str, status: int, body: bytes, retry_after: float | None, *, after_success: bool
) -> Any:
    """A signed request's answer: the decoded JSON of a 2xx, else `BinanceHttpError` with Binance's
    code and message (a 2xx that is not JSON is a `BinanceTransportError`: no usable answer)."""
    if 200 <= status < 300:
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError:
            text = body[:200].decode(errors="replace")
            raise BinanceTransportError(
                f"{method} {path}: HTTP {status} body is not JSON: {text!r}"
            ) from None
    try:
        err: _ErrorBody | None = _error_body.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        err = None
    text = _clean(body[:500].decode(errors="replace"))
    code, msg = (err.code, err.msg[:300]) if err is not None else (None, "")
    raise BinanceHttpError(status, code, msg, retry_after, text, after_success=after_success)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A signed request's bytes (request line with the signature, headers), not sent yet."""

    method: str
    path: str
    query: str
    """The query without its signature: what a debug log line may show."""
    data: bytes

    def __repr__(self) -> str:  # the bytes carry the signature: never in a repr, a log or a traceback
        return f"SignedRequest({self.method} {self.path})"


class BinanceSignedRest:
    """Signed GET/POST/DELETE against one Binance Spot REST base URL, on keep-alive connections it
    owns (one per concurrent request, at most `max_connections`)."""

    def __init__(
        self, base_url: str, credentials: Credentials, *, timeout_ms: int = 10_000, max_connections: int = 4,
        tls: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"REST URL must be http:// or https://, got {base_url!r}")
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be positive, got {timeout_ms}")
        self.base = base_url.rstrip("/")
        self._credentials = credentials
        headers = {"X-MBX-APIKEY": credentials.api_key, "User-Agent": f"tradefleet/{__version__}"}
        self._http = Http1Client(self.base, timeout_s=timeout_ms / 1000, headers=headers,
                                 max_connections=max_connections, tls=tls)  # fmt: skip
        self._succeeded = False

    async def connect(self) -> None:
        """Open a keep-alive connection now, so the next request does not pay for TCP + TLS. Raises
        `BinanceTransportError`."""
        try:
            await self._http.connect()
        except Http1Error as e:
            raise BinanceTransportError(f"connect: {_clean(str(e))}") from None

    async def request(self, method: str, path: str, params: Params) -> Any:
        """The decoded body of a signed `method path?params&signature=…`; raises `BinanceHttpError` or
        `BinanceTransportError`. Never re-sends: a request with no complete answer is a transport error."""
        return await self.send(self.sign(method, path, params))

    def sign(self, method: str, path: str, params: Params) -> SignedRequest:
        """The request's bytes, signed now, for `send` (a little later: its timestamp is in `params`)."""
        query = query_string(params)
        return SignedRequest(method, path, query, self._http.encode(method, self._signed_target(path, query)))

    async def send(self, signed: SignedRequest) -> Any:
        """`request` for bytes `sign` made."""
        method, path, query = signed.method, signed.path, signed.query
        started = time.perf_counter()
        try:
            r = await self._http.send(signed.data)
        except Http1Error as e:
            raise BinanceTransportError(f"{method} {path}: {_clean(str(e))}") from None
        status, body = r.status, r.body
        # What was asked and answered, never the signature or the key (which is only a header).
        log_event(log, "signed_request", logging.DEBUG, method=method, path=path, query=query, status=status,
                  ms=round((time.perf_counter() - started) * 1000, 2))  # fmt: skip
        if 200 <= status < 300:
            self._succeeded = True
        retry_after = None if status < 300 else retry_after_seconds(r.headers.get("retry-after"))
        return read_answer(method, path, status, body, retry_after, after_success=self._succeeded)

    def _signed_target(self, path: str, query: str) -> str:
        return f"{path}?{query}&signature={self._credentials.sign(query)}"

    async def close(self) -> None:
        await self._http.close()
