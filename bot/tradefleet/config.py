"""Frozen, typed bot configuration that refuses what it does not understand.

Sources, later wins: built-in defaults < a YAML/JSON file (`--config`, the operator's ConfigMap) <
`TRADEFLEET_<KEY>` environment variables (plus `REDIS_URL`). An unknown key in either source is an
error naming the key and the known ones: a typo must fail at start, never silently default.
Secrets (API key and secret) are not configuration: see `credentials.py`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tradefleet.domain.risk import RiskLimits
from tradefleet.errors import ConfigError

INTERVALS_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
MODES = ("paper", "testnet", "live")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
QUOTE_DECIMALS = 8
"""Binance sends quote assets with 8 decimals at most (quoteAssetPrecision); more is refused (-1111)."""
MAX_QUOTE_AMOUNT = Decimal("1e9")
"""Per-order quote spend above this is a typo or an overflow, not a strategy (and an `Infinity`
would sweep the whole visible book in paper mode, or loop forever on "unknown outcome")."""
MAX_WINDOW = 10_000
MAX_HOT_CLOSE_MS = 1_000
"""hot_close_ms at most: beyond a second the held core costs more than a cold path loses."""
MAX_CONNECTION_AGE_S = 24 * 3600.0
"""Binance closes every connection at 24 h; asking for more only means being cut without warning."""
EXCHANGES = ("binance",)
SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}/[A-Z0-9]{2,20}$")
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# Environment variables that belong to us but are not config keys.
_ENV_NOT_KEYS = frozenset(
    {
        "TRADEFLEET_CONFIG",
        "TRADEFLEET_API_KEY",
        "TRADEFLEET_API_SECRET",
        "TRADEFLEET_API_KEY_FILE",
        "TRADEFLEET_API_SECRET_FILE",
    }
)


@dataclass(frozen=True, slots=True)
class BotConfig:
    name: str = "btc-usdt"
    """The bot's name: TradingBot metadata.name; part of every id (signals, orders, lease)."""
    exchange: str = "binance"
    symbol: str = "BTC/USDT"
    """Unified symbol BASE/QUOTE; the exchange-native id (BTCUSDT) is derived."""
    interval: str = "1d"
    short_window: int = 50
    long_window: int = 200
    quote_amount: Decimal = Decimal("100")
    """Quote currency spent by each BUY; a SELL closes the whole position."""
    mode: str = "paper"
    """paper: fills against the live local book; testnet/live: real signed orders."""
    store_url: str = "sqlite:///tradefleet.sqlite"
    """sqlite:///relative/path, sqlite:////absolute/path, or mongodb://… / mongodb+srv://…"""
    redis_url: str | None = None
    """Leader lease and event streams. None: one process with an in-process lease."""
    http_port: int = 8080
    http_host: str = "0.0.0.0"
    rest_url: str | None = None
    """Override the exchange's REST base URL (the simulator: http://127.0.0.1:8765)."""
    ws_url: str | None = None
    """Override the market-data websocket base URL (the simulator: ws://127.0.0.1:8765)."""
    ws_api_url: str | None = None
    """Override the WebSocket API URL used for the user data stream."""
    depth_limit: int = 1000
    price_sample_ms: int = 0
    """Store a top-of-book sample at most every N ms; 0 stores every book update."""
    hot_close_ms: int = 20
    """From this long before a candle's close is expected (forecast from the kline frames) until this
    long after, the order path is rehearsed once (nothing stored or sent) and the event loop polls
    instead of sleeping, so the closing frame meets a warm path; 0 turns it off. Costs a core for
    at most twice this per candle."""
    fee_rate: Decimal = Decimal("0.001")
    """Paper mode taker fee (0.1% is Binance's base spot rate)."""
    stale_after_s: float = 10.0
    """No frame for this long means the stream is dead: reconnect and rebuild the book."""
    reconnect_max_s: float = 30.0
    max_connection_age_s: float = 23.5 * 3600
    """Binance closes connections at 24 h; reconnect on our terms before that."""
    lease_ttl_ms: int = 5000
    lease_renew_ms: int = 1000
    risk_scope: str = "default"
    """Bots with the same scope share one kill switch and one exposure table (the fleet)."""
    max_position_quote: Decimal = Decimal(0)
    """Largest position this bot may open, in quote spent; 0 = no limit."""
    max_fleet_quote: Decimal = Decimal(0)
    """Largest total exposure of every bot in the scope, in quote; 0 = no limit."""
    max_quote_asset_quote: Decimal = Decimal(0)
    """Largest total exposure of the scope's bots trading against this bot's quote asset; 0 = none."""
    max_daily_loss_quote: Decimal = Decimal(0)
    """Realized + unrealized loss since 00:00 UTC that halts this bot; 0 = no limit."""
    max_drawdown_quote: Decimal = Decimal(0)
    """Fall of equity from its peak that halts this bot; 0 = no limit."""
    max_orders_per_minute: int = 0
    """Orders in any 60 s; reaching it halts this bot (a runaway loop); 0 = no limit."""
    max_fleet_daily_loss_quote: Decimal = Decimal(0)
    """Summed loss today of every bot in the scope that halts the whole fleet; 0 = no limit."""
    max_fleet_drawdown_quote: Decimal = Decimal(0)
    """Fall of the scope's summed equity from its peak that halts the whole fleet; 0 = no limit.
    A TradingFleet (mirrored into Redis) can tighten this and the other fleet limits, never loosen."""
    risk_poll_ms: int = 200
    """How often the kill switch is read: a halt takes effect within this (plus one Redis round trip)."""
    risk_stale_ms: int = 1000
    """A switch state older than this counts as unknown: no new position is opened."""
    reservation_ttl_ms: int = 15_000
    """A bot's exposure entry lives this long unless renewed: a dead bot's room frees after it."""
    risk_halt_file: str | None = None
    """Without Redis: the kill-switch file `tradefleet halt --file` writes (None: no external switch)."""
    stop_order_grace_s: float = 10.0
    """On SIGTERM, how long an order in flight may take to reach a final state before the bot exits.
    The operator sets terminationGracePeriodSeconds above this."""
    store_buffer_max: int = 100_000
    """Price samples waiting for an unavailable store; beyond this the oldest are dropped (counted)."""
    store_batch_max: int = 500
    store_flush_ms: int = 200
    warmup_extra: int = 10
    """Candles fetched beyond the long window at start, so a gap near the edge is still detected."""
    log_level: str = "INFO"
    json_logs: bool = True

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ConfigError("invalid bot configuration: " + "; ".join(problems))

    @property
    def risk_limits(self) -> RiskLimits:
        return RiskLimits(
            max_position_quote=self.max_position_quote,
            max_fleet_quote=self.max_fleet_quote,
            max_quote_asset_quote=self.max_quote_asset_quote,
            max_daily_loss_quote=self.max_daily_loss_quote,
            max_drawdown_quote=self.max_drawdown_quote,
            max_orders_per_minute=self.max_orders_per_minute,
            max_fleet_daily_loss_quote=self.max_fleet_daily_loss_quote,
            max_fleet_drawdown_quote=self.max_fleet_drawdown_quote,
        )

    @property
    def market_id(self) -> str:
        return self.symbol.replace("/", "")

    @property
    def interval_ms(self) -> int:
        return INTERVALS_MS[self.interval]

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, source: str = "config") -> BotConfig:
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ConfigError(
                f"unknown key(s) in {source}: {', '.join(unknown)}; known keys: {', '.join(cls.keys())}"
            )
        converted = {k: _convert(k, v, source) for k, v in values.items()}
        return cls(**converted)

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> BotConfig:
        merged: dict[str, Any] = {}
        env = env or {}
        path = path or env.get("TRADEFLEET_CONFIG")
        if path:
            merged.update(_read_file(Path(path)))
        merged.update(_from_env(env, cls.keys()))
        return cls.from_mapping(merged, source=f"{path or 'environment'}")

    def replace(self, **changes: Any) -> BotConfig:
        return dataclasses.replace(self, **changes)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:
        raise ConfigError(f"config file {path} is not valid YAML/JSON: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _from_env(env: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if env.get("REDIS_URL"):
        out["redis_url"] = env["REDIS_URL"]
    for name, value in env.items():
        if not name.startswith("TRADEFLEET_") or name in _ENV_NOT_KEYS:
            continue
        key = name.removeprefix("TRADEFLEET_").lower()
        if key not in keys:
            raise ConfigError(
                f"unknown environment variable {name}; known: "
                + ", ".join("TRADEFLEET_" + k.upper() for k in keys)
            )
        out[key] = value
    return out


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(BotConfig)}


def _convert(key: str, value: Any, source: str) -> Any:
    kind = str(_FIELD_TYPES[key])
    try:
        if value is None:
            if "None" in kind:
                return None
            raise ValueError("must not be empty")
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("must be a whole number")
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("must be a number")
            number = float(value)
            if not math.isfinite(number):
                raise ValueError("must be a finite number")
            return number
        if kind == "Decimal":
            if isinstance(value, bool):
                raise ValueError("must be a number")
            amount = Decimal(str(value).strip())
            if not amount.is_finite():
                raise ValueError("must be a finite number")
            return amount
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("must be true or false")
        if "None" in kind and value == "":
            return None
        if not isinstance(value, str | int | float):
            raise ValueError("must be a single value, not a list or mapping")
        return str(value)
    except (ValueError, TypeError, InvalidOperation) as e:
        raise ConfigError(f"{key} in {source}: {value!r} is not valid ({e})") from e


def _problems(c: BotConfig) -> Any:
    if not NAME_RE.match(c.name):
        yield f"name {c.name!r} must be a DNS label (lowercase letters, digits, '-', at most 63)"
    if c.exchange not in EXCHANGES:
        yield f"exchange {c.exchange!r} is not supported; use one of {', '.join(EXCHANGES)}"
    if not SYMBOL_RE.match(c.symbol):
        yield f"symbol {c.symbol!r} must look like BASE/QUOTE, e.g. BTC/USDT"
    if c.interval not in INTERVALS_MS:
        yield f"interval {c.interval!r} must be one of {', '.join(INTERVALS_MS)}"
    if c.short_window < 1:
        yield "short_window must be at least 1"
    if c.short_window >= c.long_window:
        yield f"short_window ({c.short_window}) must be smaller than long_window ({c.long_window})"
    for key in ("short_window", "long_window", "http_port", "depth_limit", "price_sample_ms", "hot_close_ms",
                "lease_ttl_ms", "lease_renew_ms", "store_buffer_max", "store_batch_max",
                "store_flush_ms", "warmup_extra"):  # fmt: skip
        value = getattr(c, key)
        if isinstance(value, bool) or not isinstance(value, int):
            yield f"{key} must be a whole number, not {value!r}"
            return
    for key in ("quote_amount", "fee_rate"):
        value = getattr(c, key)
        if not isinstance(value, Decimal) or not value.is_finite():
            yield f"{key} must be a finite decimal number, not {value!r}"
            return
    for key in ("stale_after_s", "reconnect_max_s", "max_connection_age_s"):
        value = getattr(c, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            yield f"{key} must be a finite number of seconds, not {value!r}"
            return
    if c.long_window > MAX_WINDOW:
        yield f"long_window must be at most {MAX_WINDOW}"
    if c.quote_amount <= 0:
        yield "quote_amount must be positive"
    elif c.quote_amount > MAX_QUOTE_AMOUNT:
        yield f"quote_amount {c.quote_amount} is above {MAX_QUOTE_AMOUNT} per order (what one BUY spends)"
    elif -c.quote_amount.as_tuple().exponent > QUOTE_DECIMALS:  # type: ignore[operator]
        # Sent as written (quoteOrderQty): Binance refuses more decimals than the quote asset has (-1111).
        yield (
            f"quote_amount {c.quote_amount} has more than {QUOTE_DECIMALS} decimals; "
            f"round it to {QUOTE_DECIMALS} or fewer"
        )
    if c.mode not in MODES:
        yield f"mode {c.mode!r} must be one of {', '.join(MODES)}"
    if not (c.store_url.startswith("sqlite://") or c.store_url.startswith("mongodb")):
        yield "store_url must start with sqlite:// or mongodb:// (or mongodb+srv://)"
    if c.redis_url is not None and not c.redis_url.startswith(("redis://", "rediss://", "unix://")):
        yield "redis_url must start with redis://, rediss:// or unix://"
    if not 0 <= c.http_port <= 65535:
        yield "http_port must be between 0 and 65535"
    if c.depth_limit not in (5, 10, 20, 50, 100, 500, 1000, 5000):
        yield "depth_limit must be one of 5, 10, 20, 50, 100, 500, 1000, 5000"
    if c.price_sample_ms < 0:
        yield "price_sample_ms must be 0 (every update) or positive"
    if not 0 <= c.hot_close_ms <= MAX_HOT_CLOSE_MS:
        yield (
            f"hot_close_ms {c.hot_close_ms} must be 0 (off) to {MAX_HOT_CLOSE_MS} ms: the loop is kept "
            "awake for up to twice this around every candle's close"
        )
    if not 0 <= c.fee_rate < 1:
        yield "fee_rate must be in [0, 1)"
    if c.lease_renew_ms < 10:
        yield "lease_renew_ms must be at least 10 (the lease is renewed this often)"
    if c.lease_renew_ms * 2 > c.lease_ttl_ms:
        yield "lease_renew_ms must be at most half of lease_ttl_ms"
    if not NAME_RE.match(c.risk_scope):
        yield f"risk_scope {c.risk_scope!r} must be a DNS label"
    for key in ("max_position_quote", "max_fleet_quote", "max_quote_asset_quote", "max_daily_loss_quote",
                "max_drawdown_quote", "max_orders_per_minute", "max_fleet_daily_loss_quote",
                "max_fleet_drawdown_quote"):  # fmt: skip
        if getattr(c, key) < 0:
            yield f"{key} must be 0 (no limit) or positive"
    if c.risk_poll_ms < 10 or c.risk_stale_ms < 2 * c.risk_poll_ms:
        yield "risk_poll_ms must be at least 10 and risk_stale_ms at least twice risk_poll_ms"
    if c.reservation_ttl_ms < 1000:
        yield "reservation_ttl_ms must be at least 1000"
    if c.stop_order_grace_s < 0:
        yield "stop_order_grace_s must not be negative"
    if c.stale_after_s <= 0 or c.reconnect_max_s <= 0:
        yield "stale_after_s and reconnect_max_s must be positive"
    if not 0 < c.max_connection_age_s <= MAX_CONNECTION_AGE_S:
        yield f"max_connection_age_s must be in (0, {MAX_CONNECTION_AGE_S:g}] (Binance cuts at 24 h)"
    elif c.max_connection_age_s <= c.stale_after_s:
        yield "max_connection_age_s must be longer than stale_after_s"
    if c.store_buffer_max < 1 or c.store_batch_max < 1:
        yield "store_buffer_max and store_batch_max must be at least 1"
    if c.store_flush_ms < 1:
        yield "store_flush_ms must be at least 1"
    if c.warmup_extra < 0:
        yield "warmup_extra must be 0 or more"
    if c.log_level.upper() not in LOG_LEVELS:
        yield f"log_level {c.log_level!r} must be one of {', '.join(LOG_LEVELS)}"
    for key, schemes in (("rest_url", ("http://", "https://")), ("ws_url", ("ws://", "wss://")),
                         ("ws_api_url", ("ws://", "wss://"))):  # fmt: skip
        url = getattr(c, key)
        if url is not None and (not url.startswith(schemes) or len(url) <= len(url.split("://")[0]) + 3):
            yield f"{key} {url!r} must start with {' or '.join(schemes)} and name a host"
    if (
        c.store_url.startswith("sqlite://")
        and not c.store_url.startswith("sqlite:///")
        and c.store_url != "sqlite://:memory:"  # a private in-memory database: backtests and sweeps
    ):
        yield (
            "store_url for SQLite must be sqlite:///relative/path, sqlite:////absolute/path "
            "or sqlite://:memory:"
        )


_ = field  # dataclasses.field kept for subclasses' documented defaults
