"""The bot's own report (its `/status` JSON, see the contract) carried into `status.bot`.

The operator reads it through the bot's Service, so it needs no Redis access and no Secret:
whichever replica answers reports the leader (`holder`) and the stored position. A report that
does not name the expected bot, or is not the contract's shape, is refused rather than shown:
`kubectl get tb` must never display another bot's position. Decimals stay strings end to end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from tradefleet.errors import PermanentError, TemporaryError


class ReportUnavailable(TemporaryError):
    """The bot did not answer /status (not running yet, restarting, network)."""


class ReportInvalid(PermanentError):
    """The bot answered something that is not its contract report."""


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def to_status(report: Mapping[str, Any], *, bot: str) -> dict[str, Any]:
    """A bot /status document -> the TradingBot's `status.bot` (camelCase, decimals as strings)."""
    if not isinstance(report, Mapping):
        raise ReportInvalid("the bot's /status is not a JSON object")
    if report.get("bot") != bot:
        raise ReportInvalid(f"the /status answer is from bot {report.get('bot')!r}, expected {bot!r}")
    position = report.get("position") or {}
    if not isinstance(position, Mapping):
        raise ReportInvalid("position must be an object")
    out: dict[str, Any] = {
        "role": _text(report.get("role")) or "unknown",
        "holder": _text(report.get("holder")) or "",
        "ready": bool(report.get("ready")),
        "position": {
            "qty": _text(position.get("qty")) or "0",
            "costQuote": _text(position.get("cost_quote")) or "0",
            "realizedPnlQuote": _text(position.get("realized_pnl_quote")) or "0",
        },
        # None removes the key in a merge patch: no signal yet means no signal shown.
        "lastSignal": None,
        "lastOrder": None,
        "risk": _risk(report.get("risk")),
    }
    updated = report.get("updated_at")
    if isinstance(updated, int) and not isinstance(updated, bool):
        out["updatedAt"] = updated
    signal = report.get("last_signal")
    if isinstance(signal, Mapping):
        close_time = signal.get("candle_close_time")
        out["lastSignal"] = {
            "signalId": _text(signal.get("signal_id")) or "",
            "side": _text(signal.get("side")) or "",
            "candleCloseTime": int(close_time) if isinstance(close_time, int) else 0,
            "close": _text(signal.get("close")) or "",
        }
    order = report.get("last_order")
    if isinstance(order, Mapping):
        out["lastOrder"] = {
            "clientOrderId": _text(order.get("client_order_id")) or "",
            "status": _text(order.get("status")) or "",
            "side": _text(order.get("side")) or "",
            "filledQty": _text(order.get("filled_qty")) or "0",
            "avgPrice": _text(order.get("avg_price")) or "",
        }
    return out


def _risk(risk: Any) -> dict[str, Any] | None:
    """The bot's `risk` block -> `status.bot.risk`: halted, the first halt's who/why/when."""
    if not isinstance(risk, Mapping):
        return None
    halts = risk.get("halts") if isinstance(risk.get("halts"), list) else []
    first = halts[0] if halts and isinstance(halts[0], Mapping) else {}
    at = first.get("at_ms")
    return {
        "halted": bool(risk.get("halted")),
        "stateKnown": bool(risk.get("state_known", True)),
        "scope": _text(first.get("scope")) or "",
        "reason": (_text(first.get("reason")) or "")[:500],
        "by": (_text(first.get("by")) or "")[:200],
        "since": int(at) if isinstance(at, int) and not isinstance(at, bool) else 0,
        "haltId": _text(first.get("halt_id")) or "",
        "exposureQuote": _text(risk.get("exposure_quote")) or "0",
    }


async def fetch(session: aiohttp.ClientSession, url: str, *, timeout_s: float) -> Mapping[str, Any]:
    """GET the bot's /status; library errors become `ReportUnavailable` / `ReportInvalid`."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ReportUnavailable(f"GET {url} answered HTTP {resp.status}", retry_after=timeout_s)
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise ReportUnavailable(f"GET {url} failed: {e!r}", retry_after=timeout_s) from e
    try:
        data = json.loads(body)
    except ValueError as e:
        raise ReportInvalid(f"GET {url} did not return JSON: {e}") from e
    if not isinstance(data, Mapping):
        raise ReportInvalid(f"GET {url} did not return a JSON object")
    return data
