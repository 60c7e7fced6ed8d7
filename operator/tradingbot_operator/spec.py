"""A TradingBot's spec as a typed, validated `BotSpec`, and the bot.yaml it implies.

The CRD schema and its CEL rules reject most bad specs at `kubectl apply`. This module checks
them all again, because a spec can slip past the schema (an older CRD, a cluster without CEL,
an object written before a rule existed) and money is at stake: every problem is reported at once,
named by its spec path with what to do about it, and the rendered bot.yaml is finally loaded by
the bot's own `BotConfig`, so the operator never deploys a config the bot would refuse.

It refuses to guess: unknown spec keys are errors, not ignored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from tradefleet.config import EXCHANGES, INTERVALS_MS, MAX_HOT_CLOSE_MS, MODES, SYMBOL_RE, BotConfig
from tradefleet.errors import ConfigError

# Children are named "bot-<name>": a Service name must be a DNS-1035 label (start with a letter,
# at most 63 characters), and a TradingBot name may start with a digit ("1inch-usdt").
CHILD_PREFIX = "bot-"
MAX_NAME = 63 - len(CHILD_PREFIX)
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
QUANTITY_RE = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
)
# An image reference as containerd and the kubelet parse it (distribution/reference): a lower-case
# registry host (optional port) and path, then an optional tag and digest. Upper case anywhere before
# the tag makes "invalid reference format: repository name must be lowercase" at pull time (#11).
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_DOMAIN = r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?"
IMAGE_RE = re.compile(
    rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$"
)
# Kubernetes quantity suffixes (resource.Quantity) as multipliers of the base unit.
_QUANTITY_SUFFIX = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
    **{f"{p}i": Decimal(1024) ** (i + 1) for i, p in enumerate("KMGTPE")},
}  # fmt: skip
# What a bot pod may ask for: below it cannot run, above it no node will ever schedule it.
RESOURCE_BOUNDS = {
    "cpu": (Decimal("0.001"), Decimal(256), "1m to 256 cores"),
    "memory": (Decimal(32 * 1024**2), Decimal(1024**4), "32Mi to 1Ti"),
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
MAX_REPLICAS = 5
MAX_WINDOW = 1000

# The bot's store when no Secret provides one: the pod's /data volume (see the contract).
EMBEDDED_STORE_URL = "sqlite:////data/tradefleet.sqlite"

SPEC_KEYS = frozenset(
    {
        "exchange", "symbol", "strategy", "quoteAmount", "mode", "credentialsSecretRef", "replicas",
        "paused", "image", "imagePullPolicy", "resources", "store", "redis", "priceSampleMs", "logLevel",
        "risk", "exchangeUrls", "hotCloseMs",
    }
)  # fmt: skip
# spec.exchangeUrls (paper mode only): the CRD's patterns, a scheme and a host, no spaces.
EXCHANGE_URL_RES = {
    "rest": re.compile(r"^https?://[^/?#\s]+(/\S*)?$"),
    "ws": re.compile(r"^wss?://[^/?#\s]+(/\S*)?$"),
}
MAX_URL = 253
STRATEGY_KEYS = frozenset({"type", "shortWindow", "longWindow", "interval"})
# spec.risk: camelCase key -> the bot's config key (decimal strings, quote currency; 0 = no limit).
RISK_LIMITS = {
    "maxPositionQuote": "max_position_quote",
    "maxFleetQuote": "max_fleet_quote",
    "maxQuoteAssetQuote": "max_quote_asset_quote",
    "maxDailyLossQuote": "max_daily_loss_quote",
    "maxDrawdownQuote": "max_drawdown_quote",
    "maxFleetDailyLossQuote": "max_fleet_daily_loss_quote",
    "maxFleetDrawdownQuote": "max_fleet_drawdown_quote",
}
RISK_KEYS = frozenset({*RISK_LIMITS, "maxOrdersPerMinute", "stopOrderGraceSeconds", "scope", "halted",
                       "haltReason", "flatten"})  # fmt: skip
MAX_GRACE_S = 600
HALT_FILE = "/etc/tradefleet/halt.json"


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    name: str
    key: str = "url"


@dataclass(frozen=True, slots=True)
class BotSpec:
    """Everything the renderer needs, already validated. Field names follow the bot's config."""

    name: str
    namespace: str
    exchange: str = "binance"
    symbol: str = "BTC/USDT"
    interval: str = "1d"
    short_window: int = 50
    long_window: int = 200
    quote_amount: Decimal = Decimal("100")
    mode: str = "paper"
    credentials_secret: str | None = None
    replicas: int = 1
    paused: bool = False
    image: str | None = None
    image_pull_policy: str | None = None
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    store: SecretKeyRef | None = None
    redis: SecretKeyRef | None = None
    price_sample_ms: int | None = None
    hot_close_ms: int | None = None
    """spec.hotCloseMs: the bot's `hot_close_ms` (None: the bot's default)."""
    log_level: str = "INFO"
    risk: Mapping[str, Any] = field(default_factory=dict)
    """spec.risk as bot config keys (limits, scope, stop_order_grace_s)."""
    halted: bool = False
    halt_reason: str = ""
    flatten: bool = False
    rest_url: str | None = None
    """spec.exchangeUrls.rest: an exchange look-alike's REST base URL (paper mode only)."""
    ws_url: str | None = None
    """spec.exchangeUrls.ws: its market-data websocket base URL."""

    @property
    def stop_order_grace_s(self) -> int:
        return int(self.risk.get("stop_order_grace_s", 10))

    @property
    def child_name(self) -> str:
        return CHILD_PREFIX + self.name

    @property
    def desired_replicas(self) -> int:
        return 0 if self.paused else self.replicas

    def bot_config(self) -> dict[str, Any]:
        """The bot.yaml mapping: keys are exactly `BotConfig` field names (see the contract).

        Store and Redis URLs are not here: they come from Secrets through the environment
        (TRADEFLEET_STORE_URL, REDIS_URL), which the bot lets override the file.
        """
        config: dict[str, Any] = {
            "name": self.name,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "interval": self.interval,
            "short_window": self.short_window,
            "long_window": self.long_window,
            "quote_amount": str(self.quote_amount),
            "mode": self.mode,
            "store_url": EMBEDDED_STORE_URL,
            "http_host": "0.0.0.0",
            "http_port": 8080,
            "log_level": self.log_level,
            "json_logs": True,
        }
        if self.price_sample_ms is not None:
            config["price_sample_ms"] = self.price_sample_ms
        if self.hot_close_ms is not None:
            config["hot_close_ms"] = self.hot_close_ms
        if self.rest_url is not None:
            config["rest_url"] = self.rest_url
        if self.ws_url is not None:
            config["ws_url"] = self.ws_url
        config["risk_halt_file"] = HALT_FILE  # spec.risk.halted, written by the operator (halt_file())
        config.update(self.risk)
        return config

    def halt_file(self) -> dict[str, Any]:
        """The kill-switch file (`coord.risk_state.read_halt_file` format) for spec.risk.halted. Pure:
        the halt id is a function of the bot and the reason, so re-rendering never asks a second
        flatten; halt again with another reason for a new one."""
        if not self.halted:
            return {}
        digest = hashlib.sha256(f"{self.namespace}/{self.name}\x1f{self.halt_reason}".encode()).hexdigest()
        halt = {"halt_id": "spec-" + digest[:16], "reason": self.halt_reason or "spec.risk.halted",
                "by": f"TradingBot {self.namespace}/{self.name} spec.risk.halted", "at_ms": 0,
                "bot": self.name, "flatten": self.flatten}  # fmt: skip
        return {self.name: halt}


def parse_spec(name: str, namespace: str, spec: Mapping[str, Any]) -> BotSpec:
    """Validate a TradingBot spec (CRD defaults applied here too) into a `BotSpec`.

    Raises `ConfigError` naming every problem with its spec path.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    for problem in _collect(name, spec, values):
        problems.append(problem)
    if problems:
        raise ConfigError("invalid TradingBot spec: " + "; ".join(problems))
    bot = BotSpec(name=name, namespace=namespace, **values)
    try:
        BotConfig.from_mapping(bot.bot_config(), source=f"bot.yaml rendered for {namespace}/{name}")
    except ConfigError as e:  # a rule the bot has and the operator has not learnt yet
        raise ConfigError(f"invalid TradingBot spec: the bot would refuse its config: {e}") from e
    return bot


def _exchange_urls(urls: Any, mode: Any, out: dict[str, Any]) -> Iterator[str]:
    if urls is None:
        return
    if not isinstance(urls, Mapping):
        yield "spec.exchangeUrls must be a mapping with keys rest and ws"
        return
    unknown = sorted(set(urls) - set(EXCHANGE_URL_RES))
    if unknown:
        yield f"unknown field(s) spec.exchangeUrls.{', spec.exchangeUrls.'.join(unknown)}; known: rest, ws"
    for key, pattern in EXCHANGE_URL_RES.items():
        url = urls.get(key)
        schemes = "http:// or https://" if key == "rest" else "ws:// or wss://"
        if not isinstance(url, str) or len(url) > MAX_URL or not pattern.match(url):
            yield f"spec.exchangeUrls.{key} {url!r} must start with {schemes}, name a host and have no spaces"
        else:
            out[f"{key}_url"] = url
    if mode != "paper":
        yield (
            f"spec.exchangeUrls is for paper mode only (spec.mode is {mode!r}): a bot with credentials "
            "talks to the exchange itself"
        )


def _collect(name: str, spec: Mapping[str, Any], out: dict[str, Any]) -> Iterator[str]:
    if not isinstance(spec, Mapping):
        yield "spec must be a mapping"
        return
    if not NAME_RE.match(name) or len(name) > MAX_NAME:
        yield (
            f"metadata.name {name!r} must be lowercase letters, digits and '-', at most {MAX_NAME} "
            "characters (the bot's Service is named bot-<name>)"
        )
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        yield f"unknown field(s) spec.{', spec.'.join(unknown)}; known: {', '.join(sorted(SPEC_KEYS))}"

    exchange = spec.get("exchange", "binance")
    if exchange not in EXCHANGES:
        yield f"spec.exchange {exchange!r} is not supported; use one of {', '.join(EXCHANGES)}"
    out["exchange"] = exchange

    symbol = spec.get("symbol")
    if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
        yield f"spec.symbol {symbol!r} must look like BASE/QUOTE in capitals, e.g. BTC/USDT"
    else:
        out["symbol"] = symbol

    yield from _strategy(spec.get("strategy", {}), out)

    raw_amount = spec.get("quoteAmount", "100")
    try:
        amount = Decimal(str(raw_amount))
        if not amount.is_finite() or amount <= 0:
            raise InvalidOperation
        out["quote_amount"] = amount
    except InvalidOperation:
        yield f'spec.quoteAmount {raw_amount!r} must be a positive decimal string, e.g. "100"'

    mode = spec.get("mode", "paper")
    if mode not in MODES:
        yield f"spec.mode {mode!r} must be one of {', '.join(MODES)}"
    out["mode"] = mode

    creds = spec.get("credentialsSecretRef")
    if creds is not None:
        cred_name = creds.get("name") if isinstance(creds, Mapping) else None
        if not isinstance(cred_name, str) or not SECRET_NAME_RE.match(cred_name):
            yield f"spec.credentialsSecretRef.name {cred_name!r} must name a Secret"
        else:
            out["credentials_secret"] = cred_name
    if mode in ("testnet", "live") and creds is None:
        yield (
            f"spec.mode {mode} places real orders: set spec.credentialsSecretRef.name to a Secret "
            "with keys api-key and api-secret"
        )

    yield from _exchange_urls(spec.get("exchangeUrls"), mode, out)

    replicas = spec.get("replicas", 1)
    if not _is_int(replicas) or not 1 <= replicas <= MAX_REPLICAS:
        yield f"spec.replicas {replicas!r} must be a whole number from 1 to {MAX_REPLICAS}"
    else:
        out["replicas"] = replicas

    paused = spec.get("paused", False)
    if not isinstance(paused, bool):
        yield f"spec.paused {paused!r} must be true or false"
    else:
        out["paused"] = paused

    image = spec.get("image")
    if image is not None and (not isinstance(image, str) or not IMAGE_RE.match(image) or len(image) > 512):
        yield (
            f"spec.image {image!r} is not an image reference a node can pull: [registry[:port]/]path[:tag]"
            "[@sha256:digest], registry and path in lower case (e.g. ghcr.io/acme/tradefleet-bot:1.2)"
        )
    else:
        out["image"] = image
    policy = spec.get("imagePullPolicy")
    if policy is not None and policy not in PULL_POLICIES:
        yield f"spec.imagePullPolicy {policy!r} must be one of {', '.join(PULL_POLICIES)}"
    else:
        out["image_pull_policy"] = policy

    yield from _resources(spec.get("resources", {}), out)

    for key in ("store", "redis"):
        ref = spec.get(key)
        if ref is None:
            continue
        inner = ref.get("secretKeyRef") if isinstance(ref, Mapping) else None
        ref_name = inner.get("name") if isinstance(inner, Mapping) else None
        ref_key = inner.get("key", "url") if isinstance(inner, Mapping) else None
        if not isinstance(ref_name, str) or not SECRET_NAME_RE.match(ref_name):
            yield f"spec.{key}.secretKeyRef.name {ref_name!r} must name a Secret"
        elif not isinstance(ref_key, str) or not SECRET_KEY_RE.match(ref_key):
            yield f"spec.{key}.secretKeyRef.key {ref_key!r} must be a Secret key"
        else:
            out[key] = SecretKeyRef(ref_name, ref_key)
    if out.get("replicas", 1) > 1 and spec.get("redis") is None:
        yield (
            "spec.replicas > 1 needs spec.redis.secretKeyRef: without the Redis leader lease two "
            "replicas would both trade"
        )

    sample = spec.get("priceSampleMs")
    if sample is not None and (not _is_int(sample) or not 0 <= sample <= 3_600_000):
        yield f"spec.priceSampleMs {sample!r} must be a whole number of milliseconds from 0 to 3600000"
    else:
        out["price_sample_ms"] = sample

    hot = spec.get("hotCloseMs")
    if hot is not None and (not _is_int(hot) or not 0 <= hot <= MAX_HOT_CLOSE_MS):
        most = MAX_HOT_CLOSE_MS
        yield f"spec.hotCloseMs {hot!r} must be a whole number of milliseconds from 0 (off) to {most}"
    else:
        out["hot_close_ms"] = hot

    level = spec.get("logLevel", "INFO")
    if level not in LOG_LEVELS:
        yield f"spec.logLevel {level!r} must be one of {', '.join(LOG_LEVELS)}"
    out["log_level"] = level

    yield from _risk(spec.get("risk", {}), out)


def _risk(risk: Any, out: dict[str, Any]) -> Iterator[str]:
    if not isinstance(risk, Mapping):
        yield "spec.risk must be a mapping"
        return
    unknown = sorted(set(risk) - RISK_KEYS)
    if unknown:
        known = ", ".join(sorted(RISK_KEYS))
        yield f"unknown field(s) spec.risk.{', spec.risk.'.join(unknown)}; known: {known}"
    config: dict[str, Any] = {}
    for key, target in RISK_LIMITS.items():
        if key not in risk:
            continue
        try:
            value = Decimal(str(risk[key]))
            if not value.is_finite() or value < 0 or isinstance(risk[key], bool):
                raise InvalidOperation
            config[target] = str(value)
        except InvalidOperation:
            yield f'spec.risk.{key} {risk[key]!r} must be a decimal string >= 0 (0 = no limit), e.g. "500"'
    for key, target, top in (("maxOrdersPerMinute", "max_orders_per_minute", 10_000),
                             ("stopOrderGraceSeconds", "stop_order_grace_s", MAX_GRACE_S)):  # fmt: skip
        if key in risk:
            if not _is_int(risk[key]) or not 0 <= risk[key] <= top:
                yield f"spec.risk.{key} {risk[key]!r} must be a whole number from 0 to {top}"
            else:
                config[target] = risk[key]
    scope = risk.get("scope")
    if scope is not None:
        if not isinstance(scope, str) or not NAME_RE.match(scope) or len(scope) > 63:
            yield f"spec.risk.scope {scope!r} must be a DNS label (the fleet this bot belongs to)"
        else:
            config["risk_scope"] = scope
    for key in ("halted", "flatten"):
        if not isinstance(risk.get(key, False), bool):
            yield f"spec.risk.{key} {risk[key]!r} must be true or false"
    reason = risk.get("haltReason", "")
    if not isinstance(reason, str) or len(reason) > 200:
        yield "spec.risk.haltReason must be a string of at most 200 characters"
        reason = ""
    out["risk"] = config
    out["halted"] = risk.get("halted") is True
    out["flatten"] = risk.get("flatten") is True
    out["halt_reason"] = reason


def _strategy(strategy: Any, out: dict[str, Any]) -> Iterator[str]:
    if not isinstance(strategy, Mapping):
        yield "spec.strategy must be a mapping"
        return
    unknown = sorted(set(strategy) - STRATEGY_KEYS)
    if unknown:
        yield f"unknown field(s) spec.strategy.{', spec.strategy.'.join(unknown)}"
    kind = strategy.get("type", "smaCrossover")
    if kind != "smaCrossover":
        yield f"spec.strategy.type {kind!r} is not supported; use smaCrossover"
    short = strategy.get("shortWindow", 50)
    long = strategy.get("longWindow", 200)
    ok = True
    for path, value in (("shortWindow", short), ("longWindow", long)):
        if not _is_int(value) or not 1 <= value <= MAX_WINDOW:
            ok = False
            yield f"spec.strategy.{path} {value!r} must be a whole number from 1 to {MAX_WINDOW}"
    if ok:
        if short >= long:
            yield (
                f"spec.strategy.shortWindow ({short}) must be smaller than spec.strategy.longWindow ({long})"
            )
        out["short_window"], out["long_window"] = short, long
    interval = strategy.get("interval", "1d")
    if interval not in INTERVALS_MS:
        yield f"spec.strategy.interval {interval!r} must be one of {', '.join(INTERVALS_MS)}"
    out["interval"] = interval


def _resources(resources: Any, out: dict[str, Any]) -> Iterator[str]:
    if not isinstance(resources, Mapping):
        yield "spec.resources must be a mapping"
        return
    for part in ("requests", "limits"):
        section = resources.get(part, {})
        if not isinstance(section, Mapping):
            yield f"spec.resources.{part} must be a mapping"
            continue
        parsed: dict[str, str] = {}
        for res, qty in section.items():
            if res not in ("cpu", "memory"):
                yield f"spec.resources.{part}.{res}: only cpu and memory are supported"
            elif isinstance(qty, bool) or not QUANTITY_RE.match(str(qty)):
                yield f"spec.resources.{part}.{res} {qty!r} is not a quantity (e.g. 100m, 256Mi)"
            else:
                low, high, text = RESOURCE_BOUNDS[res]
                value = quantity_value(str(qty))
                if not low <= value <= high:
                    yield f"spec.resources.{part}.{res} {qty!r} is outside what a bot pod can use ({text})"
                else:
                    parsed[res] = str(qty)
        out[part] = parsed
    unknown = sorted(set(resources) - {"requests", "limits"})
    if unknown:
        yield f"unknown field(s) spec.resources.{', spec.resources.'.join(unknown)}"
    # Requests above the limits the pod will get (the operator's defaults included) are refused by
    # the API server only when the Deployment is created, after the ConfigMap already exists.
    from tradingbot_operator.render import DEFAULT_LIMITS, DEFAULT_REQUESTS

    requests = {**DEFAULT_REQUESTS, **out.get("requests", {})}
    limits = {**DEFAULT_LIMITS, **out.get("limits", {})}
    for res in sorted(set(requests) & set(limits)):
        if quantity_value(requests[res]) > quantity_value(limits[res]):
            yield (
                f"spec.resources.requests.{res} {requests[res]!r} is above the limit {limits[res]!r}"
                + ("" if res in out.get("limits", {}) else " the operator sets by default")
                + f"; raise spec.resources.limits.{res} or lower the request"
            )


def quantity_value(text: str) -> Decimal:
    """A Kubernetes quantity (already matched by QUANTITY_RE) in its base unit (cores, bytes)."""
    number = re.match(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", text)
    assert number is not None
    suffix = text[number.end() :]
    if suffix[:1] in ("e", "E") and suffix not in _QUANTITY_SUFFIX:
        return Decimal(number.group()) * Decimal(10) ** int(suffix[1:])
    return Decimal(number.group()) * _QUANTITY_SUFFIX[suffix]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
