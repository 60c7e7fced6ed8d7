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


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"quote_amount": "Infinity"},
            "quote_amount in config: 'Infinity' is not valid (must be a finite number)",
        ),
        ({"quote_amount": "NaN"}, "quote_amount in config: 'NaN' is not valid (must be a finite number)"),
        ({"quote_amount": "1e30"}, "quote_amount 1E+30 is above 1E+9 per order"),
        ({"quote_amount": "10.123456789"}, "quote_amount 10.123456789 has more than 8 decimals; round it"),
        ({"fee_rate": "nan"}, "fee_rate in config: 'nan' is not valid (must be a finite number)"),
        ({"stale_after_s": "nan"}, "stale_after_s in config: 'nan' is not valid (must be a finite number)"),
        ({"reconnect_max_s": float("inf")}, "reconnect_max_s in config: inf is not valid"),
        ({"log_level": "LOUD"}, "log_level 'LOUD' must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ({"lease_ttl_ms": 0, "lease_renew_ms": 0}, "lease_renew_ms must be at least 10"),
        ({"store_batch_max": -5}, "store_buffer_max and store_batch_max must be at least 1"),
        ({"store_buffer_max": 0}, "store_buffer_max and store_batch_max must be at least 1"),
        ({"store_flush_ms": 0}, "store_flush_ms must be at least 1"),
        ({"warmup_extra": -1}, "warmup_extra must be 0 or more"),
        ({"max_connection_age_s": 0}, "max_connection_age_s must be in (0, 86400]"),
        ({"max_connection_age_s": 90000}, "max_connection_age_s must be in (0, 86400]"),
        (
            {"max_connection_age_s": 5, "stale_after_s": 10},
            "max_connection_age_s must be longer than stale_after_s",
        ),
        (
            {"ws_url": "http://127.0.0.1:8765"},
            "ws_url 'http://127.0.0.1:8765' must start with ws:// or wss://",
        ),
        ({"ws_api_url": "ws://"}, "ws_api_url 'ws://' must start with ws:// or wss:// and name a host"),
        ({"rest_url": "ftp://x"}, "rest_url 'ftp://x' must start with http:// or https://"),
        ({"store_url": "sqlite://x.db"}, "store_url for SQLite must be sqlite:///relative/path"),
        ({"long_window": 20000}, "long_window must be at most 10000"),
        ({"symbol": ["BTC/USDT"]}, "symbol in config: ['BTC/USDT'] is not valid (must be a single value"),
        ({"stale_after_s": True}, "stale_after_s in config: True is not valid (must be a number)"),
    ],
)
def test_every_value_is_checked_for_type_finiteness_and_range(
    values: dict[str, object], message: str
) -> None:
    import re

    with pytest.raises(ConfigError, match=re.escape(message)):
        BotConfig.from_mapping(values)


def test_non_finite_values_are_refused_when_built_directly_too() -> None:
    with pytest.raises(ConfigError, match="quote_amount must be a finite decimal number"):
        BotConfig(quote_amount=Decimal("Infinity"))
    with pytest.raises(ConfigError, match="stale_after_s must be a finite number of seconds"):
        BotConfig(stale_after_s=float("nan"))


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


def test_bot_options_parse_as_argparse_parsed_them(capsys: pytest.CaptureFixture[str]) -> None:
    from tradefleet.app.bot_main import BotArgs, parse_args

    assert parse_args([]) == BotArgs()
    args = parse_args(["--config", "a.yaml", "--set", "name=x", "--set=symbol=ETH/USDT", "--http-port=9100",
                       "--check-config"])  # fmt: skip
    assert args == BotArgs(
        config="a.yaml", set=["name=x", "symbol=ETH/USDT"], http_port=9100, check_config=True
    )
    assert parse_args(["--set", "k=v=w"]).set == ["k=v=w"]  # only the first '=' splits the option
    for bad, why in ((["--nope"], "unrecognized arguments: --nope"), (["--config"], "--config: expected one"),
                     (["--set", "--check-config"], "--set: expected one argument"),
                     (["--http-port", "x"], "invalid int value: 'x'"), (["--check-config=1"], "unrecognized")):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            parse_args(bad)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: tradefleet bot") and why in err, (bad, err)
    with pytest.raises(SystemExit) as info:
        parse_args(["--help"])
    assert info.value.code == 0 and "--check-config" in capsys.readouterr().out


def test_check_config_refuses_exchange_modes_without_credentials_or_with_two_sources(tmp_path: Path) -> None:
    live = run_cli("bot", "--check-config", "--set", "mode=live")
    assert live.returncode == 2 and "exchange mode needs API credentials" in live.stderr
    (tmp_path / "key").write_text("key-from-file\n")
    both = run_cli(
        "bot", "--check-config", "--set", "mode=testnet",
        env={"TRADEFLEET_API_KEY": "key-from-env", "TRADEFLEET_API_KEY_FILE": str(tmp_path / "key"),
             "TRADEFLEET_API_SECRET": "secret-from-env"},
    )  # fmt: skip
    assert both.returncode == 2 and "both TRADEFLEET_API_KEY and TRADEFLEET_API_KEY_FILE" in both.stderr
    assert "key-from-env" not in both.stderr + both.stdout and "secret-from-env" not in both.stderr
    loud = run_cli("bot", "--check-config", "--set", "log_level=LOUD")
    assert loud.returncode == 2 and "log_level 'LOUD' must be one of" in loud.stderr


def test_cli_lists_commands_and_refuses_unknown_ones() -> None:
    assert "demo" in run_cli("--help").stdout
    unknown = run_cli("trade")
    assert unknown.returncode == 2 and "unknown command 'trade'" in unknown.stderr
