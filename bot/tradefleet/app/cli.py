"""`tradefleet` console entry: one subcommand per process kind. Imports are lazy so `tradefleet sim`
does not load kopf and `tradefleet operator` does not load ccxt."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "bot": ("tradefleet.app.bot_main", "run one trading bot (config from --config and TRADEFLEET_*)"),
    "demo": ("tradefleet.app.demo", "simulator + bot on embedded defaults, live view in the terminal"),
    "backtest": ("tradefleet.app.backtest", "the live engine over candle history: statistics, HTML, sweeps"),
    "sim": ("tradefleet_sim.cli", "the Binance-compatible exchange simulator"),
    "operator": ("tradingbot_operator.cli", "the kopf operator that runs one bot per TradingBot"),
    "report": ("tradefleet.app.report", "render price, SMAs, signals and orders from a store to HTML"),
    "halt": ("tradefleet.app.risk_cli:halt_main", "kill switch: stop every bot of a scope (or one) now"),
    "resume": ("tradefleet.app.risk_cli:resume_main", "lift a halt set by `tradefleet halt`"),
    "health": ("tradefleet.app.health", "the images' HEALTHCHECK: is this container's process healthy?"),
}
# What each image installs (requirements/<image>.in): a command whose modules are not there fails
# with this, not with a traceback.
IMAGE_OF = {"operator": "tradefleet-operator"}


def usage() -> str:
    lines = ["usage: tradefleet COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`tradefleet COMMAND --help` for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"tradefleet: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, _, func = COMMANDS[name][0].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        image = IMAGE_OF.get(name, "tradefleet-bot")
        print(f"tradefleet {name}: {e.name} is not installed here; `{name}` runs in the {image} image"
              " (or `pip install tradefleet`)", file=sys.stderr)  # fmt: skip
        return 2
    result: int = getattr(module, func or "main")(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
