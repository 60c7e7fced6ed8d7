"""JSON-lines logging: one object per line, with an `event` name and typed fields.

Decimals become strings (never floats), datetimes ISO-8601 UTC. Keys that look like secrets are
redacted before anything is written, so a careless `extra=` cannot leak an API key.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
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


def setup_logging(level: str = "INFO", *, json_lines: bool = True, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
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
