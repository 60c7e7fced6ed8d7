"""`tradefleet report` on a real SQLite store filled through the store API with real BTCUSDT candles.

The signals are what the real strategy core decides on those candles (three crossings in 2025), the
orders go through the store's own insert/update path, so the page shows what a bot would have stored.
"""

from __future__ import annotations

import asyncio
import csv
import re
from decimal import Decimal
from pathlib import Path

import pytest

from tradefleet.app import report
from tradefleet.domain.ids import client_order_id
from tradefleet.domain.models import Candle, Order, OrderStatus, OrderUpdate, Position, Side, Signal
from tradefleet.domain.sma_cross import SmaCrossover, signal_id
from tradefleet.store import open_store
from tradefleet.web.report_html import sma_series

DATA = Path(__file__).parent / "data" / "BTCUSDT_1d_2024-09-01_to_2026-01-04.csv"
BOT = "btc-usdt"


def real_candles() -> list[Candle]:
    with DATA.open() as f:
        return [
            Candle("BTC/USDT", "1d", int(r["open_time"]), int(r["close_time"]),
                   *(Decimal(r[k]) for k in ("open", "high", "low", "close", "volume")), True, int(r["trades"]))
            for r in csv.DictReader(f)
        ]  # fmt: skip


async def fill_store(path: Path) -> tuple[list[Candle], list[Signal], list[Order]]:
    candles = real_candles()
    strategy = SmaCrossover(50, 200)
    signals: list[Signal] = []
    for c in candles:
        cross = strategy.on_close(c).cross
        if cross is not None:
            sid = signal_id(BOT, "binance", c.symbol, c.interval, c.open_time, cross.side)
            signals.append(
                Signal(sid, BOT, "binance", c.symbol, "1d", cross.side, c.open_time, c.close_time, c.close,
                       cross.sma_short, cross.sma_long, c.close_time + 5, action="order")
            )  # fmt: skip
    store = open_store(f"sqlite:///{path}")
    await store.open()
    orders: list[Order] = []
    try:
        await store.write_candles(candles)
        for s in signals:
            assert await store.insert_signal(s)
        # The first signal is a SELL while flat: no order. BUY fills, the last SELL is rejected.
        for s, final in ((signals[1], OrderStatus.FILLED), (signals[2], OrderStatus.REJECTED)):
            o = Order(client_order_id(s.signal_id), BOT, "binance", s.symbol, s.side, "MARKET", s.signal_id,
                      OrderStatus.PENDING, s.created_at + 1, s.created_at + 1, quote_amount=Decimal("100"))  # fmt: skip
            assert await store.insert_order(o)
            filled = final is OrderStatus.FILLED
            qty = Decimal("0.00096000") if filled else Decimal(0)
            quote = (qty * s.close).quantize(Decimal("0.00000001"))
            update = OrderUpdate(o.client_order_id, final, s.created_at + 50, "42", qty, quote,
                                 reason=None if filled else "insufficient balance")  # fmt: skip
            stored = await store.apply_order_update(update)
            assert stored is not None
            orders.append(stored)
        await store.save_position(Position(BOT, "BTC/USDT", Decimal("0.00096000"), orders[0].cum_quote))
    finally:
        await store.close()
    return candles, signals, orders


def test_sma_series_equals_the_naive_mean_on_real_closes() -> None:
    closes = [c.close for c in real_candles()]
    series = sma_series(closes, 50)
    assert series[48] is None
    for i in (49, 200, len(closes) - 1):
        assert series[i] == sum(closes[i - 49 : i + 1]) / 50


def test_report_draws_closes_smas_signals_and_orders_from_a_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite"
    candles, signals, orders = asyncio.run(fill_store(db))
    assert [s.side for s in signals] == [Side.SELL, Side.BUY, Side.SELL]
    out = tmp_path / "report.html"
    rc = report.main(["--store", str(db), "--bot", BOT, "--short", "50", "--long", "200", "--out", str(out)])
    assert rc == 0
    page = out.read_text()

    # Self-contained: nothing fetched from anywhere (the SVG namespace is an identifier, not a fetch).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page
    # One point per candle for the close, and per full window for each SMA.
    points = {m[0]: m[1].split() for m in re.findall(r'class="series ([\w-]+)"[^>]* points="([^"]*)"', page)}
    assert len(points["close"]) == len(candles)
    assert len(points["sma-short"]) == len(candles) - 49
    assert len(points["sma-long"]) == len(candles) - 199
    # Signal markers by side, order markers by status.
    assert page.count('class="signal buy"') == 1
    assert page.count('class="signal sell"') == 2
    assert page.count('class="order filled"') == 1
    assert page.count('class="order rejected"') == 1
    # Tables carry the exact stored decimals and ids.
    signals_table = page.split('id="signals"')[1].split("</table>")[0]
    assert signals_table.count("<tr>") == 1 + 3
    assert "2025-05-22" in signals_table and str(signals[1].close) in signals_table
    orders_table = page.split('id="orders"')[1].split("</table>")[0]
    assert orders[0].client_order_id in orders_table and "insufficient balance" in orders_table
    assert str(orders[0].avg_price) in orders_table
    assert "position 0.00096000" in page


def test_report_last_n_draws_n_candles_with_full_smas(tmp_path: Path) -> None:
    db = tmp_path / "bot.sqlite"
    asyncio.run(fill_store(db))
    out = tmp_path / "r.html"
    assert report.main(["--store", f"sqlite:///{db}", "--last", "100", "--out", str(out)]) == 0
    page = out.read_text()
    points = {m[0]: m[1].split() for m in re.findall(r'class="series ([\w-]+)"[^>]* points="([^"]*)"', page)}
    # The windows before the first shown candle were loaded, so both SMAs span the whole chart.
    assert len(points["close"]) == len(points["sma-short"]) == len(points["sma-long"]) == 100
    assert "showing the last 100 of 491 stored candles" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "{tmp}/missing.sqlite"], "no store file"),
        (["--store", "{db}", "--short", "200", "--long", "50"], "short_window"),
        (["--store", "{db}", "--symbol", "btcusdt"], "BASE/QUOTE"),
        (["--store", "sqlite://:memory:"], "in-memory"),
    ],
)
def test_report_refuses_bad_arguments_without_creating_anything(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "bot.sqlite"
    db.write_bytes(b"")
    out = tmp_path / "r.html"
    argv = [a.format(tmp=tmp_path, db=db) for a in args] + ["--out", str(out)]
    assert report.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert not (tmp_path / "missing.sqlite").exists()


def test_report_merges_candles_stored_under_the_exchange_id_and_says_so(tmp_path: Path) -> None:
    candles = real_candles()
    native = [Candle("BTCUSDT", c.interval, c.open_time, c.close_time, c.open, c.high, c.low, c.close,
                     c.volume) for c in candles[250:]]  # fmt: skip

    async def fill() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'bot.sqlite'}")
        await store.open()
        try:
            await store.write_candles(candles[:250])  # warm-up from REST: the unified symbol
            await store.write_candles(native)  # live stream: the exchange id
        finally:
            await store.close()

    asyncio.run(fill())
    out = tmp_path / "r.html"
    assert report.main(["--store", str(tmp_path / "bot.sqlite"), "--out", str(out)]) == 0
    page = out.read_text()
    points = {m[0]: m[1].split() for m in re.findall(r'class="series ([\w-]+)"[^>]* points="([^"]*)"', page)}
    assert len(points["close"]) == len(candles)
    assert f"{len(native)} candles are stored under &#x27;BTCUSDT&#x27; and 250 under" in page
