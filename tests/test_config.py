"""Bot configuration: typos fail loudly at start with a message that says what to fix."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tradefleet.config import BotConfig
from tradefleet.errors import ConfigError


def test_defaults_are_the_daily_50_200_paper_bot() -> None:
    c = BotConfig()
    assert (c.interval, c.short_window, c.long_window, c.mode) == ("1d", 50, 200, "paper")
    assert c.market_id == "BTCUSDT" and c.interval_ms == 86_400_000


def test_file_then_env_then_later_wins(tmp_path: Path) -> None:
    f = tmp_path / "bot.yaml"
    f.write_text("name: eth-bot\nsymbol: ETH/USDT\nshort_window: 10\nlong_window: 30\nquote_amount: '25.5'\n")
    c = BotConfig.load(f, {"TRADEFLEET_LONG_WINDOW": "40", "REDIS_URL": "redis://r:6379/0"})
    assert (c.name, c.symbol, c.short_window, c.long_window) == ("eth-bot", "ETH/USDT", 10, 40)
    assert c.quote_amount == Decimal("25.5") and c.redis_url == "redis://r:6379/0"


def test_unknown_key_in_file_is_refused_with_the_known_keys(tmp_path: Path) -> None:
    f = tmp_path / "bot.yaml"
    f.write_text("short_windw: 10\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in .*: short_windw; known keys: .*short_window"):
        BotConfig.load(f, {})


def test_unknown_tradefleet_env_var_is_refused_but_secrets_are_not_config() -> None:
    with pytest.raises(ConfigError, match="unknown environment variable TRADEFLEET_SHORTWINDOW"):
        BotConfig.load(None, {"TRADEFLEET_SHORTWINDOW": "5"})
    env = {"TRADEFLEET_API_KEY": "k", "TRADEFLEET_API_SECRET_FILE": "/x", "OTHER": "ignored"}
    assert BotConfig.load(None, env) == BotConfig()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"short_window": 200}, "short_window (200) must be smaller than long_window (200)"),
        ({"interval": "2d"}, "interval '2d' must be one of"),
        ({"symbol": "BTCUSDT"}, "must look like BASE/QUOTE"),
        ({"mode": "real"}, "mode 'real' must be one of paper, testnet, live"),
        ({"quote_amount": Decimal(0)}, "quote_amount must be positive"),
        ({"store_url": "postgres://x"}, "store_url must start with sqlite:// or mongodb://"),
        ({"name": "Bad_Name"}, "must be a DNS label"),
        ({"lease_renew_ms": 4000}, "lease_renew_ms must be at most half of lease_ttl_ms"),
    ],
)
def test_invalid_values_say_what_to_fix(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BotConfig().replace(**changes)


def test_values_of_the_wrong_type_name_the_key() -> None:
    with pytest.raises(ConfigError, match="short_window in environment: 'ten' is not valid"):
        BotConfig.load(None, {"TRADEFLEET_SHORT_WINDOW": "ten"})
    with pytest.raises(
        ConfigError, match=r"json_logs in config: .maybe. is not valid \(must be true or false\)"
    ):
        BotConfig.from_mapping({"json_logs": "maybe"})


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "bot.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        BotConfig.load(f, {})
    with pytest.raises(ConfigError, match="cannot read config file"):
        BotConfig.load(tmp_path / "missing.yaml", {})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradefleet.app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_bot_check_config_accepts_overrides_and_refuses_typos() -> None:
    ok = run_cli("bot", "--check-config", "--set", "symbol=ETH/USDT", "--set", "name=eth")
    assert ok.returncode == 0, ok.stderr
    assert "configuration ok: eth binance ETH/USDT paper" in ok.stdout
    bad = run_cli("bot", "--check-config", env={"TRADEFLEET_LONG_WINDOWS": "100"})
    assert bad.returncode == 2
    assert "unknown environment variable TRADEFLEET_LONG_WINDOWS" in bad.stderr
    bad = run_cli("bot", "--check-config", "--set", "short_window")
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr


def test_cli_lists_commands_and_refuses_unknown_ones() -> None:
    assert "demo" in run_cli("--help").stdout
    unknown = run_cli("trade")
    assert unknown.returncode == 2 and "unknown command 'trade'" in unknown.stderr
