"""Domain records to MongoDB documents and back, exactly.

Decimals become BSON Decimal128 (34 significant digits, exponent kept), never doubles: 0.1 stays
0.1 and a query can still compare prices numerically (on servers without Decimal128 they are
stored as exact decimal strings instead: see `mongo_schema`). A value Decimal128 cannot hold exactly is
refused with `PermanentError` rather than rounded. Times stay integer milliseconds, as in the
domain; the prices time-series also gets a BSON date (`ts`) because MongoDB buckets on it.

Natural keys become `_id`, so uniqueness is the primary key's and an insert retried after a lost
reply fails with DuplicateKeyError, which the store treats as "already there".
"""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128

from tradefleet.domain.models import (
    BotEvent,
    Candle,
    EventKind,
    Order,
    OrderStatus,
    OrderUpdate,
    Position,
    PriceSample,
    Side,
    Signal,
)
from tradefleet.errors import PermanentError
from tradefleet.store.merge import update_key

Doc = dict[str, Any]


def d128(value: Decimal) -> Decimal128:
    try:
        return Decimal128(value)
    except (decimal.Inexact, decimal.InvalidOperation) as e:
        raise PermanentError(f"{value} cannot be stored exactly as Decimal128 (34 digits at most)") from e


def opt_d128(value: Decimal | None) -> Decimal128 | None:
    return None if value is None else d128(value)


def decimals_as_strings(value: Any) -> Any:
    """`value` with every Decimal128 inside replaced by its exact decimal string, for servers
    without Decimal128 (FerretDB 1.x; see `mongo_schema`). `dec` reads both forms back."""
    if isinstance(value, Decimal128):
        return str(value.to_decimal())
    if isinstance(value, dict):
        return {k: decimals_as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decimals_as_strings(v) for v in value]
    return value


def dec(value: Any) -> Decimal:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, str | int):
        return Decimal(value)
    raise PermanentError(f"stored value {value!r} is not a decimal")


def opt_dec(value: Any) -> Decimal | None:
    return None if value is None else dec(value)


def ms_to_date(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def candle_id(symbol: str, interval: str, open_time: int) -> str:
    return f"{symbol}|{interval}|{open_time}"


def position_id(bot: str, symbol: str) -> str:
    return f"{bot}|{symbol}"


def update_id(update: OrderUpdate) -> str:
    return f"{update.client_order_id}|{update_key(update)}"


def price_doc(s: PriceSample) -> Doc:
    return {
        "ts": ms_to_date(s.local_ts),
        "meta": {"bot": s.bot, "symbol": s.symbol},
        "exchange": s.exchange,
        "exchange_ts": s.exchange_ts,
        "local_ts": s.local_ts,
        "update_id": s.update_id,
        "bid": d128(s.bid),
        "bid_qty": d128(s.bid_qty),
        "ask": d128(s.ask),
        "ask_qty": d128(s.ask_qty),
        "mid": d128(s.mid),
        "spread": d128(s.spread),
    }


def price_from(d: Doc) -> PriceSample:
    return PriceSample(
        bot=d["meta"]["bot"], exchange=d["exchange"], symbol=d["meta"]["symbol"],
        exchange_ts=int(d["exchange_ts"]), local_ts=int(d["local_ts"]), update_id=int(d["update_id"]),
        bid=dec(d["bid"]), bid_qty=dec(d["bid_qty"]), ask=dec(d["ask"]), ask_qty=dec(d["ask_qty"]),
    )  # fmt: skip


def candle_doc(c: Candle) -> Doc:
    return {
        "_id": candle_id(c.symbol, c.interval, c.open_time),
        "symbol": c.symbol, "interval": c.interval, "open_time": c.open_time, "close_time": c.close_time,
        "open": d128(c.open), "high": d128(c.high), "low": d128(c.low), "close": d128(c.close),
        "volume": d128(c.volume), "closed": c.closed, "trades": c.trades,
    }  # fmt: skip


def candle_from(d: Doc) -> Candle:
    return Candle(
        symbol=d["symbol"], interval=d["interval"], open_time=int(d["open_time"]),
        close_time=int(d["close_time"]), open=dec(d["open"]), high=dec(d["high"]), low=dec(d["low"]),
        close=dec(d["close"]), volume=dec(d["volume"]), closed=bool(d["closed"]), trades=int(d["trades"]),
    )  # fmt: skip


def signal_doc(s: Signal) -> Doc:
    return {
        "_id": s.signal_id,
        "bot": s.bot, "exchange": s.exchange, "symbol": s.symbol, "interval": s.interval,
        "side": s.side.value, "candle_open_time": s.candle_open_time,
        "candle_close_time": s.candle_close_time, "close": d128(s.close), "sma_short": d128(s.sma_short),
        "sma_long": d128(s.sma_long), "created_at": s.created_at, "action": s.action,
    }  # fmt: skip


def signal_from(d: Doc) -> Signal:
    return Signal(
        signal_id=d["_id"], bot=d["bot"], exchange=d["exchange"], symbol=d["symbol"],
        interval=d["interval"], side=Side(d["side"]), candle_open_time=int(d["candle_open_time"]),
        candle_close_time=int(d["candle_close_time"]), close=dec(d["close"]),
        sma_short=dec(d["sma_short"]), sma_long=dec(d["sma_long"]), created_at=int(d["created_at"]),
        action=d["action"],
    )  # fmt: skip


def order_state(o: Order) -> Doc:
    """The fields an update may change."""
    return {
        "status": o.status.value, "updated_at": o.updated_at, "exchange_order_id": o.exchange_order_id,
        "filled_qty": d128(o.filled_qty), "cum_quote": d128(o.cum_quote), "fee": d128(o.fee),
        "fee_asset": o.fee_asset, "reason": o.reason,
    }  # fmt: skip


def order_doc(o: Order) -> Doc:
    return {
        "_id": o.client_order_id,
        "bot": o.bot, "exchange": o.exchange, "symbol": o.symbol, "side": o.side.value,
        "order_type": o.order_type, "signal_id": o.signal_id, "created_at": o.created_at,
        "quantity": opt_d128(o.quantity), "quote_amount": opt_d128(o.quote_amount),
        "fencing_token": o.fencing_token,
        **order_state(o),
        # Optimistic concurrency for updates, and the update keys already folded into this document
        # (so a fee is added once even if the history insert and this update were split by a crash).
        "rev": 0,
        "applied": [],
    }  # fmt: skip


def order_from(d: Doc) -> Order:
    return Order(
        client_order_id=d["_id"], bot=d["bot"], exchange=d["exchange"], symbol=d["symbol"],
        side=Side(d["side"]), order_type=d["order_type"], signal_id=d["signal_id"],
        status=OrderStatus(d["status"]), created_at=int(d["created_at"]), updated_at=int(d["updated_at"]),
        quantity=opt_dec(d.get("quantity")), quote_amount=opt_dec(d.get("quote_amount")),
        exchange_order_id=d.get("exchange_order_id"), filled_qty=dec(d["filled_qty"]),
        cum_quote=dec(d["cum_quote"]), fee=dec(d["fee"]), fee_asset=d.get("fee_asset"),
        fencing_token=d.get("fencing_token"), reason=d.get("reason"),
    )  # fmt: skip


def update_doc(u: OrderUpdate, received_ns: int) -> Doc:
    return {
        "_id": update_id(u),
        "client_order_id": u.client_order_id, "update_key": update_key(u), "status": u.status.value,
        "event_time": u.event_time, "exchange_order_id": u.exchange_order_id,
        "filled_qty": d128(u.filled_qty), "cum_quote": d128(u.cum_quote), "last_qty": d128(u.last_qty),
        "last_price": d128(u.last_price), "fee": d128(u.fee), "fee_asset": u.fee_asset,
        "trade_id": u.trade_id, "exec_type": u.exec_type, "reason": u.reason, "source": u.source,
        "received_ns": received_ns,
    }  # fmt: skip


def update_from(d: Doc) -> OrderUpdate:
    return OrderUpdate(
        client_order_id=d["client_order_id"], status=OrderStatus(d["status"]),
        event_time=int(d["event_time"]), exchange_order_id=d.get("exchange_order_id"),
        filled_qty=dec(d["filled_qty"]), cum_quote=dec(d["cum_quote"]), last_qty=dec(d["last_qty"]),
        last_price=dec(d["last_price"]), fee=dec(d["fee"]), fee_asset=d.get("fee_asset"),
        trade_id=d.get("trade_id"), exec_type=d["exec_type"], reason=d.get("reason"), source=d["source"],
    )  # fmt: skip


def position_doc(p: Position) -> Doc:
    return {
        "_id": position_id(p.bot, p.symbol),
        "bot": p.bot, "symbol": p.symbol, "qty": d128(p.qty), "cost_quote": d128(p.cost_quote),
        "realized_pnl_quote": d128(p.realized_pnl_quote), "updated_at": p.updated_at,
    }  # fmt: skip


def position_from(d: Doc) -> Position:
    return Position(
        bot=d["bot"], symbol=d["symbol"], qty=dec(d["qty"]), cost_quote=dec(d["cost_quote"]),
        realized_pnl_quote=dec(d["realized_pnl_quote"]), updated_at=int(d["updated_at"]),
    )  # fmt: skip


def event_doc(e: BotEvent) -> Doc:
    """Only strings inside, so every server stores it as it is (no Decimal128 needed)."""
    for key in e.fields:
        if not key or key.startswith("$") or "." in key:
            raise PermanentError(f"event field name {key!r} cannot be a MongoDB field name")
    return {
        "_id": e.event_id, "bot": e.bot, "kind": e.kind.value, "at_ms": e.at_ms, "summary": e.summary,
        "fields": dict(e.fields),
    }  # fmt: skip


def event_from(d: Doc) -> BotEvent:
    return BotEvent(
        event_id=d["_id"], bot=d["bot"], kind=EventKind(d["kind"]), at_ms=int(d["at_ms"]),
        summary=d["summary"], fields={str(k): str(v) for k, v in d.get("fields", {}).items()},
    )  # fmt: skip
