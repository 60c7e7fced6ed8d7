"""`tradefleet bot`: wire one bot's edges to its engine and run it until SIGTERM.

Start order matters for money: the store opens and the lease starts first; market data flows and the
strategy warms up while the order manager reloads position and open orders and reconciles them with
the exchange; only then may signals become orders. Stop order is the reverse, and the store is
flushed before the process exits, so a rolling update loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from tradefleet import awake
from tradefleet.config import BotConfig
from tradefleet.errors import ConfigError, PermanentError
from tradefleet.logs import log_event, setup_logging
from tradefleet.metrics import BotMetrics

log = logging.getLogger("tradefleet.bot")


USAGE = (
    "usage: tradefleet bot [-h] [--config CONFIG] [--set KEY=VALUE] [--http-port HTTP_PORT] [--check-config]"
)
HELP = f"""{USAGE}

Run one SMA-crossover trading bot. Configuration: --config FILE, then TRADEFLEET_* environment
variables, then --set KEY=VALUE (later wins). Unknown keys are refused.

options:
  -h, --help            show this help message and exit
  --config CONFIG       YAML or JSON file with BotConfig keys (default: $TRADEFLEET_CONFIG)
  --set KEY=VALUE       override one key (repeatable)
  --http-port HTTP_PORT
                        port for /livez /readyz /metrics /status
  --check-config        validate the configuration and exit"""


@dataclass
class BotArgs:
    config: str | None = None
    set: list[str] = field(default_factory=list)
    http_port: int | None = None
    check_config: bool = False


def _usage_error(message: str) -> SystemExit:
    print(f"{USAGE}\ntradefleet bot: error: {message}", file=sys.stderr)
    return SystemExit(2)


def parse_args(argv: list[str]) -> BotArgs:
    """The four options, parsed by hand as argparse parsed them (`--opt VALUE` or `--opt=VALUE`;
    an error prints the usage and exits 2, `--help` prints the help and exits 0). Not argparse: it
    and gettext are ~0.4 MiB of every bot's RSS, for four options (issue #17's import diet)."""
    args = BotArgs()
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in ("-h", "--help"):
            print(HELP)
            raise SystemExit(0)
        if word == "--check-config":
            args.check_config = True
            continue
        name, eq, value = word.partition("=")
        if name not in ("--config", "--set", "--http-port"):
            raise _usage_error(f"unrecognized arguments: {word}")
        if not eq:
            if not words or (words[0].startswith("--") and words[0] != "--"):
                raise _usage_error(f"argument {name}: expected one argument")
            value = words.pop(0)
        if name == "--config":
            args.config = value
        elif name == "--set":
            args.set.append(value)
        else:
            try:
                args.http_port = int(value)
            except ValueError:
                raise _usage_error(f"argument --http-port: invalid int value: {value!r}") from None
    return args


def load_config(args: BotArgs, env: dict[str, str]) -> BotConfig:
    config = BotConfig.load(args.config, env)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        overrides[key.strip().replace("-", "_")] = value
    if args.http_port is not None:
        overrides["http_port"] = args.http_port
    if overrides:
        merged = {k: getattr(config, k) for k in BotConfig.keys()}  # noqa: SIM118 (a classmethod)
        merged.update(overrides)
        config = BotConfig.from_mapping(merged, source="--set")
    return config


def holder_id() -> str:
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args, dict(os.environ))
        # Credentials are read (and registered with the log scrubber) before logging starts, so an
        # exchange mode without them, or with two sources, is refused here, not in a task later.
        from tradefleet.adapters.credentials import load_credentials

        load_credentials(required=config.mode != "paper")
    except ConfigError as e:
        print(f"tradefleet bot: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"configuration ok: {config.name} {config.exchange} {config.symbol} {config.mode}")
        return 0
    setup_logging(config.log_level, json_lines=config.json_logs)
    from tradefleet.app.runtime import BotRuntime

    async def _main() -> int:
        runtime = BotRuntime(config, BotMetrics(), holder=holder_id())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, runtime.request_stop)
        return await runtime.run()

    try:
        return awake.run(_main())
    except ConfigError as e:
        log_event(log, "config_error", logging.ERROR, error=str(e))
        print(f"tradefleet bot: {e}", file=sys.stderr)
        return 2
    except PermanentError as e:  # e.g. a store that cannot be used at all: say so, no traceback
        log_event(log, "fatal", logging.CRITICAL, error=str(e)[:500])
        print(f"tradefleet bot: {e}", file=sys.stderr)
        return 3
