"""`tradefleet demo`: the exchange simulator and one bot in one process, on embedded defaults.

No Docker, no MongoDB, no Redis, no network: the simulator replays real BTCUSDT daily candles (or any
CSV of the same shape) at high speed with a live random-walk order book around them, injects faults
every few seconds (dropped connections, sequence gaps, malformed frames, stalls, failing REST), and
the bot trades the SMA crossover against it — by default through the simulator's signed REST API and
WebSocket user data stream, exactly as it would against Binance (`--mode paper` fills
against the bot's own book instead).

stdout shows a live line every second (book, update rate, gaps/resyncs, SMAs, position), each signal
and order as a JSON line as it happens, and ends with one JSON summary line. The full JSON log goes to
`--log`; the SQLite store stays behind for `sqlite3` or `tradefleet report`. It exits by itself when
the data ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import functools
import json
import logging
import os
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from tradefleet.config import BotConfig
from tradefleet.domain.backtest import naive_backtest
from tradefleet.errors import ConfigError
from tradefleet.logs import JsonFormatter, iso_ms
from tradefleet.metrics import BotMetrics

DEFAULT_KLINES = "BTCUSDT_1d_2017-08-17_to_2026-01-05.csv"

# --help's description, not `__doc__`: the bot image runs with PYTHONOPTIMIZE=2 (no docstrings).
SUMMARY = "`tradefleet demo`: the exchange simulator and one bot in one process, on embedded defaults."


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tradefleet demo", description=SUMMARY)
    p.add_argument("--klines", help="candle CSV: symbol,timeframe,open_time,close_time,open,high,low,close,"
                   "volume,trades (ms UTC); default: real BTCUSDT daily 2017-2026")  # fmt: skip
    p.add_argument("--symbol", help="unified symbol, e.g. BTC/USDT (default: the CSV's symbol)")
    p.add_argument("--interval", help="candle interval (default: the CSV's timeframe)")
    p.add_argument("--short", type=int, default=50, help="short SMA window (default 50)")
    p.add_argument("--long", type=int, default=200, help="long SMA window (default 200)")
    p.add_argument("--quote-amount", default="1000", help="quote spent per BUY (default 1000)")
    p.add_argument("--store", default="tradefleet-demo.sqlite", help="SQLite file left behind")
    p.add_argument("--speed", type=float, default=20.0,
                   help="replayed candles per second (default 20: a day every 50 ms, long enough for an "
                   "order to fill on the candle that caused it)")  # fmt: skip
    p.add_argument("--mode", choices=("exchange", "paper"), default="exchange",
                   help="exchange: signed orders to the simulator (default); "
                   "paper: fills against the bot's own book")  # fmt: skip
    p.add_argument("--fault-every", type=float, default=4.0, help="inject a random fault every S seconds")
    p.add_argument("--no-faults", action="store_true", help="inject no faults")
    p.add_argument("--http-port", type=int, default=0, help="bot's /metrics /status port (0: any free port)")
    p.add_argument("--log", default="tradefleet-demo.log", help="full JSON log of the bot")
    p.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long regardless")
    p.add_argument(
        "--quiet", action="store_true", help="no live view: only JSON lines (signals, orders, summary)"
    )
    p.add_argument("--json", action="store_true",
                   help="also print signals, orders and the summary as JSON (always in --log)")  # fmt: skip
    return p.parse_args(argv)


def csv_identity(path: Path) -> tuple[str, str, int]:
    """(market id, interval, number of rows) from the first rows of a klines CSV."""
    with path.open() as f:
        reader = csv.DictReader(f)
        missing = {"symbol", "timeframe", "open_time", "close_time", "open", "high", "low", "close"} - set(
            reader.fieldnames or ()
        )
        if missing:
            raise ConfigError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    if not rows:
        raise ConfigError(f"{path}: no candles")
    return rows[0]["symbol"].upper(), rows[0]["timeframe"], len(rows)


def fresh_store(path: str) -> Path:
    """The demo starts from an empty store each run (it is a demo, not a bot restart)."""
    store_path = Path(path).resolve()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(store_path) + suffix).unlink()
    return store_path


class _StdoutEvents(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "event", None) in ("signal", "order")


class _HumanEvents(logging.Formatter):
    """A signal or an order as one short line of the terminal view (the JSON goes to the log)."""

    def format(self, record: logging.LogRecord) -> str:
        f = record.__dict__
        if f.get("event") == "signal":
            day = str(f.get("candle_open_time", ""))[:10]
            return (
                f"  {day} {f.get('side')} signal: close {_num(f.get('close'))}"
                f" sma {_num(f.get('sma_short'))} / {_num(f.get('sma_long'))}"
            )
        price = f.get("avg_price")
        at = f" @ {_num(price)}" if price not in (None, "None") else ""
        side, status, qty = f.get("side"), f.get("status"), f.get("filled_qty")
        return f"  order {side} {status} {qty}{at} {f.get('client_order_id')}"


def _num(value: object) -> str:
    try:
        return f"{Decimal(str(value)):.2f}"
    except ArithmeticError:
        return str(value)


def setup_demo_logging(log_path: Path, out: TextIO, *, json_lines: bool = True) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    file_handler = logging.FileHandler(log_path, mode="w")
    file_handler.setFormatter(JsonFormatter())
    shown = logging.StreamHandler(out)
    shown.setFormatter(JsonFormatter() if json_lines else _HumanEvents())
    shown.addFilter(_StdoutEvents())
    root.addHandler(file_handler)
    root.addHandler(shown)
    root.setLevel(logging.INFO)
    for noisy in ("websockets", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(run_demo(args))
    except ConfigError as e:
        print(f"tradefleet demo: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def run_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    import tradefleet_sim
    from tradefleet.app.runtime import BotRuntime
    from tradefleet_sim.accounts import DEFAULT_API_KEY, DEFAULT_API_SECRET
    from tradefleet_sim.exchange import SimExchange
    from tradefleet_sim.options import SimOptions
    from tradefleet_sim.server import SimServer

    klines = (
        Path(args.klines) if args.klines else Path(tradefleet_sim.__file__).parent / "data" / DEFAULT_KLINES
    )
    market_id, csv_interval, rows = csv_identity(klines)
    symbol = args.symbol or _unified(market_id)
    if symbol.replace("/", "").upper() != market_id:
        raise ConfigError(f"--symbol {symbol} does not match the CSV's symbol {market_id}")
    interval = args.interval or csv_interval
    if rows - 1 <= args.long:
        raise ConfigError(f"{klines} has {rows} rows; the long window {args.long} needs more")

    store_path = fresh_store(args.store)
    json_lines = args.quiet or args.json
    setup_demo_logging(Path(args.log), out, json_lines=json_lines)

    options = SimOptions.from_mapping(
        {
            "symbols": (market_id,),
            "klines": klines,
            "kline_interval": interval if interval != csv_interval else None,
            "history": args.long,  # the bot warms up on exactly the long window: every later cross is live
            "speed": args.speed,
            "fault_every": None if args.no_faults else args.fault_every,
            # Scheduled faults hit market data (streams and public REST); orders fill on their candle,
            # so the summary's P&L can be held against the naive backtest. Order-path faults (lost
            # responses, 5xx, 429, rejects) are proven in tests/orders.
            "rest_faults_on_orders": False,
            "enforce_limits": True,  # Binance's request-weight, order and websocket limits, as on Binance
        }
    )
    async with SimServer(SimExchange(options), port=0) as sim:
        config = BotConfig(
            name="demo-" + market_id.lower(),
            symbol=symbol,
            interval=interval,
            short_window=args.short,
            long_window=args.long,
            quote_amount=Decimal(args.quote_amount),
            mode="paper" if args.mode == "paper" else "testnet",
            store_url=f"sqlite:///{store_path}",
            http_port=args.http_port,
            http_host="127.0.0.1",
            rest_url=sim.rest_url,
            ws_url=sim.ws_url,
            ws_api_url=f"{sim.ws_url}/ws-api/v3",
            stale_after_s=3.0,
            reconnect_max_s=2.0,
            price_sample_ms=250,
        )
        if args.mode == "exchange":
            # The simulator's built-in demo account; these are not secrets.
            os.environ["TRADEFLEET_API_KEY"] = DEFAULT_API_KEY
            os.environ["TRADEFLEET_API_SECRET"] = DEFAULT_API_SECRET
        runtime = BotRuntime(config, BotMetrics(), holder="demo")
        replay = sim.exchange.klines
        if replay is not None:
            # Lockstep: after each close the replay (and the book) wait until the bot has processed
            # it and every order it caused is answered and applied, so time only moves on when the
            # instant is done and the result cannot depend on how busy the machine is.
            replay.gate = functools.partial(bot_caught_up, runtime, replay)
            sim.exchange.hub.on_subscribe.append(replay.resend_close)
        bot_task = asyncio.create_task(runtime.run())
        if not args.quiet:
            how = (
                "signed orders to the simulator (the bot's testnet mode)"
                if args.mode == "exchange"
                else "paper fills on the bot's own book (the bot's paper mode)"
            )
            banner = [
                f"tradefleet demo: bot {config.name}, {symbol} {interval}, SMA {args.short}/{args.long}",
                f"  orders: {how}",
                f"  simulator {sim.rest_url}, in lockstep with the bot, up to {args.speed:g} candles/s",
                f"  store {store_path}",
                f"  log {args.log} (JSON lines{'' if json_lines else '; add --json to print them here too'})",
            ]
            print("\n".join(banner), file=out, flush=True)
        view = LiveView(runtime, sim.exchange, out, quiet=args.quiet)
        try:
            await view.until_done(max_seconds=args.max_seconds, bot_task=bot_task)
        finally:
            runtime.request_stop()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):
                    await bot_task
        sim_orders = _sim_orders(sim.exchange)
    summary = await summarize(config, store_path, sim_orders, view, klines=klines, relabel=args.interval)
    if not args.quiet:
        print(human_summary(summary), file=out, flush=True)
    if json_lines:
        print(json.dumps(summary, separators=(",", ":")), file=out, flush=True)
    return 0 if summary["duplicates"] == 0 and view.error is None else 1


def bot_caught_up(runtime: Any, replay: Any) -> bool:
    """The bot has decided on the replay's last closed candle and nothing it caused is in flight."""
    engine, orders = runtime.engine, runtime.orders
    if engine is None or orders is None or not orders.trading_ready or replay.position == 0:
        return False
    seen = engine.strategy.candle_clock.last_open_time
    last = replay.candles[replay.position - 1].open_time
    return bool(seen is not None and seen >= last and not engine.has_pending_work() and orders.idle())


def _unified(market_id: str) -> str:
    for quote in ("USDT", "USDC", "FDUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY"):
        if market_id.endswith(quote) and len(market_id) > len(quote):
            return f"{market_id[: -len(quote)]}/{quote}"
    raise ConfigError(f"cannot tell base and quote of {market_id}; pass --symbol BASE/QUOTE")


def _sim_orders(exchange: Any) -> dict[str, Any]:
    trading = getattr(exchange, "extensions", {}).get("trading")
    if trading is None:
        return {}
    state: dict[str, Any] = trading.describe()
    return state


class LiveView:
    """Prints one line a second and decides when the demo is over."""

    def __init__(self, runtime: Any, exchange: Any, out: TextIO, *, quiet: bool) -> None:
        self.runtime = runtime
        self.exchange = exchange
        self.out = out
        self.quiet = quiet
        self.error: str | None = None
        self._last_msgs = 0.0
        self._last_t = time.monotonic()
        self.started = time.monotonic()
        self._first_position: int | None = None

    def sample(self, name: str, **labels: str) -> float:
        value = self.runtime.metrics.registry.get_sample_value(name, labels or None)
        return float(value or 0.0)

    async def until_done(self, *, max_seconds: float, bot_task: asyncio.Task[int]) -> None:
        idle_since: float | None = None
        last_candle = None
        while time.monotonic() - self.started < max_seconds:
            await asyncio.sleep(1.0)
            if bot_task.done():
                self.error = f"bot stopped early: {bot_task.exception() or bot_task.result()!r}"
                return
            if not self.quiet:
                print(self.line(), file=self.out, flush=True)
            engine = self.runtime.engine
            orders = self.runtime.orders
            if engine is None or orders is None:
                continue
            candle = engine.strategy.cross.last_open_time
            settled = (
                self.exchange.state()["replay_done"]
                and engine._signals.empty()
                and orders._signals.empty()
                and not orders._open_orders()
            )
            if settled and candle == last_candle:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= 2.0:
                    return
            else:
                idle_since = None
            last_candle = candle
        self.error = f"demo did not finish within {max_seconds} s"

    def progress(self) -> tuple[float, str]:
        """(% of the history replayed, ETA) from the replay's position and its pace so far."""
        replay = getattr(self.exchange, "klines", None)
        if replay is None or not replay.candles:
            return 0.0, "-"
        total = len(replay.candles)
        done = replay.position
        first = self._first_position if self._first_position is not None else done
        self._first_position = first
        pct = 100.0 * done / total
        elapsed = time.monotonic() - self.started
        rate = (done - first) / elapsed if elapsed > 0 else 0.0
        eta = (
            f"{(total - done) / rate:.0f}s" if rate > 0 and done < total else ("0s" if done >= total else "-")
        )
        return pct, eta

    def line(self) -> str:
        """One status line, at most 100 columns."""
        rt = self.runtime
        now = time.monotonic()
        msgs = self.sample("tradefleet_messages_total", stream="depth")
        rate = (msgs - self._last_msgs) / max(now - self._last_t, 1e-6)
        self._last_msgs, self._last_t = msgs, now
        pct, eta = self.progress()
        strat = rt.engine.strategy if rt.engine else None
        market = "warming up"
        if strat is not None and strat.cross.last_open_time is not None:
            s, lng = strat.cross.short.value, strat.cross.long.value
            close = strat.live_close
            day = iso_ms(strat.cross.last_open_time)[:10]
            market = f"{day} {_fmt(close, 0)} sma {_fmt(s, 0)}/{_fmt(lng, 0)}"
        orders = rt.orders
        pos = orders.position.qty if orders is not None else Decimal(0)
        pnl = orders.position.realized_pnl_quote if orders is not None else Decimal(0)
        signals = rt.engine.state.signals if rt.engine else 0
        faults = self.sample("tradefleet_sequence_gaps_total") + sum(self._reconnects())
        head = f"[{now - self.started:4.0f}s {pct:3.0f}% eta {eta:>4}]"
        text = f"{head} {market} pos {pos:.5f} pnl {pnl:.2f} sig {signals} {rate:3.0f} upd/s flt {faults:.0f}"
        return text[:100]

    def _reconnects(self) -> list[float]:
        out = []
        for metric in self.runtime.metrics.registry.collect():
            if metric.name == "tradefleet_reconnects":
                out += [s.value for s in metric.samples if s.name.endswith("_total")]
        return out


def _fmt(v: Decimal | None, places: int = 2) -> str:
    return "-" if v is None else f"{v:.{places}f}"


def human_summary(summary: dict[str, Any]) -> str:
    """The summary for people: P&L at the quote's 8 decimals, and whether it equals the backtest."""

    def money(key: str) -> str:
        v = summary.get(key)
        return "-" if v is None else f"{Decimal(v):.8f}"

    same = summary.get("pnl_equals_backtest")
    verdict = "equals the backtest's to the last digit" if same else "DIFFERS from the backtest's"
    lines = [
        f"summary: {summary['signals']} signals, {summary['orders']} orders, {summary['filled']} filled,"
        f" duplicates {summary['duplicates']}",
        f"  realized P&L {money('realized_pnl_quote')} (quote): {verdict if same is not None else ''}",
        f"  backtest     {money('backtest_realized_pnl_quote')}",
        f"  naive        {money('naive_backtest_realized_pnl_quote')} (closes, no lot rounding)",
        f"  position {summary['position_qty']}; store {summary['store']}; {summary['seconds']} s",
    ]
    if summary.get("error"):
        lines.append(f"  error: {summary['error']}")
    return "\n".join(lines)


async def summarize(
    config: BotConfig,
    store_path: Path,
    sim_orders: dict[str, Any],
    view: LiveView,
    *,
    klines: Path | None = None,
    relabel: str | None = None,
) -> dict[str, Any]:
    from tradefleet.store import open_store

    store = open_store(f"sqlite:///{store_path}", lock="none")  # read after the bot closed it
    await store.open()
    try:
        signals = await store.signals(config.name)
        orders = await store.orders(config.name)
        position = await store.load_position(config.name, config.symbol)
    finally:
        await store.close()
    filled = [o for o in orders if o.filled_qty > 0]
    naive = naive_backtest(signals, quote_amount=config.quote_amount, fee_rate=config.fee_rate)
    pnl = position.realized_pnl_quote if position else Decimal(0)
    exact: dict[str, Any] = {}
    if klines is not None:
        # The same bot code over the same candles on a simulated clock (`tradefleet backtest`).
        from tradefleet.app.backtest_run import BacktestSpec, run_backtest

        logging.disable(logging.INFO)  # its signals and orders are not the demo's
        try:
            bt = await run_backtest(
                BacktestSpec(klines, config.symbol, config.short_window, config.long_window,
                             config.quote_amount, interval=relabel)
            )  # fmt: skip
        finally:
            logging.disable(logging.NOTSET)
        exact = {
            "backtest_realized_pnl_quote": format(bt.position.realized_pnl_quote, "f"),
            "backtest_position_qty": format(bt.position.qty, "f"),
            "backtest_orders": len(bt.orders),
            "pnl_equals_backtest": pnl == bt.position.realized_pnl_quote,
        }
    return {
        "event": "summary",
        "bot": config.name,
        "symbol": config.symbol,
        "signals": len(signals),
        "buy_signals": sum(1 for s in signals if s.side.value == "BUY"),
        "sell_signals": sum(1 for s in signals if s.side.value == "SELL"),
        "orders": len(orders),
        "filled": len(filled),
        "position_qty": format(position.qty if position else Decimal(0), "f"),
        "realized_pnl_quote": format(pnl, "f"),
        **exact,
        "naive_backtest_realized_pnl_quote": format(naive.realized_pnl_quote, "f"),
        "duplicates": int(sim_orders.get("duplicates", 0)),
        "sim_orders": len(sim_orders.get("orders", [])) if sim_orders else None,
        "store": str(store_path),
        "error": view.error,
        "seconds": round(time.monotonic() - view.started, 1),
    }
