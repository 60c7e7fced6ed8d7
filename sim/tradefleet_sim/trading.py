"""The simulator's private (signed) Binance Spot API: orders, account, trades, user data stream.

Routes added to the sim's app by `setup(app, exchange)` (the server calls it when this module exists):

- `POST/GET/DELETE /api/v3/order`: MARKET orders with `quantity` or `quoteOrderQty`,
  `newClientOrderId`, `newOrderRespType` ACK/RESULT/FULL (FULL by default); query/cancel by
  `origClientOrderId` or `orderId`. `GET /api/v3/openOrders`, `GET /api/v3/account`,
  `GET /api/v3/myTrades` (ccxt fetches fees from it).
- `GET /ws-api/v3`: the WebSocket API user data stream (`userdata.py`).
- `POST /sim/accounts` (JSON `api_key`, `secret`, `balances`): add or replace an account. The default
  one (`accounts.DEFAULT_API_KEY`/`DEFAULT_API_SECRET`) starts with 100000 USDT and 0 BTC.
- `GET /sim/orders`: every order, every client order id seen, and `duplicates` (client ids for which
  the simulator accepted more than one order: must always be 0 for a correct bot).
- `POST /sim/orders/faults` (JSON, unknown keys refused) for the next order requests:
  `lose_response` N (the order IS placed, then the connection is closed without an answer),
  `server_error` N (placed, then HTTP 503 with Binance's -1007 "execution status unknown"),
  `server_error_before` N (503 -1007 and NOT placed), `rate_limit` N (429 + `Retry-After`
  `retry_after_s`, not placed), `timeout_s` X with `timeout` N (placed, the answer waits X seconds),
  `reject` N (`-2010` with `reject_msg`), `delay_fill_ms` (orders answer NEW and fill that much
  later), `user_stream_mute` (bool), `drop_user_streams` (bool, closes the WebSocket API sessions).

Security is Binance's: `X-MBX-APIKEY` names the account, `signature` is HMAC-SHA256 of the other
parameters exactly as sent (query string then body), and `timestamp`/`recvWindow` are checked
against the wall clock (-1021), which is what makes "a request older than its recvWindow can no
longer be accepted" true here as on Binance. Market orders fill through the market's
`take_liquidity(...)`, so the public streams show the trades and the book change.

Errors carry Binance's codes: -1013 filter failures (LOT_SIZE, NOTIONAL), -2010 duplicate open
client id ("Duplicate order sent.") and insufficient balance, -2013 unknown order, -1121 bad symbol,
-1102 missing/ambiguous amounts, -1022 bad signature, -2015 unknown key. What it refuses: LIMIT and
other order types (-1116 in the sim; the bots only send MARKET), margin, OCO.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tradefleet_sim.accounts import Account, Accounts
from tradefleet_sim.matching import SimFill, SimOrder, commission_for, is_step_multiple
from tradefleet_sim.userdata import UserStreams

TAKER_FEE = Decimal("0.001")
_MANDATORY = "Mandatory parameter '{}' was not sent, was empty/null, or malformed."
MAX_RECV_WINDOW = 60_000
STATE_KEY = web.AppKey("tradefleet_trading", object)


@dataclass
class TradingFaults:
    lose_response: int = 0
    server_error: int = 0
    server_error_before: int = 0
    rate_limit: int = 0
    retry_after_s: int = 1
    timeout: int = 0
    timeout_s: float = 0.0
    reject: int = 0
    reject_msg: str = "Order rejected by the simulator."
    delay_fill_ms: int = 0
    user_stream_mute: bool = False

    def take(self, name: str) -> bool:
        left = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


class Trading:
    """The order book of record for signed trading; one per simulator."""

    def __init__(
        self, exchange: Any, accounts: Accounts | None = None, *, fee_rate: Decimal = TAKER_FEE
    ) -> None:
        self.exchange = exchange
        self.accounts = accounts or Accounts()
        self.streams = UserStreams(self.accounts)
        self.faults = TradingFaults()
        self.fee_rate = fee_rate
        self.orders: list[SimOrder] = []
        self.by_client_id: dict[str, list[SimOrder]] = {}
        self.client_ids_seen: Counter[str] = Counter()
        self.fault_counts: Counter[str] = Counter()
        # Every order request as (wall ms, client order id, outcome): lets tests check pacing.
        self.requests: list[tuple[int, str, str]] = []
        self._order_ids = itertools.count(1000)
        self._trade_ids = itertools.count(5000)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- signed request plumbing -----------------------------------------------------------------
    async def authenticate(self, request: web.Request) -> tuple[Account, dict[str, str]]:
        account = self.accounts.get(request.headers.get("X-MBX-APIKEY", ""))
        if account is None:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        body = await request.text() if request.can_read_body else ""
        payload, signature = "", None
        for part in (request.query_string, body):
            kept = []
            for pair in part.split("&") if part else []:
                if pair.startswith("signature="):
                    signature = pair.removeprefix("signature=")
                else:
                    kept.append(pair)
            payload += "&".join(kept)
        params = dict(parse_qsl(request.query_string)) | dict(parse_qsl(body))
        if signature is None:
            raise BinanceError(
                400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        if not account.verify(payload, signature):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        try:
            ts = int(params["timestamp"])
            window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            raise BinanceError(
                400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            ) from None
        if window > MAX_RECV_WINDOW:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        now = _wall_ms()
        if not (ts < now + 1000 and now - ts <= window):
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return account, params

    def market(self, params: dict[str, str]) -> Any:
        symbol = params.get("symbol", "")
        market = self.exchange.markets.get(symbol)
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    # -- orders ----------------------------------------------------------------------------------
    def find(self, account: Account, params: dict[str, str]) -> SimOrder:
        cid, oid = params.get("origClientOrderId"), params.get("orderId")
        candidates = (
            self.by_client_id.get(cid, []) if cid else [o for o in self.orders if str(o.order_id) == oid]
        )
        mine = [o for o in candidates if o.api_key == account.api_key and o.symbol == params.get("symbol")]
        if not mine:
            raise BinanceError(400, -2013, "Order does not exist.")
        return mine[-1]

    def place(self, account: Account, params: dict[str, str]) -> SimOrder:
        market = self.market(params)
        rules = market.rules
        side, type_ = params.get("side", ""), params.get("type", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(
                400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."
            )
        if type_ != "MARKET":
            raise BinanceError(400, -1116, "Invalid orderType.")
        cid = params.get("newClientOrderId") or f"sim-{next(self._order_ids)}"
        self.client_ids_seen[cid] += 1
        if any(o.is_open for o in self.by_client_id.get(cid, [])):
            raise BinanceError(400, -2010, "Duplicate order sent.")
        qty_s, quote_s = params.get("quantity"), params.get("quoteOrderQty")
        if (qty_s is None) == (quote_s is None):
            raise BinanceError(
                400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty!"
            )
        try:
            qty = Decimal(qty_s) if qty_s is not None else None
            quote = Decimal(quote_s) if quote_s is not None else None
        except InvalidOperation:
            raise BinanceError(400, -1100, "Illegal characters found in a parameter.") from None
        if (qty is not None and qty <= 0) or (quote is not None and quote <= 0):
            raise BinanceError(400, -1013, "Invalid quantity.")
        if qty is not None and (
            qty < rules.min_qty or qty > rules.max_qty or not is_step_multiple(qty, rules.step_size)
        ):
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        best = market.levels(side, 1)
        ref_price = best[0][0] if best else None
        notional = (
            quote if quote is not None else (qty * ref_price if qty is not None and ref_price else None)
        )
        if notional is not None and notional < rules.min_notional:
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")
        if side == "BUY":
            need, asset = (quote if quote is not None else (notional or Decimal(0))), rules.quote
        else:
            need, asset = (
                (qty if qty is not None else (quote / ref_price if ref_price and quote else Decimal(0))),
                rules.base,
            )
        if need > account.free(asset):
            raise BinanceError(400, -2010, "Account has insufficient balance for requested action.")
        if self.faults.take("reject"):
            self.fault_counts["reject"] += 1
            raise BinanceError(400, -2010, self.faults.reject_msg)
        now = _wall_ms()
        order = SimOrder(
            symbol=market.symbol,
            order_id=next(self._order_ids),
            client_order_id=cid,
            side=side,
            type=type_,
            orig_qty=qty or Decimal(0),
            orig_quote_qty=quote or Decimal(0),
            api_key=account.api_key,
            time=now,
            update_time=now,
        )
        self.orders.append(order)
        self.by_client_id.setdefault(cid, []).append(order)
        self.streams.publish(account.api_key, order.execution_report("NEW", "NEW", now))
        if self.faults.delay_fill_ms > 0:
            self._spawn(self._fill_later(order, account, market, qty, quote, self.faults.delay_fill_ms))
        else:
            self.fill(order, account, market, qty, quote)
        return order

    async def _fill_later(
        self,
        order: SimOrder,
        account: Account,
        market: Any,
        qty: Decimal | None,
        quote: Decimal | None,
        delay_ms: int,
    ) -> None:
        await asyncio.sleep(delay_ms / 1000)
        if order.is_open:
            self.fill(order, account, market, qty, quote)

    def fill(
        self, order: SimOrder, account: Account, market: Any, qty: Decimal | None, quote: Decimal | None
    ) -> None:
        base_asset, quote_asset = market.rules.base, market.rules.quote
        # Never take more than the account holds (the book may have moved since the balance check).
        if order.side == "SELL" and qty is not None:
            qty = min(qty, account.free(base_asset))
        raw = market.take_liquidity(order.side, base_qty=qty, quote_qty=quote) if (qty or quote) else []
        now = _wall_ms()
        executed = cum = Decimal(0)
        for i, (price, q) in enumerate(raw):
            if order.side == "BUY" and price * q > account.free(quote_asset):
                break
            fee = commission_for(order.side, price, q, self.fee_rate)
            fee_asset = base_asset if order.side == "BUY" else quote_asset
            if order.side == "BUY":
                account.debit(quote_asset, price * q)
                account.credit(base_asset, q - fee)
            else:
                account.debit(base_asset, q)
                account.credit(quote_asset, price * q - fee)
            f = SimFill(
                price=price,
                qty=q,
                commission=fee,
                commission_asset=fee_asset,
                trade_id=next(self._trade_ids),
                time=now,
            )
            order.fills.append(f)
            executed += q
            cum += price * q
            last = i == len(raw) - 1
            complete = self._complete(order, qty, quote, market)
            order.status = "FILLED" if last and complete else "PARTIALLY_FILLED"
            order.update_time = now
            self.streams.publish(
                order.api_key, order.execution_report("TRADE", order.status, now, f, executed, cum)
            )
        if order.status != "FILLED":
            order.status = "EXPIRED"
            order.update_time = now
            self.streams.publish(order.api_key, order.execution_report("EXPIRED", "EXPIRED", now))

    @staticmethod
    def _complete(order: SimOrder, qty: Decimal | None, quote: Decimal | None, market: Any) -> bool:
        if qty is not None:
            return order.executed_qty == qty
        assert quote is not None
        left = quote - order.cum_quote
        best = market.levels(order.side, 1)
        # What is left buys less than one step at the next price: Binance calls that FILLED.
        return left <= 0 or (bool(best) and left / best[0][0] < market.rules.step_size)

    def cancel(self, account: Account, params: dict[str, str]) -> SimOrder:
        order = self.find(account, params)
        if not order.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.update_time = _wall_ms()
        self.streams.publish(order.api_key, order.execution_report("CANCELED", "CANCELED", order.update_time))
        return order

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def describe(self) -> dict[str, Any]:
        per_cid = {cid: len(orders) for cid, orders in self.by_client_id.items()}
        return {
            "orders": [o.query_json() | {"fills": len(o.fills)} for o in self.orders],
            "client_ids_seen": dict(self.client_ids_seen),
            "accepted_per_client_id": per_cid,
            "duplicates": sum(1 for n in per_cid.values() if n > 1),
            "resubmits": sum(n - 1 for n in self.client_ids_seen.values() if n > 1),
            "faults": dict(self.fault_counts),
            "requests": [
                {"time": t, "client_order_id": c, "outcome": o} for t, c, o in self.requests[-1000:]
            ],
            "pending_faults": {f.name: getattr(self.faults, f.name) for f in fields(self.faults)},
            "accounts": self.accounts.describe(),
            "user_streams": self.streams.describe(),
        }


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _error(e: BinanceError) -> web.Response:
    return web.json_response({"code": e.code, "msg": e.msg}, status=e.status, headers=e.headers)


def setup(app: web.Application, exchange: Any, accounts: Accounts | None = None) -> Trading:
    """Add the signed trading API to the simulator's app; returns the `Trading` state."""
    trading = Trading(exchange, accounts)
    app[STATE_KEY] = trading
    extensions = getattr(exchange, "extensions", None)
    if isinstance(extensions, dict):
        extensions["trading"] = trading  # so tests and the sim's own /sim/state can reach it

    async def new_order(request: web.Request) -> web.StreamResponse:
        cid = request.query.get("newClientOrderId", "")
        try:
            account, params = await trading.authenticate(request)
            cid = params.get("newClientOrderId", "")
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
            trading.requests.append((_wall_ms(), cid, str(e.code)))
            return _error(e)
        trading.requests.append((_wall_ms(), cid, "accepted"))
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
            {"asset": a, "free": f"{v:.8f}", "locked": "0.00000000"} for a, v in account.balances.items()
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
                "updateTime": _wall_ms(),
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
                "uid": 1,
            }
        )

    async def my_trades(request: web.Request) -> web.Response:
        try:
            account, params = await trading.authenticate(request)
            trading.market(params)
        except BinanceError as e:
            return _error(e)
        oid = params.get("orderId")
        rows = [
            o.trade_json(f)
            for o in trading.orders
            if o.api_key == account.api_key
            and o.symbol == params["symbol"]
            and (oid is None or str(o.order_id) == oid)
            for f in o.fills
        ]
        return web.json_response(rows[-int(params.get("limit", "500")) :])

    async def sim_orders(request: web.Request) -> web.Response:
        return web.json_response(trading.describe())

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
    app.router.add_get("/api/v3/myTrades", my_trades)
    app.router.add_get("/ws-api/v3", trading.streams.handle)
    app.router.add_get("/sim/orders", sim_orders)
    app.router.add_post("/sim/orders/faults", sim_faults)
    app.router.add_post("/sim/accounts", sim_accounts)
    return trading
