"""A bot's history as one static, self-contained HTML page: an inline SVG chart and two tables.

Why it exists: a trader asks "what did the bot see and do?" without running Grafana. The page shows
candle closes, both SMAs recomputed from those candles, the stored BUY/SELL signals and the orders,
then every signal and order with its exact decimal values.

What it refuses to do: I/O (the caller loads the data; this is a pure function of it), scripts,
fonts, styles or images from elsewhere (the file must open offline, attached to an e-mail), and
floats for anything a person reads. Floats are used only for pixel coordinates.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from tradefleet.domain.models import BotEvent, Candle, Order, OrderStatus, Position, Side, Signal
from tradefleet.domain.sma_cross import RollingMean

WIDTH, HEIGHT = 1200, 480
LEFT, RIGHT, TOP, BOTTOM = 84, 24, 36, 44
COLORS = {"close": "#475569", "short": "#ea580c", "long": "#7c3aed", "BUY": "#16a34a", "SELL": "#dc2626"}


@dataclass(frozen=True)
class ReportData:
    bot: str
    symbol: str
    interval: str
    short_window: int
    long_window: int
    candles: Sequence[Candle]
    warmup: int = 0  # leading candles used only to compute the SMAs, not drawn or counted
    signals: Sequence[Signal] = ()
    orders: Sequence[Order] = ()
    position: Position | None = None
    events: Sequence[BotEvent] = ()  # position mismatch episodes, halts and resumes, oldest first
    generated_at: int = 0  # ms
    notes: list[str] = field(default_factory=list)


def sma_series(closes: Iterable[Decimal], window: int) -> list[Decimal | None]:
    """The SMA after each close (None until the window is full), exact Decimal arithmetic."""
    mean = RollingMean(window)
    return [mean.push(c) for c in closes]


def fmt_time(ms: int, interval: str = "1d") -> str:
    t = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    if interval.endswith(("d", "w")):
        return t.strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%d %H:%M:%S" if interval.endswith("s") else "%Y-%m-%d %H:%M")


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^n steps) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


class _Scale:
    def __init__(self, t0: int, t1: int, lo: float, hi: float) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1)
        pad = (hi - lo) * 0.04 or abs(hi) * 0.01 or 1.0
        self.lo, self.hi = lo - pad, hi + pad

    def x(self, t: int) -> float:
        return LEFT + (t - self.t0) / (self.t1 - self.t0) * (WIDTH - LEFT - RIGHT)

    def y(self, price: float) -> float:
        return TOP + (self.hi - price) / (self.hi - self.lo) * (HEIGHT - TOP - BOTTOM)


def _polyline(points: list[tuple[float, float]], color: str, name: str, width: float = 1.5) -> str:
    if not points:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return (
        f'<polyline class="series {name}" fill="none" stroke="{color}" stroke-width="{width}" '
        f'stroke-linejoin="round" points="{coords}"/>'
    )


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _order_price(order: Order, closes_by_signal: dict[str, Decimal]) -> Decimal | None:
    return order.avg_price if order.avg_price is not None else closes_by_signal.get(order.signal_id)


def render_svg(data: ReportData) -> str:
    closes = [c.close for c in data.candles]
    short = sma_series(closes, data.short_window)[data.warmup :]
    long_ = sma_series(closes, data.long_window)[data.warmup :]
    candles = list(data.candles)[data.warmup :]
    if not candles:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="80" role="img">'
            '<text x="20" y="45" font-size="16">No candles stored for this symbol and interval.</text></svg>'
        )
    t0, t1 = candles[0].open_time, candles[-1].open_time
    closes_by_signal = {s.signal_id: s.close for s in data.signals}
    # An order is drawn on its signal's candle: in a replay (or the simulator) the order's own clock
    # is today while the candles are history, and the link to the signal is what a reader wants.
    signal_time = {s.signal_id: s.candle_open_time for s in data.signals}
    orders = [
        (o, p, at)
        for o in data.orders
        if (p := _order_price(o, closes_by_signal)) is not None
        and t0 <= (at := signal_time.get(o.signal_id, o.created_at)) <= t1
    ]
    values = [float(c.close) for c in candles] + [float(v) for v in short + long_ if v is not None]
    values += [float(p) for _, p, _ in orders]
    sc = _Scale(t0, t1, min(values), max(values))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" font-family="system-ui, sans-serif" font-size="12">',
        f"<title>{_esc(data.symbol)} {_esc(data.interval)}: close, SMA {data.short_window}, "
        f"SMA {data.long_window}, signals and orders</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
        'fill="#ffffff" stroke="#cbd5e1"/>',
    ]
    for tick in nice_ticks(sc.lo, sc.hi):
        y = sc.y(tick)
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#334155">{tick:,.10g}</text>'
        )
    step = max(1, len(candles) // 8)
    for c in candles[::step]:
        x = sc.x(c.open_time)
        anchor = "end" if x > WIDTH - RIGHT - 40 else "middle"  # the last label must not run off the edge
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#f1f5f9"/>'
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="{anchor}" fill="#334155">'
            f"{fmt_time(c.open_time, data.interval)}</text>"
        )
    pts = [(sc.x(c.open_time), sc.y(float(c.close))) for c in candles]
    out.append(_polyline(pts, COLORS["close"], "close", 1.2))
    for series, name in ((short, "short"), (long_, "long")):
        pts = [
            (sc.x(c.open_time), sc.y(float(v))) for c, v in zip(candles, series, strict=True) if v is not None
        ]
        out.append(_polyline(pts, COLORS[name], f"sma-{name}", 2.0))
    for s in data.signals:
        if not t0 <= s.candle_open_time <= t1:
            continue
        x, y = sc.x(s.candle_open_time), sc.y(float(s.close))
        # Triangles point the way of the trade: up under the line for BUY, down above it for SELL.
        d = (
            f"M{x:.1f},{y + 4:.1f} l-7,12 h14 z"
            if s.side is Side.BUY
            else f"M{x:.1f},{y - 4:.1f} l-7,-12 h14 z"
        )
        out.append(
            f'<path class="signal {s.side.value.lower()}" d="{d}" fill="{COLORS[s.side.value]}">'
            f"<title>{s.side.value} signal {fmt_time(s.candle_open_time, data.interval)} close {s.close} "
            f"SMA{data.short_window} {s.sma_short} SMA{data.long_window} {s.sma_long} — {_esc(s.action)}"
            "</title></path>"
        )
    for o, price, at in orders:
        x, y = sc.x(at), sc.y(float(price))
        filled = o.status is OrderStatus.FILLED
        color = COLORS[o.side.value]
        out.append(
            f'<circle class="order {o.status.value.lower()}" cx="{x:.1f}" cy="{y:.1f}" r="5" '
            f'fill="{color if filled else "#ffffff"}" stroke="{color}" stroke-width="2">'
            f"<title>{o.side.value} order {_esc(o.client_order_id)} {o.status.value} "
            f"filled {o.filled_qty} @ {o.avg_price if o.avg_price is not None else '-'}</title></circle>"
        )
    legend = [
        ("close", COLORS["close"]),
        (f"SMA {data.short_window}", COLORS["short"]),
        (f"SMA {data.long_window}", COLORS["long"]),
        ("▲ BUY signal", COLORS["BUY"]),
        ("▼ SELL signal", COLORS["SELL"]),
        ("● order (hollow: not filled)", "#0f172a"),
    ]
    x = LEFT
    for label, color in legend:
        out.append(f'<text x="{x}" y="{TOP - 12}" fill="{color}" font-weight="600">{_esc(label)}</text>')
        x += 16 + 7 * len(label)
    out.append("</svg>")
    return "\n".join(o for o in out if o)


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#0f172a;background:#f8fafc}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#475569;margin-bottom:16px} .note{color:#b45309}
table{border-collapse:collapse;background:#fff;font-size:13px}
th,td{border:1px solid #e2e8f0;padding:4px 8px;text-align:left;white-space:nowrap}
th{background:#f1f5f9} td.num{text-align:right;font-variant-numeric:tabular-nums}
.BUY{color:#16a34a;font-weight:600} .SELL{color:#dc2626;font-weight:600}
.position_mismatch,.halt{color:#dc2626;font-weight:600} .position_match,.resume{color:#16a34a}
svg{background:#fff;border:1px solid #e2e8f0;max-width:100%;height:auto}
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[tuple[object, str]]], css_id: str) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="{cls}">{_esc(v)}</td>' for v, cls in row) + "</tr>" for row in rows
    )
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def risk_notes(signals: Iterable[Signal]) -> list[str]:
    """One line per risk reason that refused signals (`risk: halted (...)`, `risk: fleet_cap (...)`):
    how many, and the first and last refused candle, so a halt is visible at the top of the report."""
    seen: dict[str, list[Signal]] = {}
    for s in signals:
        if s.action.startswith("risk: "):
            key = s.action.split(" (", 1)[0] if not s.action.startswith("risk: halted") else s.action
            seen.setdefault(key, []).append(s)
    return [
        f"{len(group)} signal(s) refused — {reason}; candles {fmt_time(group[0].candle_open_time, '1s')} – "
        f"{fmt_time(group[-1].candle_open_time, '1s')} UTC"
        for reason, group in seen.items()
    ]


def render_html(data: ReportData) -> str:
    candles = list(data.candles)[data.warmup :]
    span = (
        f"{len(candles)} candles {fmt_time(candles[0].open_time, data.interval)} – "
        f"{fmt_time(candles[-1].open_time, data.interval)}"
        if candles
        else "no candles"
    )
    pos = data.position
    position = (
        f"position {pos.qty} ({pos.cost_quote} quote), realized PnL {pos.realized_pnl_quote}"
        if pos is not None
        else "no stored position"
    )
    signals = _table(
        [
            "candle (UTC)",
            "side",
            "close",
            f"SMA {data.short_window}",
            f"SMA {data.long_window}",
            "action",
            "id",
        ],
        (
            [
                (fmt_time(s.candle_open_time, data.interval), ""),
                (s.side.value, s.side.value),
                (s.close, "num"),
                (s.sma_short, "num"),
                (s.sma_long, "num"),
                (s.action, ""),
                (s.signal_id, ""),
            ]
            for s in data.signals
        ),
        "signals",
    )
    orders = _table(
        [
            "created (UTC)",
            "side",
            "status",
            "filled qty",
            "avg price",
            "quote",
            "fee",
            "client order id",
            "reason",
        ],
        (
            [
                (fmt_time(o.created_at, "1s"), ""),
                (o.side.value, o.side.value),
                (o.status.value, ""),
                (o.filled_qty, "num"),
                (o.avg_price if o.avg_price is not None else "", "num"),
                (o.cum_quote, "num"),
                (f"{o.fee} {o.fee_asset or ''}".strip(), "num"),
                (o.client_order_id, ""),
                (o.reason or "", ""),
            ]
            for o in data.orders
        ),
        "orders",
    )
    events = _table(
        ["when (UTC)", "event", "what", "details"],
        (
            [
                (fmt_time(e.at_ms, "1s"), ""),
                (e.kind.value, e.kind.value),
                (e.summary, ""),
                ("; ".join(f"{k}={v}" for k, v in sorted(e.fields.items())), ""),
            ]
            for e in data.events
        ),
        "events",
    )
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in [*data.notes, *risk_notes(data.signals)])
    title = f"tradefleet report — {data.bot} {data.symbol} {data.interval}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{_CSS}</style></head><body>\n"
        f"<h1>{_esc(title)}</h1>\n"
        f'<div class="meta">{_esc(span)} · SMA {data.short_window}/{data.long_window} · '
        f"{len(data.signals)} signals · {len(data.orders)} orders · {_esc(position)} · generated "
        f"{fmt_time(data.generated_at, '1s')} UTC</div>\n{notes}"
        f"{render_svg(data)}\n"
        f"<h2>Signals</h2>\n{signals}\n<h2>Orders</h2>\n{orders}\n"
        f"<h2>Events</h2>\n{events if data.events else '<p>no notable events stored</p>'}\n</body></html>\n"
    )
