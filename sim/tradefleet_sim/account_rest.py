"""Signed Binance Spot endpoints around orders and the account, and the REST user data stream.

- `GET /api/v3/myTrades` with `orderId`, `fromId`, `startTime`/`endTime` (at most 24 h apart) and
  `limit`, by Binance's rules; `GET /api/v3/allOrders` (`orderId`, `startTime`, `endTime`, `limit`).
- `POST /api/v3/order/cancelReplace` (STOP_ON_FAILURE / ALLOW_FAILURE, Binance's -2021/-2022 bodies),
  `POST /api/v3/order/test` (every check of a real order, nothing placed; `computeCommissionRates`),
  `DELETE /api/v3/openOrders` (cancel all of a symbol), `GET /api/v3/rateLimit/order`,
  `GET /api/v3/account/commission`.
- `POST/PUT/DELETE /api/v3/userDataStream`: the listenKey flow (API key only, no signature); a
  listenKey is a stream name on `/ws/<listenKey>` and `/stream?streams=<listenKey>` (`streams.py`).
  One active key per account, returned again on each POST, as Binance does; keys do not expire
  here (keepalive is accepted and checked for an unknown key).
- `/sapi/v1/capital/config/getall`, `/sapi/v1/margin/allPairs`, `/sapi/v1/margin/isolated/allPairs`:
  what ccxt's `load_markets` calls when given a key (coins of the simulated markets; no margin).
- `POST /sim/accounts/deposit` (JSON `api_key`, `asset`, `amount`, negative to withdraw): changes a
  balance and pushes `balanceUpdate` on the user data stream.
"""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tradefleet_sim.accounts import Account
from tradefleet_sim.matching import SimOrder
from tradefleet_sim.trading import BinanceError, Trading, _error

DAY_MS = 86_400_000


def _int(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return int(raw)


def _limit(params: dict[str, str]) -> int:
    limit = _int(params, "limit")
    if limit is not None and limit < 1:
        raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return min(limit or 500, 1000)


def _window(params: dict[str, str]) -> tuple[int | None, int | None]:
    start, end = _int(params, "startTime"), _int(params, "endTime")
    if start is not None and end is not None and end - start > DAY_MS:
        raise BinanceError(400, -1127, "More than 24 hours between startTime and endTime.")
    if start is not None and end is None:
        end = start + DAY_MS
    if end is not None and start is None:
        start = end - DAY_MS
    return start, end


def my_trades_rows(trading: Trading, account: Account, params: dict[str, str]) -> list[dict[str, Any]]:
    oid, from_id = _int(params, "orderId"), _int(params, "fromId")
    start, end = _window(params)
    if from_id is not None and start is not None:
        raise BinanceError(400, -1128, "Combination of optional parameters invalid.")
    fills = sorted(
        (
            (o, f)
            for o in trading.orders
            if o.api_key == account.api_key and o.symbol == params["symbol"]
            for f in o.fills
            if oid is None or o.order_id == oid
        ),
        key=lambda of: of[1].trade_id,
    )
    limit = _limit(params)
    if from_id is not None:
        chosen = [of for of in fills if of[1].trade_id >= from_id][:limit]
    elif start is not None and end is not None:
        chosen = [of for of in fills if start <= of[1].time <= end][:limit]
    else:
        chosen = fills[-limit:]
    return [o.trade_json(f) for o, f in chosen]


def all_orders_rows(trading: Trading, account: Account, params: dict[str, str]) -> list[dict[str, Any]]:
    oid = _int(params, "orderId")
    start, end = _window(params)
    mine = [o for o in trading.orders if o.api_key == account.api_key and o.symbol == params["symbol"]]
    limit = _limit(params)
    if oid is not None:
        mine = [o for o in mine if o.order_id >= oid][:limit]
    elif start is not None and end is not None:
        mine = [o for o in mine if start <= o.time <= end][:limit]
    else:
        mine = mine[-limit:]
    return [o.query_json() for o in mine]


def commission(trading: Trading, symbol: str) -> dict[str, Any]:
    rate = f"{trading.fee_rate:.8f}"
    zero = "0.00000000"
    return {
        "symbol": symbol,
        "standardCommission": {"maker": rate, "taker": rate, "buyer": zero, "seller": zero},
        "specialCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
        "taxCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
        "discount": {
            "enabledForAccount": False,
            "enabledForSymbol": False,
            "discountAsset": "BNB",
            "discount": zero,
        },
    }


def add_routes(app: web.Application, trading: Trading) -> None:
    exchange = trading.exchange

    def signed(build: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            try:
                account, params = await trading.authenticate(request)
                return web.json_response(await build(account, params))
            except BinanceError as e:
                return _error(e)

        return handler

    def key_only(build: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            try:
                account = trading.account_for(request)
                body = await request.text() if request.can_read_body else ""
                params = dict(request.query) | dict(parse_qsl(body))
                return web.json_response(build(account, params))
            except BinanceError as e:
                return _error(e)

        return handler

    async def my_trades(account: Account, params: dict[str, str]) -> Any:
        trading.market(params)
        return my_trades_rows(trading, account, params)

    async def all_orders(account: Account, params: dict[str, str]) -> Any:
        trading.market(params)
        return all_orders_rows(trading, account, params)

    async def order_test(account: Account, params: dict[str, str]) -> Any:
        trading.validate(account, params)
        if params.get("computeCommissionRates") == "true":
            c = commission(trading, params["symbol"])
            return {
                "standardCommissionForOrder": {
                    "maker": c["standardCommission"]["maker"],
                    "taker": c["standardCommission"]["taker"],
                },
                "taxCommissionForOrder": {"maker": "0.00000000", "taker": "0.00000000"},
                "discount": c["discount"],
            }
        return {}

    async def cancel_all(account: Account, params: dict[str, str]) -> Any:
        market = trading.market(params)
        open_ = [
            o
            for o in trading.orders
            if o.is_open and o.api_key == account.api_key and o.symbol == market.symbol
        ]
        if not open_:
            raise BinanceError(400, -2011, "Unknown order sent.")
        out: list[dict[str, Any]] = []
        for o in open_:
            cancelled: SimOrder = trading.cancel(account, {"symbol": o.symbol, "orderId": str(o.order_id)})
            out.append(cancelled.response("RESULT") | {"origClientOrderId": cancelled.client_order_id})
        return out

    async def rate_limit_order(account: Account, params: dict[str, str]) -> Any:
        ten, day = exchange.limits.order_counts(account.api_key)
        return [
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": exchange.limits.orders_10s,
                "count": ten,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "DAY",
                "intervalNum": 1,
                "limit": exchange.limits.orders_day,
                "count": day,
            },
        ]

    async def account_commission(account: Account, params: dict[str, str]) -> Any:
        return commission(trading, trading.market(params).symbol)

    async def coins(account: Account, params: dict[str, str]) -> Any:
        assets = sorted({a for m in exchange.markets.values() for a in (m.rules.base, m.rules.quote)})
        zero = "0"
        return [
            {
                "coin": a,
                "name": a,
                "depositAllEnable": False,
                "withdrawAllEnable": False,
                "free": f"{account.free(a):.8f}",
                "locked": zero,
                "freeze": zero,
                "withdrawing": zero,
                "ipoing": zero,
                "ipoable": zero,
                "storage": zero,
                "isLegalMoney": False,
                "trading": True,
                "networkList": [],
            }
            for a in assets
        ]

    async def no_pairs(account: Account, params: dict[str, str]) -> Any:
        return []

    def new_listen_key(account: Account, params: dict[str, str]) -> Any:
        for lk, key in exchange.listen_keys.items():
            if key == account.api_key:
                return {"listenKey": lk}
        lk = secrets.token_urlsafe(45).replace("-", "a").replace("_", "b")[:60]
        exchange.listen_keys[lk] = account.api_key
        return {"listenKey": lk}

    def _owned(account: Account, params: dict[str, str]) -> str:
        lk = params.get("listenKey", "")
        if not lk:
            raise BinanceError(
                400, -1102, "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed."
            )
        if exchange.listen_keys.get(lk) != account.api_key:
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        return lk

    def keepalive(account: Account, params: dict[str, str]) -> Any:
        _owned(account, params)
        return {}

    def close_key(account: Account, params: dict[str, str]) -> Any:
        lk = _owned(account, params)
        now = exchange.now_ms()
        exchange.hub.publish(lk, {"e": "listenKeyExpired", "E": now, "listenKey": lk})
        del exchange.listen_keys[lk]
        return {}

    async def deposit(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            account = trading.accounts.get(str(body["api_key"]))
            asset, amount = str(body["asset"]), Decimal(str(body["amount"]))
        except (ValueError, KeyError, TypeError, InvalidOperation) as e:
            return web.json_response({"error": f"need api_key, asset, amount: {e!r}"}, status=400)
        if account is None:
            return web.json_response({"error": "unknown api_key"}, status=404)
        if amount < 0 and -amount > account.free(asset):
            return web.json_response(
                {"error": f"{asset} balance {account.free(asset)} < {-amount}"}, status=400
            )
        account.credit(asset, amount) if amount >= 0 else account.debit(asset, -amount)
        now = exchange.now_ms()
        trading.user_event(
            account.api_key, {"e": "balanceUpdate", "E": now, "a": asset, "d": f"{amount:.8f}", "T": now}
        )
        return web.json_response({"ok": True, "free": str(account.free(asset))})

    async def cancel_replace(request: web.Request) -> web.Response:
        """Cancel an order and place a new one in one request (`cancelReplaceMode`
        STOP_ON_FAILURE: no new order if the cancel fails; ALLOW_FAILURE: place it anyway)."""
        try:
            account, params = await trading.authenticate(request)
            trading.market(params)
            mode = params.get("cancelReplaceMode", "")
            if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
                raise BinanceError(
                    400,
                    -1102,
                    "Mandatory parameter 'cancelReplaceMode' was not sent, was empty/null, or malformed.",
                )
        except BinanceError as e:
            return _error(e)
        target = {
            "symbol": params["symbol"],
            "orderId": params.get("cancelOrderId", ""),
            "origClientOrderId": params.get("cancelOrigClientOrderId", ""),
        }
        target = {k: v for k, v in target.items() if v}
        out: dict[str, Any] = {
            "cancelResult": "SUCCESS",
            "newOrderResult": "NOT_ATTEMPTED",
            "cancelResponse": None,
            "newOrderResponse": None,
        }
        try:
            cancelled = trading.cancel(account, target)
            out["cancelResponse"] = cancelled.response("RESULT") | {
                "origClientOrderId": cancelled.client_order_id
            }
        except BinanceError as e:
            out["cancelResult"], out["cancelResponse"] = "FAILURE", {"code": e.code, "msg": e.msg}
        if out["cancelResult"] == "SUCCESS" or mode == "ALLOW_FAILURE":
            new_params = {
                k: v
                for k, v in params.items()
                if k not in ("cancelOrderId", "cancelOrigClientOrderId", "cancelReplaceMode")
            }
            try:
                order = trading.place(account, new_params)
                out["newOrderResult"], out["newOrderResponse"] = (
                    "SUCCESS",
                    order.response(new_params.get("newOrderRespType", "FULL")),
                )
            except BinanceError as e:
                out["newOrderResult"], out["newOrderResponse"] = "FAILURE", {"code": e.code, "msg": e.msg}
        if out["cancelResult"] == "SUCCESS" and out["newOrderResult"] == "SUCCESS":
            return web.json_response(out)
        if out["cancelResult"] == "FAILURE" and out["newOrderResult"] != "SUCCESS":
            body = {"code": -2022, "msg": "Order cancel-replace failed.", "data": out}
        else:
            body = {"code": -2021, "msg": "Order cancel-replace partially failed.", "data": out}
        return web.json_response(body, status=400)

    app.router.add_post("/api/v3/order/cancelReplace", cancel_replace)
    app.router.add_get("/api/v3/myTrades", signed(my_trades))
    app.router.add_get("/api/v3/allOrders", signed(all_orders))
    app.router.add_post("/api/v3/order/test", signed(order_test))
    app.router.add_delete("/api/v3/openOrders", signed(cancel_all))
    app.router.add_get("/api/v3/rateLimit/order", signed(rate_limit_order))
    app.router.add_get("/api/v3/account/commission", signed(account_commission))
    app.router.add_get("/sapi/v1/capital/config/getall", signed(coins))
    app.router.add_get("/sapi/v1/margin/isolated/allPairs", signed(no_pairs))
    app.router.add_get("/sapi/v1/margin/allPairs", key_only(lambda a, p: []))
    app.router.add_post("/api/v3/userDataStream", key_only(new_listen_key))
    app.router.add_put("/api/v3/userDataStream", key_only(keepalive))
    app.router.add_delete("/api/v3/userDataStream", key_only(close_key))
    app.router.add_post("/sim/accounts/deposit", deposit)
