"""The backtest's HTML report rendered by a real browser (headless Chromium): the screenshot must
show the equity curve — its colour in the equity panel, tracing the curve the run computed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.strategy.test_oracle_real_btcusdt import CSV
from tradefleet.app.backtest import _html
from tradefleet.app.backtest_run import BacktestSpec, backtest, result_json
from tradefleet.web import backtest_html as page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="LOUD SKIP: chromium is not installed (`.ci/run` installs it: apt-get install chromium)",
)
MARGIN = 16  # the page's body margin
EQUITY_RGB = tuple(int(page.COLORS["equity"][i : i + 2], 16) for i in (1, 3, 5))


def screenshot(html: Path, png: Path, tmp_path: Path, height: int = 1400) -> Image.Image:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}", "--force-device-scale-factor=1",
        f"--window-size=1280,{height}", f"--screenshot={png}", html.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert png.exists(), proc.stderr[-2000:]
    return Image.open(png).convert("RGB")


def near(a: tuple[int, ...], b: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_headless_chromium_screenshot_shows_the_equity_curve_where_the_run_puts_it(tmp_path: Path) -> None:
    result = backtest(BacktestSpec(CSV, "BTC/USDT"))
    html = tmp_path / "report.html"
    html.write_text(_html(result, result_json(result), None, None, log_scale=False))
    img = screenshot(html, tmp_path / "shot.png", tmp_path)
    # The page: title, checkbox, then the price panel (PRICE_H px), then the equity panel; the body
    # has a 16 px margin. Find the equity panel by its colour, then check it follows the run's curve: its pixels must
    # span the panel from left to right, higher at the end (equity grew 5x) than at the start.
    hits = [
        (x, y)
        for y in range(img.height)
        for x in range(MARGIN + page.LEFT, MARGIN + page.WIDTH - page.RIGHT, 4)
        if near(img.getpixel((x, y)), EQUITY_RGB)
    ]
    assert len(hits) > 200, f"equity-coloured pixels: {len(hits)}"
    xs = [x for x, _ in hits]
    ys = [y for _, y in hits]
    left, right = MARGIN + page.LEFT, MARGIN + page.WIDTH - page.RIGHT
    assert min(xs) <= left + 12 and max(xs) >= right - 16  # the whole time axis
    assert min(ys) > page.PRICE_H, "the equity line must sit below the price chart"
    first = [y for x, y in hits if x <= left + 12]
    last = [y for x, y in hits if x >= right - 16]
    assert min(last) < min(first) - 30, "equity ends well above where it starts (y grows downwards)"
    # And the page is not blank elsewhere: the drawdown panel's red fill is there too.
    assert any(
        near(img.getpixel((x, y)), (248, 200, 200), 30)
        for x in range(100, 1100, 10)
        for y in range(700, 900, 4)
    )


def test_the_log_scale_option_shows_the_log_chart(tmp_path: Path) -> None:
    result = backtest(BacktestSpec(CSV, "BTC/USDT"))
    html = tmp_path / "report.html"
    html.write_text(_html(result, result_json(result), None, None, log_scale=True))
    shot = screenshot(html, tmp_path / "shot.png", tmp_path, height=500)
    dom = subprocess.run(
        [CHROMIUM or "", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p2'}",
         "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout  # fmt: skip
    assert 'id="log" checked' in dom and "(log scale)" in dom
    assert shot.getbbox() is not None
