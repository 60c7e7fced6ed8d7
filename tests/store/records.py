"""Record factories for the store tests: realistic values (Binance-like decimals), unique ids."""

from __future__ import annotations

import uuid
from decimal import Decimal

from tradefleet.domain.models import (
    Candle,
    Order,
    OrderStatus,
    OrderUpdate,
    Position,
    PriceSample,
    Side,
    Signal,
)

BOT = "btc-usdt"
SYMBOL = "BTC/USDT"
T0 = 1_700_000_000_000  # ms


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def price(i: int, *, bot: str = BOT, local_ts: int | None = None) -> PriceSample:
    bid = Decimal("37000.01") + Decimal(i) / 100
    return PriceSample(
        bot=bot,
        exchange="binance",
        symbol=SYMBOL,
        exchange_ts=T0 + i * 10,
        local_ts=T0 + i * 10 + 3 if local_ts is None else local_ts,
        update_id=40_000_000 + i,
        bid=bid,
        bid_qty=Decimal("0.00120000"),
        ask=bid + Decimal("0.01"),
        ask_qty=Decimal("1.5"),
    )


def candle(i: int, *, close: str = "37100.5", closed: bool = True, interval: str = "1m") -> Candle:
    open_time = T0 + i * 60_000
    return Candle(
        symbol=SYMBOL,
        interval=interval,
        open_time=open_time,
        close_time=open_time + 59_999,
        open=Decimal("37000.00"),
        high=Decimal("37200.10"),
        low=Decimal("36900.00"),
        close=Decimal(close),
        volume=Decimal("12.345678"),
        closed=closed,
        trades=42,
    )


def signal(i: int = 0, *, bot: str = BOT, signal_id: str | None = None, side: Side = Side.BUY) -> Signal:
    return Signal(
        signal_id=signal_id or uid("sig"),
        bot=bot,
        exchange="binance",
        symbol=SYMBOL,
        interval="1m",
        side=side,
        candle_open_time=T0 + i * 60_000,
        candle_close_time=T0 + i * 60_000 + 59_999,
        close=Decimal("37100.50"),
        sma_short=Decimal("37050.123456789"),
        sma_long=Decimal("37049.987654321"),
        created_at=T0 + i * 60_000 + 60_010,
    )


def order(
    coid: str | None = None,
    *,
    bot: str = BOT,
    created_at: int = T0,
    status: OrderStatus = OrderStatus.PENDING,
) -> Order:
    return Order(
        client_order_id=coid or uid("tf"),
        bot=bot,
        exchange="binance",
        symbol=SYMBOL,
        side=Side.BUY,
        order_type="MARKET",
        signal_id=uid("sig"),
        status=status,
        created_at=created_at,
        updated_at=created_at,
        quote_amount=Decimal("100"),
        fencing_token=7,
    )


def update(
    coid: str,
    status: OrderStatus,
    *,
    filled: str = "0",
    quote: str = "0",
    trade_id: int | None = None,
    fee: str = "0",
    event_time: int = T0 + 1,
    exec_type: str | None = None,
    reason: str | None = None,
) -> OrderUpdate:
    if exec_type is None:
        if trade_id is not None:
            exec_type = "TRADE"
        elif status in (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
            exec_type = "QUERY"  # a fill state without a trade id comes from a REST query
        else:
            exec_type = status.value
    return OrderUpdate(
        client_order_id=coid,
        status=status,
        event_time=event_time,
        exchange_order_id="12345",
        filled_qty=Decimal(filled),
        cum_quote=Decimal(quote),
        last_qty=Decimal("0"),
        last_price=Decimal("0"),
        fee=Decimal(fee),
        fee_asset="BNB" if trade_id is not None else None,
        trade_id=trade_id,
        exec_type=exec_type,
        reason=reason,
    )


def position(qty: str = "0.00269541", *, bot: str = BOT) -> Position:
    return Position(
        bot=bot,
        symbol=SYMBOL,
        qty=Decimal(qty),
        cost_quote=Decimal("100.1"),
        realized_pnl_quote=Decimal("-0.05"),
        updated_at=T0 + 5,
    )
