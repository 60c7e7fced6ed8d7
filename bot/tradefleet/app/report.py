"""`tradefleet report`: read a bot's store and write one static HTML page (chart + tables).

    tradefleet report --store sqlite:///tradefleet.sqlite --bot btc-usdt --out report.html
    tradefleet report --store data/tradefleet.sqlite --config bot.yaml --last 400

Bot name, symbol, interval and SMA windows come from `--config` (the bot's own file) or the flags
(flags win), defaulting to `BotConfig`'s defaults. The SMAs are recomputed from the stored candles.

What it refuses to do: create or change a store (a path or sqlite URL that names no file is an error,
not a fresh empty database), or leave a half-written page (it writes a temporary file and renames).
Exit codes: 0 written, 2 bad arguments or configuration, 1 the store could not be read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from tradefleet.config import BotConfig
from tradefleet.errors import ConfigError, TradefleetError
from tradefleet.store import open_store, redact_url
from tradefleet.store.urls import parse_sqlite_url
from tradefleet.web.report_html import ReportData, render_html


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tradefleet report",
        description="Render price (candle closes), both SMAs, signals and orders from a store to HTML.",
    )
    p.add_argument(
        "--store",
        help="store URL (sqlite:///path, mongodb://…) or a SQLite file path "
        "(default: the config's store_url, else $TRADEFLEET_STORE_URL)",
    )
    p.add_argument("--config", help="the bot's YAML/JSON config: name, symbol, interval, windows")
    p.add_argument("--bot", help="bot name (TradingBot name)")
    p.add_argument("--symbol", help="unified symbol, e.g. BTC/USDT")
    p.add_argument("--interval", help="candle interval, e.g. 1d")
    p.add_argument("--short", type=int, help="short SMA window")
    p.add_argument("--long", type=int, help="long SMA window")
    p.add_argument("--last", type=int, default=0, help="only the last N candles (default: all)")
    p.add_argument("--out", help="output file (default: tradefleet-report-<bot>.html)")
    return p.parse_args(argv)


def resolve(args: argparse.Namespace, env: dict[str, str]) -> tuple[BotConfig, str]:
    """The effective bot settings and store URL; ConfigError says what is wrong."""
    base = BotConfig.load(args.config, {}) if args.config else BotConfig()
    changes: dict[str, object] = {}
    for key, value in (
        ("name", args.bot),
        ("symbol", args.symbol),
        ("interval", args.interval),
        ("short_window", args.short),
        ("long_window", args.long),
    ):
        if value is not None:
            changes[key] = value
    config = base.replace(**changes) if changes else base
    store = args.store or (base.store_url if args.config else env.get("TRADEFLEET_STORE_URL"))
    if not store:
        raise ConfigError("no store given: use --store sqlite:///path.sqlite (or a path), or --config")
    if "://" not in store:
        store = "sqlite:///" + store  # a relative path gives three slashes, an absolute one four
    if store.startswith("sqlite:"):
        path, _ = parse_sqlite_url(store)
        if path == ":memory:":
            raise ConfigError("an in-memory store holds nothing to report")
        if not Path(path).is_file():
            raise ConfigError(f"no store file at {path}")
    if args.last < 0:
        raise ConfigError("--last must be 0 (all) or positive")
    return config, store


async def load(config: BotConfig, store_url: str, last: int = 0) -> ReportData:
    store = open_store(store_url, lock="none")  # a reader, beside a running bot
    await store.open()
    try:
        candles = [c for c in await store.candles(config.symbol, config.interval) if c.closed]
        # Candles from the live stream may carry the exchange's id (BTCUSDT) rather than the unified
        # symbol (BTC/USDT); read both so the chart is whole, and say so on the page.
        native = [c for c in await store.candles(config.market_id, config.interval) if c.closed]
        signals = await store.signals(config.name)
        orders = await store.orders(config.name)
        position = await store.load_position(config.name, config.symbol)
        events = await store.events(config.name, limit=1000)
    finally:
        await store.close()
    notes: list[str] = []
    if native:
        notes.append(
            f"{len(native)} candles are stored under {config.market_id!r} and {len(candles)} under "
            f"{config.symbol!r}; both are shown"
        )
        by_time = {c.open_time: c for c in native}
        by_time.update({c.open_time: c for c in candles})
        candles = list(by_time.values())
    candles.sort(key=lambda c: c.open_time)
    warmup = 0
    if last and len(candles) > last:
        # The SMAs need the window before the first shown candle: keep it for the maths, not the chart.
        notes.append(f"showing the last {last} of {len(candles)} stored candles")
        candles = candles[-(last + config.long_window - 1) :]
        warmup = len(candles) - last
    if not candles:
        notes.append(f"no closed {config.interval} candles stored for {config.symbol}")
    elif len(candles) < config.long_window:
        notes.append(f"{len(candles)} candles: fewer than the long window ({config.long_window})")
    return ReportData(
        bot=config.name,
        symbol=config.symbol,
        interval=config.interval,
        short_window=config.short_window,
        long_window=config.long_window,
        candles=candles,
        warmup=warmup,
        signals=sorted((s for s in signals if s.symbol == config.symbol), key=lambda s: s.candle_open_time),
        orders=sorted((o for o in orders if o.symbol == config.symbol), key=lambda o: o.created_at),
        position=position,
        events=events,
        generated_at=time.time_ns() // 1_000_000,
        notes=notes,
    )


async def _only_bot(config: BotConfig, store_url: str) -> BotConfig:
    """Without --bot: the store's only bot, or a clear error naming the bots present (a store with no
    bot's records yet keeps the default name: its candles are still worth a page)."""
    store = open_store(store_url, lock="none")  # a reader, beside a running bot
    await store.open()
    try:
        names = await store.bots()
    finally:
        await store.close()
    if len(names) == 1:
        return config.replace(name=names[0])
    if not names:
        return config  # candles only (a bot still warming up): the page shows them and says so
    raise ConfigError(
        f"{redact_url(store_url)} holds several bots; choose one with --bot: {', '.join(names)}"
    )


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config, store_url = resolve(args, dict(os.environ))
    except ConfigError as e:
        print(f"tradefleet report: {e}", file=sys.stderr)
        return 2
    try:
        if args.bot is None and not args.config:
            config = asyncio.run(_only_bot(config, store_url))
        data = asyncio.run(load(config, store_url, args.last))
    except ConfigError as e:
        print(f"tradefleet report: {e}", file=sys.stderr)
        return 2
    except TradefleetError as e:
        print(f"tradefleet report: cannot read {redact_url(store_url)}: {e}", file=sys.stderr)
        return 1
    out = Path(args.out or f"tradefleet-report-{config.name}.html")
    try:
        write_atomically(out, render_html(data))
    except OSError as e:
        print(f"tradefleet report: cannot write {out}: {e.strerror}", file=sys.stderr)
        return 1
    shown = len(data.candles) - data.warmup
    print(
        f"{out}: {shown} candles, {len(data.signals)} signals, {len(data.orders)} orders, "
        f"{len(data.events)} events"
    )
    return 0
