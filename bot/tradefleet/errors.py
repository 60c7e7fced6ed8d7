"""The error tree, split by the only question a caller asks: will a retry help?

Library errors (aiohttp, ccxt, pymongo, redis, sqlite3) are translated into these at the edge
that talks to the library, so the engine never imports a library to decide what to do.
"""

from __future__ import annotations


class TradefleetError(Exception):
    """Base of every error we raise on purpose."""


class ConfigError(TradefleetError):
    """Configuration or a TradingBot spec is invalid; the message says what to fix."""


class TemporaryError(TradefleetError):
    """Something outside us failed in a way a later retry may fix."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(TradefleetError):
    """Retrying the same request cannot succeed (bad request, rejected order, auth failure)."""


class ExchangeUnavailable(TemporaryError):
    """Network error, timeout, 5xx from the exchange."""


class RateLimited(TemporaryError):
    """HTTP 429/418 or Binance -1003: wait `retry_after` seconds before the next request."""


class ExecutionUnknown(TemporaryError):
    """The order request may or may not have reached the exchange (timeout, lost response, 5xx,
    Binance -1007). The only safe next step is to query by client order id, never to re-send."""


class OrderRejected(PermanentError):
    """The exchange refused the order; `code` is the exchange's error code when known."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class StoreUnavailable(TemporaryError):
    """The store cannot be written or read right now (file locked/read-only, server unreachable)."""


class MalformedFrame(TradefleetError):
    """A market-data frame could not be parsed; it is counted and skipped, never fatal."""


class SequenceGap(TradefleetError):
    """A depth diff does not follow the local book's last update id; the book must resync."""


class LeaseLost(TemporaryError):
    """Leadership cannot be proven right now; no order may be submitted."""
