"""A backtest as one self-contained HTML page: price and SMAs with the trades, the equity curve and
the drawdown under it on the same time axis, the statistics, every round trip, and for a parameter
sweep a heatmap of the chosen metric (and the walk-forward table when there is one).

Why a page and not a notebook: it opens offline, attached to an e-mail, and a test can screenshot it.
The log price scale is a checkbox (pure CSS: both scales are drawn, one is shown), so the page needs
no script at all.

What it refuses: I/O (the caller writes the file), anything fetched from elsewhere, and floats in
what a person reads as money (those come in as strings); floats are pixel coordinates and ratios.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from tradefleet.domain.models import Candle, Side
from tradefleet.domain.performance import Performance
from tradefleet.web.report_html import fmt_time, nice_ticks, sma_series

WIDTH = 1200
LEFT, RIGHT = 84, 24
PRICE_H, EQUITY_H, DD_H = 380, 220, 140
COLORS = {
    "close": "#475569",
    "short": "#ea580c",
    "long": "#7c3aed",
    "equity": "#2563eb",
    "hold": "#94a3b8",
    "drawdown": "#dc2626",
    "BUY": "#16a34a",
    "SELL": "#dc2626",
}


@dataclass(frozen=True)
class Heatmap:
    """A sweep: `values[i][j]` is the metric for short `shorts[i]` and long `longs[j]` (None: invalid
    pair, short >= long)."""

    metric: str
    shorts: list[int]
    longs: list[int]
    values: list[list[float | None]]


@dataclass(frozen=True)
class BacktestPage:
    title: str
    symbol: str
    interval: str
    short_window: int
    long_window: int
    candles: Sequence[Candle]  # history included; the first `history` are warm-up only
    history: int
    signals: Sequence[tuple[int, Side, str]]  # (candle close time, side, action)
    performance: Performance
    summary: dict[str, object]
    log_scale: bool = False
    heatmap: Heatmap | None = None
    walk_forward: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


class _Panel:
    def __init__(self, t0: int, t1: int, lo: float, hi: float, height: int, *, log: bool = False) -> None:
        self.t0, self.t1, self.height, self.log = t0, max(t1, t0 + 1), height, log
        f = math.log10 if log else (lambda v: v)
        lo_v, hi_v = f(max(lo, 1e-12) if log else lo), f(max(hi, 1e-12) if log else hi)
        pad = (hi_v - lo_v) * 0.04 or abs(hi_v) * 0.01 or 1.0
        self.lo, self.hi, self.f = lo_v - pad, hi_v + pad, f

    def x(self, t: int) -> float:
        return LEFT + (t - self.t0) / (self.t1 - self.t0) * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        fv = self.f(max(v, 1e-12)) if self.log else v
        return 12 + (self.hi - fv) / (self.hi - self.lo) * (self.height - 36)

    def ticks(self) -> list[float]:
        if not self.log:
            return nice_ticks(self.lo, self.hi)
        out = []
        for e in range(math.floor(self.lo), math.ceil(self.hi) + 1):
            for m in (1, 2, 5):
                v = m * 10.0**e
                if self.lo <= math.log10(v) <= self.hi:
                    out.append(v)
        return out


def _line(points: list[tuple[float, float]], color: str, cls: str, width: float = 1.5, dash: str = "") -> str:
    if not points:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<polyline class="{cls}" fill="none" stroke="{color}" stroke-width="{width}"{extra} '
        f'stroke-linejoin="round" points="{coords}"/>'
    )


def _axes(p: _Panel, fmt: str, label: str, interval: str) -> str:
    parts = [f'<text class="label" x="{LEFT}" y="10">{_esc(label)}</text>']
    for v in p.ticks():
        y = p.y(v)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        label = fmt.format(v)
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    ticks = _time_ticks(p.t0, p.t1, interval)
    for k, (t, text) in enumerate(ticks):
        x = p.x(t)
        anchor = "start" if k == 0 else "end" if k == len(ticks) - 1 else "middle"
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="12" y2="{p.height - 24}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{p.height - 8}" text-anchor="{anchor}">{text}</text>'
        )
    return "".join(parts)


def _time_ticks(t0: int, t1: int, interval: str, count: int = 8) -> list[tuple[int, str]]:
    step = max(1, (t1 - t0) // count)
    return [(t0 + k * step, fmt_time(t0 + k * step, interval)) for k in range(count + 1)]


def _price_svg(page: BacktestPage, *, log: bool) -> str:
    candles = list(page.candles)
    closes = [c.close for c in candles]
    short = sma_series(closes, page.short_window)[page.history :]
    long = sma_series(closes, page.long_window)[page.history :]
    live = candles[page.history :]
    t = [c.close_time for c in live]
    values = [float(c.close) for c in live]
    p = _Panel(t[0], t[-1], min(values), max(values), PRICE_H, log=log)
    parts = [_axes(p, "{:,.0f}", f"{page.symbol} close ({'log' if log else 'linear'} scale)", page.interval)]
    parts.append(_line([(p.x(a), p.y(v)) for a, v in zip(t, values, strict=True)], COLORS["close"], "close"))
    for series, name in ((short, "short"), (long, "long")):
        pts = [(p.x(a), p.y(float(v))) for a, v in zip(t, series, strict=True) if v is not None]
        parts.append(_line(pts, COLORS[name], f"sma {name}", 1.2))
    for when, side, action in page.signals:
        if when < t[0]:
            continue
        i = _index(t, when)
        x, y = p.x(t[i]), p.y(values[i])
        d = 9 if side is Side.BUY else -9
        fill = COLORS[side.value] if action == "order" else "none"
        parts.append(
            f'<path class="signal {side.value}" d="M{x:.1f},{y:.1f} l-5,{d} l10,0 z" fill="{fill}" '
            f'stroke="{COLORS[side.value]}"><title>{fmt_time(when, page.interval)} {side.value} '
            f"{_esc(action)}</title></path>"
        )
    cls = "price log" if log else "price linear"
    return _svg(f'class="{cls}"', WIDTH, PRICE_H, parts)


def _svg(attrs: str, width: int, height: int, parts: list[str]) -> str:
    body = "".join(parts)
    return f'<svg {attrs} viewBox="0 0 {width} {height}" width="{width}" height="{height}">{body}</svg>'


def _index(times: list[int], when: int) -> int:
    import bisect

    return min(bisect.bisect_left(times, when), len(times) - 1)


def _equity_svg(page: BacktestPage) -> str:
    perf = page.performance
    live = list(page.candles)[page.history :]
    t = [c.close_time for c in live]
    cap = float(perf.capital)
    first = float(live[0].close)
    hold = [cap * float(c.close) / first for c in live]
    lo, hi = min(*perf.equity, *hold), max(*perf.equity, *hold)
    p = _Panel(t[0], t[-1], lo, hi, EQUITY_H)
    parts = [_axes(p, "{:,.0f}", "equity (quote), strategy vs buy-and-hold", page.interval)]
    hold_pts = [(p.x(a), p.y(v)) for a, v in zip(t, hold, strict=True)]
    equity_pts = [(p.x(a), p.y(v)) for a, v in zip(t, perf.equity, strict=True)]
    parts.append(_line(hold_pts, COLORS["hold"], "hold", 1.2, "4 3"))
    parts.append(_line(equity_pts, COLORS["equity"], "equity", 2.5))
    return _svg('id="equity"', WIDTH, EQUITY_H, parts)


def _drawdown_svg(page: BacktestPage) -> str:
    perf = page.performance
    live = list(page.candles)[page.history :]
    t = [c.close_time for c in live]
    dd = [100 * d for d in perf.drawdown]
    p = _Panel(t[0], t[-1], min(dd, default=0.0), 0.0, DD_H)
    pts = [(p.x(a), p.y(v)) for a, v in zip(t, dd, strict=True)]
    area = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    base = p.y(0.0)
    poly = (
        f'<polygon class="drawdown" fill="{COLORS["drawdown"]}" fill-opacity="0.25" '
        f'stroke="{COLORS["drawdown"]}" '
        f'points="{pts[0][0]:.1f},{base:.1f} {area} {pts[-1][0]:.1f},{base:.1f}"/>'
    )
    axes = _axes(p, "{:.0f}%", "drawdown from the running peak", page.interval)
    return _svg('id="drawdown"', WIDTH, DD_H, [axes, poly])


def _color(v: float, lo: float, hi: float) -> str:
    """Red (worst) through white to green (best)."""
    if hi <= lo:
        return "#e2e8f0"
    x = (v - lo) / (hi - lo)
    if x < 0.5:
        k = x / 0.5
        r, g, b = 220, int(38 + (255 - 38) * k), int(38 + (255 - 38) * k)
    else:
        k = (x - 0.5) / 0.5
        r, g, b = int(255 - (255 - 22) * k), int(255 - (255 - 163) * k), int(255 - (255 - 74) * k)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap_svg(h: Heatmap, chosen: tuple[int, int] | None = None) -> str:
    cell_w = max(8, min(36, (WIDTH - 120) // max(1, len(h.longs))))
    cell_h = max(8, min(28, 560 // max(1, len(h.shorts))))
    left, top = 70, 30
    w = left + cell_w * len(h.longs) + 20
    hgt = top + cell_h * len(h.shorts) + 40
    flat = [v for row in h.values for v in row if v is not None and math.isfinite(v)]
    lo, hi = (min(flat), max(flat)) if flat else (0.0, 0.0)
    title = f"{_esc(h.metric)} by short (rows) × long (columns)"
    parts = [f'<text class="label" x="{left}" y="16">{title}</text>']
    for i, s in enumerate(h.shorts):
        y = top + i * cell_h
        if cell_h >= 10 or i % 2 == 0:
            ty = y + cell_h * 0.7
            parts.append(f'<text class="tick" x="{left - 6}" y="{ty:.1f}" text-anchor="end">{s}</text>')
        for j, lg in enumerate(h.longs):
            v = h.values[i][j]
            x = left + j * cell_w
            fill = "#f1f5f9" if v is None or not math.isfinite(v) else _color(v, lo, hi)
            mark = ' stroke="#0f172a" stroke-width="2"' if chosen == (s, lg) else ""
            tip = f"short {s} long {lg}: {'—' if v is None else f'{v:.4g}'}"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{fill}"{mark}>'
                f"<title>{tip}</title></rect>"
            )
    for j, lg in enumerate(h.longs):
        if j % max(1, len(h.longs) // 16) == 0:
            cx = left + j * cell_w + cell_w / 2
            parts.append(f'<text class="tick" x="{cx:.1f}" y="{hgt - 22}" text-anchor="middle">{lg}</text>')
    parts.append(f'<text class="tick" x="{left}" y="{hgt - 6}">range {lo:.4g} … {hi:.4g}</text>')
    return f'<svg id="heatmap" viewBox="0 0 {w} {hgt}" width="{w}" height="{hgt}">{"".join(parts)}</svg>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], css_id: str) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_backtest_html(page: BacktestPage) -> str:
    perf = page.performance
    rows: list[Sequence[object]] = [[k, "—" if v is None else v] for k, v in page.summary.items()]
    stats = _table(["statistic", "value"], rows, "stats")
    trips = _table(
        ["entry (UTC)", "entry price", "exit (UTC)", "exit price", "qty", "P&L (quote)", "return %"],
        [
            [
                fmt_time(t.entry_time, page.interval),
                t.entry_price,
                "open" if t.exit_time is None else fmt_time(t.exit_time, page.interval),
                "" if t.exit_price is None else t.exit_price,
                t.qty,
                t.pnl_quote.quantize(Decimal("0.01")),
                f"{100 * t.return_pct:.2f}",
            ]
            for t in perf.round_trips
        ],
        "trades",
    )
    checked = " checked" if page.log_scale else ""
    heat = ""
    if page.heatmap is not None:
        chosen = (page.short_window, page.long_window)
        heat = f"<h2>Parameter sweep</h2>\n{heatmap_svg(page.heatmap, chosen)}\n"
    wf = ""
    if page.walk_forward:
        keys = list(page.walk_forward[0])
        wf = "<h2>Walk-forward (in-sample best, out-of-sample result)</h2>\n" + _table(
            keys, [[r[k] for k in keys] for r in page.walk_forward], "walk-forward"
        )
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in page.notes)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_esc(page.title)}</title>'
        f"<style>{_CSS}</style></head><body>\n<h1>{_esc(page.title)}</h1>\n{notes}"
        f'<input type="checkbox" id="log"{checked}><label for="log">log price scale</label>\n'
        f'<div class="charts">{_price_svg(page, log=False)}{_price_svg(page, log=True)}'
        f"{_equity_svg(page)}{_drawdown_svg(page)}</div>\n"
        f"<h2>Statistics</h2>\n{stats}\n{heat}{wf}<h2>Round trips</h2>\n{trips}\n</body></html>\n"
    )


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#0f172a;background:#fff}
h1{font-size:18px}h2{font-size:16px;margin-top:20px}
svg{display:block;background:#fff}
.grid{stroke:#e2e8f0;stroke-width:1}.tick{font-size:11px;fill:#64748b}.label{font-size:12px;fill:#334155}
#log:checked~.charts .linear{display:none}#log:not(:checked)~.charts .log{display:none}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #e2e8f0;padding:2px 8px;text-align:right}
th{background:#f8fafc}.note{color:#b45309}
"""
