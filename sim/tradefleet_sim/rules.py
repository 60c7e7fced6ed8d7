"""Trading rules per symbol (exchangeInfo entries), as Binance publishes them today.

BTCUSDT uses the current real values (tick 0.01, step 0.00001, minQty 0.00001, NOTIONAL 5).
Captured symbols take tick/step/min-notional from the exchangeInfo recorded with their capture,
rewritten into today's filter set (MIN_NOTIONAL became NOTIONAL in 2023). Any other generated
symbol gets BTCUSDT-like USDT rules. This module refuses to guess base/quote assets beyond a short
list of well-known quote assets; an unsplittable symbol is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradefleet_sim.book import fmt

QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")

# Where a generated book starts when no klines say otherwise.
START_PRICES = {"BTCUSDT": Decimal("92000.00"), "ETHUSDT": Decimal("3100.00"), "BNBUSDT": Decimal("600.00")}


@dataclass(frozen=True)
class SymbolRules:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    market_max_qty: Decimal = Decimal("100")

    def exchange_info(self) -> dict[str, Any]:
        """The `symbols[]` entry of `GET /api/v3/exchangeInfo`."""
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": [
                "LIMIT",
                "LIMIT_MAKER",
                "MARKET",
                "STOP_LOSS",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT",
                "TAKE_PROFIT_LIMIT",
            ],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "amendAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": fmt(self.min_price),
                    "maxPrice": fmt(self.max_price),
                    "tickSize": fmt(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": fmt(self.min_qty),
                    "maxQty": fmt(self.max_qty),
                    "stepSize": fmt(self.step_size),
                },
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": fmt(Decimal(0)),
                    "maxQty": fmt(self.market_max_qty),
                    "stepSize": fmt(Decimal(0)),
                },
                {
                    "filterType": "TRAILING_DELTA",
                    "minTrailingAboveDelta": 10,
                    "maxTrailingAboveDelta": 2000,
                    "minTrailingBelowDelta": 10,
                    "maxTrailingBelowDelta": 2000,
                },
                {
                    "filterType": "PERCENT_PRICE_BY_SIDE",
                    "bidMultiplierUp": "5",
                    "bidMultiplierDown": "0.2",
                    "askMultiplierUp": "5",
                    "askMultiplierDown": "0.2",
                    "avgPriceMins": 5,
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": fmt(Decimal("9000000")),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": [
                "NONE",
                "EXPIRE_TAKER",
                "EXPIRE_MAKER",
                "EXPIRE_BOTH",
                "DECREMENT",
            ],
        }


def split_symbol(symbol: str) -> tuple[str, str]:
    for q in QUOTES:
        if symbol.endswith(q) and len(symbol) > len(q):
            return symbol[: -len(q)], q
    raise ValueError(f"cannot split {symbol!r} into base and quote (known quotes: {', '.join(QUOTES)})")


def generated_rules(symbol: str) -> SymbolRules:
    base, quote = split_symbol(symbol)
    if symbol == "BTCUSDT":
        return SymbolRules(
            symbol,
            base,
            quote,
            tick_size=Decimal("0.01"),
            step_size=Decimal("0.00001"),
            min_qty=Decimal("0.00001"),
            max_qty=Decimal("9000"),
            min_notional=Decimal("5"),
        )
    return SymbolRules(
        symbol,
        base,
        quote,
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.0001"),
        min_qty=Decimal("0.0001"),
        max_qty=Decimal("900000"),
        min_notional=Decimal("5"),
    )


def recorded_rules(exchange_info_path: Path, symbol: str) -> SymbolRules:
    """Rules for a captured symbol from the exchangeInfo recorded in the same session."""
    body = json.loads(exchange_info_path.read_text())["response"]
    for s in body["symbols"]:
        if s["symbol"] == symbol:
            f = {x["filterType"]: x for x in s["filters"]}
            return SymbolRules(
                symbol,
                s["baseAsset"],
                s["quoteAsset"],
                tick_size=Decimal(f["PRICE_FILTER"]["tickSize"]).normalize(),
                step_size=Decimal(f["LOT_SIZE"]["stepSize"]).normalize(),
                min_qty=Decimal(f["LOT_SIZE"]["minQty"]).normalize(),
                max_qty=Decimal(f["LOT_SIZE"]["maxQty"]).normalize(),
                min_notional=Decimal(f["MIN_NOTIONAL"]["minNotional"]).normalize(),
                min_price=Decimal(f["PRICE_FILTER"]["minPrice"]).normalize(),
                max_price=Decimal(f["PRICE_FILTER"]["maxPrice"]).normalize(),
                market_max_qty=Decimal(f.get("MARKET_LOT_SIZE", {}).get("maxQty", "100")).normalize(),
            )
    raise ValueError(f"{symbol} not in {exchange_info_path.name}")
