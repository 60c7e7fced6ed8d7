"""`tradefleet backtest`: the live engine over a candle history, as fast as the CPU allows.

One pair (`--short 50 --long 200`): runs the real strategy, order manager, position and store code
on a simulated clock against an in-process copy of the simulator's exchange (see `backtest_run`),
and leaves three files: the SQLite store the bot would have written (`tradefleet report` and SQL
work on it), a JSON file with the statistics, every round trip and the equity curve, and a
self-contained HTML report. One summary JSON line goes to stdout.

A range (`--short 10:100:5 --long 50:300:10`) runs every pair with short < long on all cores, draws
a heatmap of `--metric`, and reports the best pair in full; `--walk-forward 0.7` also runs the grid
in-sample (first 70 % of the candles) and out-of-sample (the rest) to show overfitting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tradefleet.app.backtest_run import BacktestResult, BacktestSpec, backtest, quiet_logs, result_json
from tradefleet.app.demo import DEFAULT_KLINES, _unified, csv_identity
from tradefleet.app.sweep import METRICS, best, heat_values, pairs, parse_range, run_grid, walk_forward
from tradefleet.errors import ConfigError

# --help's description, not `__doc__`: the bot image runs with PYTHONOPTIMIZE=2 (no docstrings).
SUMMARY = "`tradefleet backtest`: the live engine over a candle history, as fast as the CPU allows."


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tradefleet backtest", description=SUMMARY)
    p.add_argument("--klines", help="candle CSV (same shape as the demo's); default: BTCUSDT daily 2017-2026")
    p.add_argument("--symbol", help="unified symbol, e.g. BTC/USDT (default: the CSV's symbol)")
    p.add_argument("--interval", help="relabel the CSV's candles with this interval (default: the CSV's)")
    p.add_argument("--short", default="50", help="short SMA window: N or START:STOP:STEP (default 50)")
    p.add_argument("--long", default="200", help="long SMA window: N or START:STOP:STEP (default 200)")
    p.add_argument("--quote-amount", default="1000", help="quote per BUY, also the capital (default 1000)")
    p.add_argument("--out", default="tradefleet-backtest",
                   help="writes PREFIX.sqlite, .json and .html (default tradefleet-backtest)")  # fmt: skip
    p.add_argument("--log-scale", action="store_true", help="open the HTML report on a log price scale")
    p.add_argument("--metric", choices=METRICS, default="sharpe", help="a sweep ranks by (default sharpe)")
    p.add_argument("--walk-forward", type=float, metavar="FRACTION",
                   help="with a sweep: in-sample share of the candles, e.g. 0.7")  # fmt: skip
    p.add_argument("--workers", type=int, default=0, help="processes for a sweep (default: every core)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except (ConfigError, ValueError) as e:
        print(f"tradefleet backtest: {e}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, out: Any = sys.stdout) -> int:
    import tradefleet_sim

    quiet_logs()
    bundled = Path(tradefleet_sim.__file__).parent / "data" / DEFAULT_KLINES
    klines = Path(args.klines) if args.klines else bundled
    if not klines.is_file():
        raise ConfigError(f"--klines {klines}: no such file")
    market_id, _, _ = csv_identity(klines)
    symbol = args.symbol or _unified(market_id)
    if symbol.replace("/", "").upper() != market_id:
        raise ConfigError(f"--symbol {symbol} does not match the CSV's symbol {market_id}")
    try:
        quote = Decimal(args.quote_amount)
    except InvalidOperation:
        raise ConfigError(f"--quote-amount {args.quote_amount!r} is not a number") from None
    shorts, longs = parse_range(args.short, "short"), parse_range(args.long, "long")
    grid = pairs(shorts, longs)
    if not grid:
        raise ConfigError("no (short, long) pair with short < long in the given ranges")
    base = BacktestSpec(klines, symbol, grid[0][0], grid[0][1], quote, interval=args.interval)
    started = time.perf_counter()
    sweep: dict[str, Any] | None = None
    heat = None
    wf: dict[str, Any] | None = None
    if len(grid) > 1:
        from tradefleet.web.backtest_html import Heatmap

        results = run_grid(base, grid, workers=args.workers or None)
        top = best(results, args.metric)
        base = BacktestSpec(klines, symbol, top.short, top.long, quote, interval=args.interval)
        heat = Heatmap(args.metric, shorts, longs, heat_values(results, shorts, longs, args.metric))
        sweep = {
            "pairs": len(results),
            "metric": args.metric,
            "best": [top.short, top.long],
            "seconds": round(time.perf_counter() - started, 3),
            "results": [{"short": r.short, "long": r.long, **r.summary} for r in results],
        }
        if args.walk_forward is not None:
            if not 0 < args.walk_forward < 1:
                raise ConfigError("--walk-forward takes a fraction between 0 and 1, e.g. 0.7")
            split = int(_candle_count(klines) * args.walk_forward)
            wf = walk_forward(base, grid, split=split, metric=args.metric, workers=args.workers or None)
    elif args.walk_forward is not None:
        raise ConfigError("--walk-forward needs a sweep (a range for --short or --long)")
    store_path = Path(f"{args.out}.sqlite").resolve()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(store_path) + suffix).unlink()
    one_started = time.perf_counter()
    result = backtest(base, store_url=f"sqlite:///{store_path}")
    seconds = time.perf_counter() - one_started
    doc = result_json(result) | {"store": str(store_path), "seconds": round(seconds, 3)}
    if sweep is not None:
        doc["sweep"] = sweep
    if wf is not None:
        doc["walk_forward"] = wf
    Path(f"{args.out}.json").write_text(json.dumps(doc, indent=1) + "\n")
    Path(f"{args.out}.html").write_text(_html(result, doc, heat, wf, log_scale=args.log_scale))
    line = {k: v for k, v in doc.items() if k not in ("trades", "equity_curve", "sweep")}
    if sweep is not None:
        line["sweep"] = {k: v for k, v in sweep.items() if k != "results"}
    line["json"], line["html"] = f"{args.out}.json", f"{args.out}.html"
    print(json.dumps(line, separators=(",", ":")), file=out, flush=True)
    return 0


def _candle_count(klines: Path) -> int:
    from tradefleet_sim.klines import load_csv

    return len(load_csv(klines).candles)


def _html(
    result: BacktestResult, doc: dict[str, Any], heat: Any, wf: dict[str, Any] | None, *, log_scale: bool
) -> str:
    from tradefleet.web.backtest_html import BacktestPage, render_backtest_html

    skip = ("trades", "equity_curve", "sweep", "walk_forward", "event")
    summary = {k: v for k, v in doc.items() if k not in skip}
    for key in ("realized_pnl_quote", "fees_quote"):  # exact in the JSON; 8 decimals for people
        summary[key] = f"{Decimal(str(summary[key])):.8f}"
    c = result.config
    page = BacktestPage(
        title=f"tradefleet backtest — {c.symbol} {c.interval} SMA {c.short_window}/{c.long_window}",
        symbol=c.symbol,
        interval=c.interval,
        short_window=c.short_window,
        long_window=c.long_window,
        candles=result.candles,
        history=result.history,
        signals=[(s.candle_close_time, s.side, s.action) for s in result.signals],
        performance=result.performance,
        summary=summary,
        log_scale=log_scale,
        heatmap=heat,
        walk_forward=[{k: json.dumps(v) if isinstance(v, list) else v for k, v in wf.items()}] if wf else [],
    )
    return render_backtest_html(page)


if __name__ == "__main__":
    sys.exit(main())
