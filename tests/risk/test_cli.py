"""`tradefleet halt` / `resume` usage errors: bad usage exits 2, an unreachable switch exits 1 and
changes nothing; both say why on stderr."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tradefleet.app.cli import main


def test_halt_without_a_switch_to_write_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["halt", "--reason", "x"]) == 2
    assert "--redis-url" in capsys.readouterr().err


def test_halt_needs_a_reason(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["halt", "--file", "/tmp/x"])
    assert e.value.code == 2


def test_an_unreachable_redis_exits_1_and_says_so(capsys) -> None:
    assert main(["halt", "--reason", "x", "--redis-url", f"redis://127.0.0.1:{free_port()}/0"]) == 1
    assert "kill switch" in capsys.readouterr().err
