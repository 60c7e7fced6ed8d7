"""`tradefleet health` (the images' HEALTHCHECK) picks the process and port from PID 1's command line;
no engine needed: pure parsing, and the probe against real servers of each kind elsewhere
(tests/images/test_images.py runs it inside real containers)."""

from __future__ import annotations

import pytest

from tradefleet.app.health import check, process_of


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/opt/tradefleet/bin/python", "/opt/tradefleet/bin/tradefleet", "bot"], ("bot", 8080)),
        (["tradefleet", "bot", "--http-port", "9100"], ("bot", 9100)),
        (["tradefleet", "sim", "--host", "0.0.0.0", "--port", "8765", "--loop"], ("sim", 8765)),
        (["tradefleet", "sim", "--port=9999"], ("sim", 9999)),
        (["tradefleet", "operator", "--namespace", "default"], ("operator", 8080)),
        ([], ("bot", 8080)),
    ],
)
def test_process_and_port_come_from_pid1s_command_line(argv: list[str], expected: tuple[str, int]) -> None:
    assert process_of(argv) == expected


def test_bot_port_from_the_environment_when_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEFLEET_HTTP_PORT", "8181")
    assert process_of(["tradefleet", "bot"]) == ("bot", 8181)


def test_nothing_listening_is_unhealthy_with_the_reason() -> None:
    ok, why = check("bot", 9, timeout=1)  # port 9 (discard): nothing answers HTTP there
    assert not ok and why.startswith("bot /readyz:")
