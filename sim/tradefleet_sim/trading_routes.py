"""HTTP routes of the simulator's signed trading API (`trading.py` holds the state and rules):
`POST/GET/DELETE /api/v3/order`, `GET /api/v3/openOrders`, `GET /api/v3/account`, the WebSocket API
user stream, and the `/sim/orders`, `/sim/orders/arrivals` (with `SimOptions.record_arrivals`),
`/sim/orders/faults`, `/sim/accounts` controls. The rest of the account endpoints are in
`account_rest.py`. Order-path faults (lost responses, 5xx, 429, timeouts) act here, around a real
placement, exactly as `trading.py`'s docstring lists them."""

from __future__ import annotations

import asyncio
import time
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from tradefleet_sim import account_rest
from tradefleet_sim.accounts import Accounts
from tradefleet_sim.rest import ARRIVED_NS
from tradefleet_sim.trading import STATE_KEY, BinanceError, Trading, TradingFaults, _error


def setup(app: web.Application, exchange: Any, accounts: Accounts | None = None) -> Trading:
    """Add the signed trading API to the simulator's app; returns the `Trading` state."""
    trading = Trading(exchange, accounts)
    app[STATE_KEY] = trading
    extensions = getattr(exchange, "extensions", None)
    if isinstance(extensions, dict):
        extensions["trading"] = trading  # so tests and the sim's own /sim/state can reach it

    options = getattr(exchange, "options", None)
    # client order id -> CLOCK_MONOTONIC ns of its first request (SimOptions.record_arrivals), or None:
    # when its bytes reached this process (`arrivals`) and when the REST edge saw it (`handled`).
    arrivals: dict[str, int] | None = {} if getattr(options, "record_arrivals", False) else None
    handled: dict[str, int] = {}

    async def new_order(request: web.Request) -> web.StreamResponse:
        arrived = seen = 0
        if arrivals is not None:
            arrived, seen = request.get(ARRIVED_NS) or (time.monotonic_ns(),) * 2
        cid = request.query.get("newClientOrderId", "")
        try:
            account, params = await trading.authenticate(request)
            cid = params.get("newClientOrderId", "")
            if arrivals is not None and cid and cid not in arrivals:
                arrivals[cid], handled[cid] = arrived, seen
            refusal = exchange.limits.order(account.api_key)
            if refusal is not None:
                headers = {"Retry-After": str(refusal.retry_after_s)}
                raise BinanceError(refusal.status, refusal.code, refusal.msg, headers)
            f = trading.faults
            if f.take("rate_limit"):
                trading.fault_counts["rate_limit"] += 1
                raise BinanceError(
                    429,
                    -1003,
                    "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
                    {"Retry-After": str(f.retry_after_s)},
                )
            if f.take("server_error_before"):
                trading.fault_counts["server_error_before"] += 1
                raise BinanceError(
                    503,
                    -1007,
                    "Timeout waiting for response from backend server. "
                    "Send status unknown; execution status unknown.",
                )
            order = trading.place(account, params)
        except BinanceError as e:
            trading.requests.append((trading.now_ms(), cid, str(e.code)))
            return _error(e)
        trading.requests.append((trading.now_ms(), cid, "accepted"))
        if f.take("lose_response"):
            trading.fault_counts["lose_response"] += 1
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()  # never reaches the client: the connection is gone
        if f.take("server_error"):
            trading.fault_counts["server_error"] += 1
            return _error(
                BinanceError(
                    503,
                    -1007,
                    "Timeout waiting for response from backend server. "
                    "Send status unknown; execution status unknown.",
                )
            )
        if f.take("timeout"):
            trading.fault_counts["timeout"] += 1
            await asyncio.sleep(f.timeout_s)
        resp_type = params.get("newOrderRespType", "FULL")
        return web.json_response(
            order.response(resp_type if resp_type in ("ACK", "RESULT", "FULL") else "FULL")
        )

    async def get_order(request: web.Request) -> web.Response:
        try:
            account, params = await trading.authenticate(request)
            trading.market(params)
            return web.json_response(trading.find(account, params).query_json())
        except BinanceError as e:
            return _error(e)

    async def cancel_order(request: web.Request) -> web.Response:
        try:
            account, params = await trading.authenticate(request)
            trading.market(params)
            order = trading.cancel(account, params)
            return web.json_response(order.response("RESULT") | {"origClientOrderId": order.client_order_id})
        except BinanceError as e:
            return _error(e)

    async def open_orders(request: web.Request) -> web.Response:
        try:
            account, params = await trading.authenticate(request)
            symbol = params.get("symbol")
            rows = [
                o.query_json()
                for o in trading.orders
                if o.is_open and o.api_key == account.api_key and symbol in (None, o.symbol)
            ]
            return web.json_response(rows)
        except BinanceError as e:
            return _error(e)

    async def account_info(request: web.Request) -> web.Response:
        try:
            account, _ = await trading.authenticate(request)
        except BinanceError as e:
            return _error(e)
        balances = [
            {"asset": a, "free": f"{v:.8f}", "locked": f"{account.held(a):.8f}"}
            for a, v in account.balances.items()
        ]
        return web.json_response(
            {
                "makerCommission": 10,
                "takerCommission": 10,
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": "0.00100000",
                    "taker": f"{trading.fee_rate:.8f}",
                    "buyer": "0.00000000",
                    "seller": "0.00000000",
                },
                "canTrade": True,
                "canWithdraw": False,
                "canDeposit": False,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": trading.now_ms(),
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
                "uid": 1,
            }
        )

    async def sim_orders(request: web.Request) -> web.Response:
        return web.json_response(trading.describe())

    async def sim_arrivals(request: web.Request) -> web.Response:
        if arrivals is None:
            msg = "order arrivals are not recorded; start the simulator with --record-order-arrivals"
            return web.json_response({"error": msg}, status=404)
        # Also when each closing kline frame of the replay was handed to a socket (`Hub.sent_at`).
        closes = getattr(getattr(exchange, "hub", None), "sent_at", {})
        return web.json_response(
            {"clock": "CLOCK_MONOTONIC ns", "arrivals": arrivals, "handled": handled, "closes": closes}
        )

    async def sim_faults(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body must be JSON"}, status=400)
        known = {f.name for f in fields(TradingFaults)} | {"drop_user_streams"}
        unknown = sorted(set(body) - known)
        if unknown:
            msg = f"unknown fault(s): {', '.join(unknown)}; known: {sorted(known)}"
            return web.json_response({"error": msg}, status=400)
        for name, value in body.items():
            if name == "drop_user_streams":
                if value:
                    await trading.streams.drop_all()
                continue
            setattr(trading.faults, name, type(getattr(trading.faults, name))(value))
        trading.streams.mute = trading.faults.user_stream_mute
        if not trading.faults.hold_fills and trading.held:
            trading.release_held()
        return web.json_response({"ok": True, "pending_faults": trading.describe()["pending_faults"]})

    async def sim_accounts(request: web.Request) -> web.Response:
        """Add or replace an account: {"api_key", "secret", "balances": {"USDT": "1000", ...}}."""
        try:
            body = await request.json()
            balances = {str(k): Decimal(str(v)) for k, v in body["balances"].items()}
            trading.accounts.add(str(body["api_key"]), str(body["secret"]), balances)
        except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as e:
            return web.json_response({"error": f"need api_key, secret, balances: {e!r}"}, status=400)
        return web.json_response({"ok": True, "accounts": trading.accounts.describe()})

    app.router.add_post("/api/v3/order", new_order)
    app.router.add_get("/api/v3/order", get_order)
    app.router.add_delete("/api/v3/order", cancel_order)
    app.router.add_get("/api/v3/openOrders", open_orders)
    app.router.add_get("/api/v3/account", account_info)
    app.router.add_get("/ws-api/v3", trading.streams.handle)
    app.router.add_get("/sim/orders", sim_orders)
    app.router.add_get("/sim/orders/arrivals", sim_arrivals)
    app.router.add_post("/sim/orders/faults", sim_faults)
    app.router.add_post("/sim/accounts", sim_accounts)
    account_rest.add_routes(app, trading)
    return trading
