"""The simulator's private (signed) Binance Spot API: orders, account, trades, user data stream.

Routes added to the sim's app by `setup(app, exchange)` (the server calls it when this module exists;
the handlers live in `trading_routes.py` and `account_rest.py`):

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
  later), `hold_fills` (bool: MARKET orders answer NEW and wait; setting it false fills every held
  order at the market then: an order in flight for exactly as long as a test needs, no timer),
  `user_stream_mute` (bool), `drop_user_streams` (bool, closes the WebSocket API sessions).

Security is Binance's: `X-MBX-APIKEY` names the account, `signature` is HMAC-SHA256 of the other
parameters exactly as sent (query string then body), and `timestamp`/`recvWindow` are checked
against the wall clock (-1021), which is what makes "a request older than its recvWindow can no
longer be accepted" true here as on Binance. Market orders fill through the market's
`take_liquidity(...)`, so the public streams show the trades and the book change.

Errors carry Binance's codes: -1013 filter failures (LOT_SIZE, NOTIONAL), -2010 duplicate open
client id ("Duplicate order sent.") and insufficient balance, -2013 unknown order, -1121 bad symbol,
-1102 missing/ambiguous amounts, -1022 bad signature, -2015 unknown key. LIMIT (GTC/IOC/FOK) and
LIMIT_MAKER orders rest and match in `orders_limit.py`, stop orders wait in `orders_stop.py`. What
it refuses: trailing stops (-1116), margin, OCO.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tradefleet_sim.accounts import Account, Accounts
from tradefleet_sim.matching import OrderError as LimitError
from tradefleet_sim.matching import SimFill, SimOrder, commission_for, is_step_multiple, market_complete
from tradefleet_sim.orders_limit import LIMIT_TYPES, LimitOrders, limit_params
from tradefleet_sim.orders_stop import STOP_TYPES, stop_price, would_trigger_now
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
    hold_fills: bool = False
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
        self.streams = UserStreams(self.accounts, exchange.timestamp_problem)
        self.faults = TradingFaults()
        self.fee_rate = fee_rate
        self.orders: list[SimOrder] = []
        self.by_client_id: dict[str, list[SimOrder]] = {}
        self.client_ids_seen: Counter[str] = Counter()
        self.fault_counts: Counter[str] = Counter()
        # Every order request as (wall ms, client order id, outcome): lets tests check pacing.
        self.requests: list[tuple[int, str, str]] = []
        self.held: list[tuple[SimOrder, Account, Any, Decimal | None, Decimal | None]] = []
        self._order_ids = itertools.count(1000)
        self.limit = LimitOrders(
            account_of=self.accounts.get,
            report=self._report,
            now_ms=self.now_ms,
            taker_fee=fee_rate,
            market_fill=lambda order, account, market: self.fill(
                order, account, market, order.orig_qty, None
            ),
        )
        for market in getattr(exchange, "markets", {}).values():
            self.limit.attach(market)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- signed request plumbing -----------------------------------------------------------------
    def account_for(self, request: web.Request) -> Account:
        """The account `X-MBX-APIKEY` names: -2014 without a key, -2015 for an unknown one."""
        key = request.headers.get("X-MBX-APIKEY", "")
        if not key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        account = self.accounts.get(key)
        if account is None:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        return account

    async def authenticate(self, request: web.Request) -> tuple[Account, dict[str, str]]:
        account = self.account_for(request)
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
        if "symbol" in params:
            params["symbol"] = params["symbol"].upper()  # Binance accepts `btcusdt` too
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
        problem = self.exchange.timestamp_problem(ts, window)
        if problem is not None:
            raise BinanceError(400, -1021, problem)
        return account, params

    def now_ms(self) -> int:
        return int(self.exchange.now_ms())

    def market(self, params: dict[str, str]) -> Any:
        symbol = params.get("symbol", "")
        market = self.exchange.markets.get(symbol)
        if market is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return market

    # -- orders ----------------------------------------------------------------------------------
    def find(self, account: Account, params: dict[str, str]) -> SimOrder:
        cid, oid = params.get("origClientOrderId"), params.get("orderId")
        if not cid and not oid:
            raise BinanceError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        candidates = (
            self.by_client_id.get(cid, []) if cid else [o for o in self.orders if str(o.order_id) == oid]
        )
        mine = [o for o in candidates if o.api_key == account.api_key and o.symbol == params.get("symbol")]
        if not mine:
            raise BinanceError(400, -2013, "Order does not exist.")
        return mine[-1]

    def place(self, account: Account, params: dict[str, str]) -> SimOrder:
        order = self._place(account, params, dry_run=False)
        assert order is not None
        return order

    def validate(self, account: Account, params: dict[str, str]) -> None:
        """Every check `place` makes, placing nothing (`POST /api/v3/order/test`)."""
        self._place(account, params, dry_run=True)

    def _place(self, account: Account, params: dict[str, str], *, dry_run: bool) -> SimOrder | None:
        market = self.market(params)
        rules = market.rules
        side, type_ = params.get("side", ""), params.get("type", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(
                400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."
            )
        price, tif, stop = Decimal(0), "GTC", Decimal(0)
        try:
            if type_ in STOP_TYPES:
                stop = stop_price(params, rules)
                last = market.tape.last()
                if would_trigger_now(type_, side, stop, last.price if last else None):
                    raise BinanceError(400, -2010, "Stop price would trigger immediately.")
                if type_.endswith("_LIMIT"):
                    price, _, tif = limit_params(params, rules, "LIMIT")
                elif not params.get("quantity") or params.get("quoteOrderQty"):
                    raise BinanceError(
                        400,
                        -1102,
                        "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
                    )
            elif type_ in LIMIT_TYPES:
                price, _, tif = limit_params(params, rules, type_)
        except LimitError as e:
            raise BinanceError(400, e.code, e.msg) from None
        if type_ == "LIMIT_MAKER" and self.limit.would_take(market, side, price) > 0:
            raise BinanceError(400, -2010, "Order would immediately match and take.")
        if type_ != "MARKET" and type_ not in LIMIT_TYPES and type_ not in STOP_TYPES:
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
        ref_price = price if price else (stop if stop else (best[0][0] if best else None))
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
        if dry_run:
            return None
        if self.faults.take("reject"):
            self.fault_counts["reject"] += 1
            raise BinanceError(400, -2010, self.faults.reject_msg)
        now = self.now_ms()
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
            price=price,
            time_in_force=tif,
            stop_price=stop,
        )
        self.orders.append(order)
        self.by_client_id.setdefault(cid, []).append(order)
        if type_ in LIMIT_TYPES:
            self.limit.lock_for(order, account, rules)
        self.user_event(account.api_key, order.execution_report("NEW", "NEW", now))
        if type_ in LIMIT_TYPES:
            self.limit.arrive(order, account, market)
        elif type_ in STOP_TYPES:
            self.limit.wait_for_stop(order, account, market)
        elif self.faults.hold_fills:
            self.held.append((order, account, market, qty, quote))
        elif self.faults.delay_fill_ms > 0:
            self._spawn(self._fill_later(order, account, market, qty, quote, self.faults.delay_fill_ms))
        else:
            self.fill(order, account, market, qty, quote, at=now)
        return order

    def release_held(self) -> int:
        """Fill every order `hold_fills` kept open (those still open); returns how many."""
        held, self.held = self.held, []
        for order, account, market, qty, quote in held:
            if order.is_open:
                self.fill(order, account, market, qty, quote)
        return len(held)

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
        self,
        order: SimOrder,
        account: Account,
        market: Any,
        qty: Decimal | None,
        quote: Decimal | None,
        at: int | None = None,
    ) -> None:
        """Match a MARKET order; an immediate fill is stamped with the order's transactTime `at`."""
        base_asset, quote_asset = market.rules.base, market.rules.quote
        # Never take more than the account holds (the book may have moved since the balance check).
        if order.side == "SELL" and qty is not None:
            qty = min(qty, account.free(base_asset))
        raw = market.take_liquidity(order.side, base_qty=qty, quote_qty=quote) if (qty or quote) else []
        now = self.now_ms() if at is None else at
        executed = cum = Decimal(0)
        first_trade_id = market.trade_id - len(raw) + 1  # the public @trade ids of these fills
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
                trade_id=first_trade_id + i,
                time=now,
            )
            order.fills.append(f)
            executed += q
            cum += price * q
            last = i == len(raw) - 1
            complete = self._complete(order, qty, quote, market)
            order.status = "FILLED" if last and complete else "PARTIALLY_FILLED"
            order.update_time = now
            self.user_event(
                order.api_key, order.execution_report("TRADE", order.status, now, f, executed, cum)
            )
            self.user_event(order.api_key, account_position(account, (base_asset, quote_asset), now))
        if order.status != "FILLED":
            order.status = "EXPIRED"
            order.update_time = now
            self.user_event(order.api_key, order.execution_report("EXPIRED", "EXPIRED", now))

    @staticmethod
    def _complete(order: SimOrder, qty: Decimal | None, quote: Decimal | None, market: Any) -> bool:
        best = market.levels(order.side, 1) if qty is None else []
        return market_complete(
            base_qty=qty,
            quote_qty=quote,
            executed_qty=order.executed_qty,
            cum_quote=order.cum_quote,
            next_price=best[0][0] if best else None,
            step=market.rules.step_size,
        )

    def cancel(self, account: Account, params: dict[str, str]) -> SimOrder:
        try:
            order = self.find(account, params)
        except BinanceError:
            raise BinanceError(400, -2011, "Unknown order sent.") from None
        if not order.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        if order.type in LIMIT_TYPES or order.type in STOP_TYPES:
            self.limit.finish(order, account, self.market(params), "CANCELED", self.now_ms())
            return order
        order.status = "CANCELED"
        order.update_time = self.now_ms()
        self.user_event(order.api_key, order.execution_report("CANCELED", "CANCELED", order.update_time))
        return order

    def _report(
        self, order: SimOrder, account: Account, exec_type: str, status: str, now: int, fill: SimFill | None
    ) -> None:
        self.user_event(order.api_key, order.execution_report(exec_type, status, now, fill))
        if fill is not None or exec_type in ("CANCELED", "EXPIRED"):
            rules = self.exchange.markets[order.symbol].rules
            self.user_event(order.api_key, account_position(account, (rules.base, rules.quote), now))

    def user_event(self, api_key: str, event: dict[str, Any]) -> None:
        """One user data event to the account's WebSocket API subscriptions and listenKey streams."""
        self.streams.publish(api_key, event)
        if self.streams.mute:
            return
        for listen_key, key in list(self.exchange.listen_keys.items()):
            if key == api_key:
                self.exchange.hub.publish(listen_key, event)

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


def account_position(account: Account, assets: tuple[str, ...], now: int) -> dict[str, Any]:
    """`outboundAccountPosition`: the balances an event changed (nothing is ever locked here)."""
    return {
        "e": "outboundAccountPosition",
        "E": now,
        "u": now,
        "B": [{"a": a, "f": f"{account.free(a):.8f}", "l": f"{account.held(a):.8f}"} for a in assets],
    }


def _error(e: BinanceError) -> web.Response:
    return web.json_response({"code": e.code, "msg": e.msg}, status=e.status, headers=e.headers)


def setup(app: web.Application, exchange: Any, accounts: Accounts | None = None) -> Trading:
    """Add the signed trading API to the simulator's app (routes in `trading_routes.py`)."""
    from tradefleet_sim import trading_routes  # the HTTP handlers build on this module's Trading

    return trading_routes.setup(app, exchange, accounts)
