"""spec.exchangeUrls: a paper bot reads market data from an exchange look-alike (the simulator
running as a pod) instead of the exchange; the operator puts the URLs into bot.yaml as the bot's
own `rest_url`/`ws_url`, and refuses them for bots that place real orders."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.operator.crd_tools import example
from tradefleet.config import BotConfig
from tradefleet.errors import ConfigError
from tradingbot_operator.render import render_config_map
from tradingbot_operator.spec import parse_spec

SIM = {"rest": "http://sim.trading.svc:8765", "ws": "ws://sim.trading.svc:8765"}


def spec_with(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = example("paper-btc-usdt.yaml")["spec"]
    spec.update(changes)
    return spec


def test_exchange_urls_reach_the_bots_config_file() -> None:
    bot = parse_spec("btc-usdt", "trading", spec_with(exchangeUrls=SIM))
    loaded = yaml.safe_load(render_config_map(bot)["data"]["bot.yaml"])
    assert (loaded["rest_url"], loaded["ws_url"]) == (SIM["rest"], SIM["ws"])
    checked = BotConfig.from_mapping(loaded, source="rendered bot.yaml")  # the bot accepts it
    assert (checked.rest_url, checked.ws_url) == (SIM["rest"], SIM["ws"])


def test_without_exchange_urls_the_bot_talks_to_the_exchange() -> None:
    loaded = parse_spec("btc-usdt", "trading", spec_with()).bot_config()
    assert "rest_url" not in loaded and "ws_url" not in loaded


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exchangeUrls": {"rest": "ftp://sim:8765", "ws": SIM["ws"]}},
         "spec.exchangeUrls.rest 'ftp://sim:8765' must start with http:// or https://"),
        ({"exchangeUrls": {"rest": SIM["rest"], "ws": "http://sim:8765"}},
         "spec.exchangeUrls.ws 'http://sim:8765' must start with ws:// or wss://"),
        ({"exchangeUrls": {"rest": "http://", "ws": SIM["ws"]}}, "spec.exchangeUrls.rest 'http://' must"),
        ({"exchangeUrls": {"rest": "http://sim x", "ws": SIM["ws"]}}, "have no spaces"),
        ({"exchangeUrls": {"rest": SIM["rest"]}}, "spec.exchangeUrls.ws None must start with ws://"),
        ({"exchangeUrls": {**SIM, "wsApi": "ws://x"}}, "unknown field(s) spec.exchangeUrls.wsApi"),
        ({"exchangeUrls": "http://sim:8765"}, "spec.exchangeUrls must be a mapping"),
        ({"exchangeUrls": SIM, "mode": "testnet", "credentialsSecretRef": {"name": "keys"}},
         "spec.exchangeUrls is for paper mode only (spec.mode is 'testnet')"),
    ],
)  # fmt: skip
def test_bad_exchange_urls_are_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_spec("btc-usdt", "trading", spec_with(**changes))
    assert message in str(refused.value)
