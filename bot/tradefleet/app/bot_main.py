"""`tradefleet bot`: wire one bot's edges to its engine and run it until SIGTERM.

Start order matters for money: the store opens and the lease starts first; market data flows and the
strategy warms up while the order manager reloads position and open orders and reconciles them with
the exchange; only then may signals become orders. Stop order is the reverse, and the store is
flushed before the process exits, so a rolling update loses nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from typing import Any

from tradefleet.config import BotConfig
from tradefleet.errors import ConfigError, PermanentError
from tradefleet.logs import log_event, setup_logging
from tradefleet.metrics import BotMetrics

log = logging.getLogger("tradefleet.bot")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tradefleet bot",
        description="Run one SMA-crossover trading bot. Configuration: --config FILE, then TRADEFLEET_* "
        "environment variables, then --set KEY=VALUE (later wins). Unknown keys are refused.",
    )
    p.add_argument("--config", help="YAML or JSON file with BotConfig keys (default: $TRADEFLEET_CONFIG)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key")
    p.add_argument("--http-port", type=int, help="port for /livez /readyz /metrics /status")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    return p.parse_args(argv)


def load_config(args: argparse.Namespace, env: dict[str, str]) -> BotConfig:
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
        return asyncio.run(_main())
    except ConfigError as e:
        log_event(log, "config_error", logging.ERROR, error=str(e))
        print(f"tradefleet bot: {e}", file=sys.stderr)
        return 2
    except PermanentError as e:  # e.g. a store that cannot be used at all: say so, no traceback
        log_event(log, "fatal", logging.CRITICAL, error=str(e)[:500])
        print(f"tradefleet bot: {e}", file=sys.stderr)
        return 3
