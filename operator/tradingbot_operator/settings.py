"""Operator settings: what a TradingBot does not say and the operator decides for it.

Read once from the environment at start (the Helm chart sets them) into a frozen dataclass, so a
typo in a variable name is visible in one place and a test builds its own settings without
touching `os.environ`. Refuses unknown `TRADEFLEET_OPERATOR_*` variables for the same reason the
bot refuses unknown keys: a misspelt setting must fail at start, not silently default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from tradefleet.errors import ConfigError

GROUP = "tradefleet.io"
VERSION = "v1alpha1"
PLURAL = "tradingbots"
KIND = "TradingBot"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    bot_image: str = "ghcr.io/tradefleet/bot:0.1.0"
    """Image for bots whose spec names none (env TRADEFLEET_BOT_IMAGE)."""
    default_store_secret: str = "tradefleet-store"
    """Secret (key `url`) with the store URL for bots whose spec names none. Referenced as
    `optional`: when it does not exist the bot falls back to SQLite on its /data volume."""
    default_redis_secret: str = "tradefleet-redis"
    """Secret (key `url`) with the Redis URL for bots whose spec names none; `optional` as above
    (absent = one replica with an in-process lease, which is why such bots roll with Recreate)."""
    status_interval_s: float = 15.0
    """How often each bot's Deployment and /status are read into the TradingBot status. 15 s keeps
    `kubectl get tb` fresh enough for a human while costing one GET per bot per interval."""
    status_url_template: str = "http://bot-{name}.{namespace}.svc:8080/status"
    """Where a bot's own report is read; the default goes through the bot's Service."""
    status_timeout_s: float = 3.0
    """A bot that cannot answer /status within this is reported as unreachable, not waited for."""
    redis_url: str | None = None
    """The fleet's Redis (env TRADEFLEET_OPERATOR_REDIS_URL): spec.risk.halted is also written there so
    bots stop within a second; without it they read the mounted halt.json (the kubelet's sync period)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OperatorSettings:
        mapping = {
            "TRADEFLEET_BOT_IMAGE": "bot_image",
            "TRADEFLEET_DEFAULT_STORE_SECRET": "default_store_secret",
            "TRADEFLEET_DEFAULT_REDIS_SECRET": "default_redis_secret",
            "TRADEFLEET_OPERATOR_STATUS_INTERVAL_S": "status_interval_s",
            "TRADEFLEET_OPERATOR_STATUS_URL_TEMPLATE": "status_url_template",
            "TRADEFLEET_OPERATOR_STATUS_TIMEOUT_S": "status_timeout_s",
            "TRADEFLEET_OPERATOR_REDIS_URL": "redis_url",
        }
        unknown = sorted(k for k in env if k.startswith("TRADEFLEET_OPERATOR_") and k not in mapping)
        if unknown:
            raise ConfigError(
                f"unknown environment variable(s) {', '.join(unknown)}; known: {', '.join(sorted(mapping))}"
            )
        values: dict[str, object] = {}
        for var, field_name in mapping.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            if field_name.endswith("_s"):
                try:
                    number = float(raw)
                except ValueError as e:
                    raise ConfigError(f"{var}={raw!r} must be a number of seconds") from e
                if number <= 0:
                    raise ConfigError(f"{var}={raw!r} must be positive")
                values[field_name] = number
            else:
                values[field_name] = raw
        return dataclasses.replace(cls(), **values)  # type: ignore[arg-type]
