"""Refused signals are summarised at the top of the HTML report: who halted, why, and when."""

from __future__ import annotations

from decimal import Decimal

from tradefleet.domain.models import Side, Signal
from tradefleet.web.report_html import risk_notes


def sig(i: int, action: str) -> Signal:
    return Signal(f"s{i}", "b", "binance", "BTC/USDT", "1m", Side.BUY, i * 60_000, i * 60_000 + 59_999,
                  Decimal(1), Decimal(1), Decimal(1), 0, action)  # fmt: skip


def test_refusals_are_grouped_by_halt_and_by_cap() -> None:
    halted = "risk: halted (fleet: exchange down; by ops)"
    notes = risk_notes([sig(1, "order"), sig(2, halted), sig(3, halted), sig(4, "risk: fleet_cap (250 held + 100 > 300)"),
                        sig(5, "risk: fleet_cap (200 held + 100 > 250)")])  # fmt: skip
    assert len(notes) == 2
    assert notes[0].startswith(f"2 signal(s) refused — {halted}; candles 1970-01-01 00:02:00")
    assert notes[1].startswith("2 signal(s) refused — risk: fleet_cap;")
    assert risk_notes([sig(1, "order")]) == []
