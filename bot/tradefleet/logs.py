"""JSON-lines logging: one object per line, with an `event` name and typed fields.

Decimals become strings (never floats), datetimes ISO-8601 UTC. Keys that look like secrets are
redacted before anything is written, so a careless `extra=` cannot leak an API key.

Values are redacted too, whoever logs them: ccxt writes every signed request's headers
(`X-MBX-APIKEY`) and URL (`signature=`) at DEBUG, and an exception's text may quote a request. The
root handler carries a `SecretScrubber` that removes every registered credential value (and any
signature or API-key header value, registered or not) from each record's message, args, extra fields
and the final formatted line, for our loggers and every library's, at every level.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TextIO

_SECRET_HINTS = ("secret", "api_key", "apikey", "password", "signature", "token")
_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("***" if any(h in k.lower() for h in _SECRET_HINTS) and k != "fencing_token" else v)
        for k, v in fields.items()
    }


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC with millisecond precision."""
    return (
        dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_ms(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = {k: v for k, v in vars(record).items() if k not in _STD_ATTRS}
        event = fields.pop("event", None)
        out["event"] = event or "log"
        if record.args or not event or record.msg != event:
            out["msg"] = record.getMessage()
        out.update(redact(fields))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=_default, separators=(",", ":"))


REDACTED = "***"
# A request signature (hex HMAC) or API-key header in any rendering: URL query, dict repr, raw header.
_SIGNATURE_RE = re.compile(r"(signature['\"]?\s*[=:]\s*['\"]?)[0-9A-Za-z+/=%]{16,}", re.IGNORECASE)
_KEY_HEADER_RE = re.compile(r"(X-MBX-APIKEY['\"]?\s*[=:]\s*['\"]?)[^'\"\s,;&}]+", re.IGNORECASE)
MIN_SECRET_LEN = 6
"""Shorter values are not scrubbed by value (they would mangle ordinary words); credentials that
short are refused by `credentials.py`."""


class SecretScrubber(logging.Filter):
    """A handler filter that removes credentials from every record, whichever logger wrote it.

    Why on the handler: a filter on a logger covers only that logger, and library loggers (ccxt,
    aiohttp, urllib3) propagate to the root handler without passing ours. The record's message is
    rendered once (`msg % args`), scrubbed, and stored with empty args, so no later formatter can
    re-render the raw arguments. `scrub()` is also applied to the formatted line (exception text,
    stack info, non-string extras) by `ScrubbingFormatter`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._values: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        for value in secrets:
            if value and len(value) >= MIN_SECRET_LEN:
                # The value as written, and as json.dumps / repr would escape it.
                self._values.update({value, json.dumps(value)[1:-1], repr(value)[1:-1]})
        self._ordered = sorted(self._values, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, REDACTED)
        text = _SIGNATURE_RE.sub(r"\1" + REDACTED, text)
        return _KEY_HEADER_RE.sub(r"\1" + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the raw parts, scrubbed, rather than lose the line
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.scrub(message), ()
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True


class ScrubbingFormatter(logging.Formatter):
    """Wraps a formatter and scrubs its whole output: exception tracebacks and extras included."""

    def __init__(self, inner: logging.Formatter, scrubber: SecretScrubber) -> None:
        super().__init__()
        self.inner, self.scrubber = inner, scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber.scrub(self.inner.format(record))


SCRUBBER = SecretScrubber()
"""The process's scrubber: `register_secrets()` adds to it; `setup_logging()` installs it."""


def register_secrets(*secrets: str | None) -> None:
    """Never log these values, from now on, in any logger (call before the first request is made)."""
    SCRUBBER.add(*secrets)


def setup_logging(level: str = "INFO", *, json_lines: bool = True, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    inner = (
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    handler.addFilter(SCRUBBER)
    handler.setFormatter(ScrubbingFormatter(inner, SCRUBBER))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "aiohttp.access", "asyncio", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: `log_event(log, "signal", side="BUY", close=Decimal(...))`."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"event": event, **fields})


def now_ms() -> int:
    return time.time_ns() // 1_000_000
