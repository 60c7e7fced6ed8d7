"""`tradefleet operator`: run the kopf operator that runs one bot per TradingBot.

    tradefleet operator [--namespace NS ... | --all-namespaces] [--peering NAME] [--priority N]
                        [--http-port 8080]

Without `--peering` the operator runs standalone (one replica). With it, replicas coordinate
through kopf's KopfPeering (namespaced) or ClusterKopfPeering (--all-namespaces) object NAME:
the highest priority handles TradingBots, the others wait. Settings come from the environment
(see settings.py); an unknown TRADEFLEET_OPERATOR_* variable stops it at start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from dataclasses import dataclass

import kopf

from tradefleet.errors import ConfigError
from tradefleet.logs import setup_logging
from tradingbot_operator import health
from tradingbot_operator.handlers import OperatorContext, configure_kopf, register
from tradingbot_operator.kube import Kube
from tradingbot_operator.metrics import OperatorMetrics
from tradingbot_operator.settings import OperatorSettings

log = logging.getLogger("tradingbot_operator")


@dataclass(frozen=True, slots=True)
class RunOptions:
    namespaces: tuple[str, ...] = ()
    """Empty means all namespaces."""
    peering: str | None = None
    priority: int = 0
    http_host: str = "0.0.0.0"
    http_port: int = 8080


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tradefleet operator", description=__doc__.split("\n\n")[0])
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", default=[], metavar="NS",
        help="serve TradingBots in this namespace (repeatable)",
    )  # fmt: skip
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve the whole cluster (default)"
    )
    p.add_argument("--peering", metavar="NAME", help="run highly available through kopf peering object NAME")
    p.add_argument("--priority", type=int, default=0, help="peering priority (highest serves)")
    p.add_argument("--http-host", default="0.0.0.0")
    p.add_argument("--http-port", type=int, default=8080, help="/livez, /readyz, /metrics")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        settings = OperatorSettings.from_env(os.environ)
    except ConfigError as e:
        log.error(str(e), extra={"event": "operator_config_error"})
        return 2
    options = RunOptions(
        namespaces=tuple(args.namespaces),
        peering=args.peering,
        priority=args.priority,
        http_host=args.http_host,
        http_port=args.http_port,
    )
    try:
        asyncio.run(run_operator(options, settings, OperatorMetrics()))
    except ConfigError as e:
        log.error(str(e), extra={"event": "operator_config_error"})
        return 2
    except KeyboardInterrupt:
        pass
    return 0


async def run_operator(
    options: RunOptions,
    settings: OperatorSettings,
    metrics: OperatorMetrics,
    *,
    kube: Kube | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run until `stop_flag` is set (or a signal stops kopf). Tests call this in-process."""
    kube = kube or Kube.from_environment()
    registry = kopf.OperatorRegistry()  # our own: handlers never leak between operators or tests
    register(registry, OperatorContext(settings=settings, kube=kube, metrics=metrics))
    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings)
    ready = ready_flag or asyncio.Event()
    stop = stop_flag or asyncio.Event()
    state: dict[str, asyncio.Task[None]] = {}
    # The health server starts first: kopf treats tasks born after it starts as its own.
    app = health.build_app(
        metrics, alive=lambda: "kopf" in state and not state["kopf"].done(), ready=ready.is_set
    )
    runner = await health.start(app, options.http_host, options.http_port)
    try:
        state["kopf"] = task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=kopf_settings,
                clusterwide=not options.namespaces,
                namespaces=options.namespaces,
                standalone=options.peering is None,
                peering_name=options.peering,
                priority=options.priority,
                stop_flag=stop,
                ready_flag=ready,
            )
        )
        log.info(
            "operator started",
            extra={
                "event": "operator_started",
                "namespaces": list(options.namespaces) or "*",
                "peering": options.peering,
            },
        )
        await task
    finally:
        await runner.cleanup()
        kube.close()
