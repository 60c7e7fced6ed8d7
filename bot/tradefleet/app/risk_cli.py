"""`tradefleet halt` / `tradefleet resume`: the kill switch from a shell, for compose and bare processes.

    tradefleet halt --reason "exchange misbehaving"            # every bot of the scope, within a second
    tradefleet halt --bot btc-usdt --flatten --reason "manual"  # one bot, and close its position once
    tradefleet resume [--bot btc-usdt]
    tradefleet halt --file /var/lib/tradefleet/HALT            # a single process without Redis

With Redis (`--redis-url` or `REDIS_URL`) the halt is a field in `tradefleet:risk:<scope>:halts` that
every bot of the scope polls; without it, a JSON file the bot's `risk_halt_file` names. Each prints the
halt in force as one JSON line and exits 0; 2 for bad usage, 1 when the switch cannot be reached
(nothing was changed then: say it again).

A second `halt` of the same scope keeps the first (same id, so a flatten is never asked twice);
`resume` then `halt` again to change the reason or ask for a new flatten.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
import sys
from typing import Any

from tradefleet.coord.risk_state import LocalRiskState, RedisRiskState, halt_to_json, new_halt

# --help's description, not `__doc__`: the bot image runs with PYTHONOPTIMIZE=2 (no docstrings).
SUMMARY = (
    "`tradefleet halt` / `tradefleet resume`: the kill switch from a shell, for compose and bare processes."
)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _parser(prog: str, halting: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=SUMMARY)
    p.add_argument("--bot", help="one bot (TradingBot name); default: the whole scope")
    p.add_argument("--scope", default=os.environ.get("TRADEFLEET_RISK_SCOPE", "default"), help="risk_scope")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    p.add_argument("--file", help="the kill-switch file of a bot without Redis (its risk_halt_file)")
    p.add_argument("--by", default=_who(), help="who (recorded; default user@host)")
    if halting:
        p.add_argument("--reason", required=True, help="why (recorded, shown on every refused signal)")
        p.add_argument("--flatten", action="store_true", help="also close open positions, once each")
    return p


def _state(args: argparse.Namespace) -> Any:
    if args.file:
        return LocalRiskState(args.file)
    return RedisRiskState(args.redis_url, args.scope, timeout_s=5.0)


async def _halt(args: argparse.Namespace) -> dict[str, Any]:
    state = _state(args)
    try:
        h = await state.halt(new_halt(args.reason, args.by, bot=args.bot, flatten=args.flatten))
    finally:
        await state.close()
    result: dict[str, Any] = {"halted": json.loads(halt_to_json(h))}
    return result


async def _resume(args: argparse.Namespace) -> dict[str, Any]:
    state = _state(args)
    try:
        h = await state.resume(args.bot, args.by)
    finally:
        await state.close()
    return {"resumed": None if h is None else json.loads(halt_to_json(h))}


def _run(args: argparse.Namespace, halting: bool) -> int:
    if not (args.file or args.redis_url):
        print("tradefleet: give --redis-url (or REDIS_URL) or --file (a bot without Redis)", file=sys.stderr)
        return 2
    try:
        out = asyncio.run(_halt(args) if halting else _resume(args))
    except (OSError, ConnectionError, TimeoutError) as e:
        print(f"tradefleet: cannot reach the kill switch: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # redis errors: nothing was changed
        print(f"tradefleet: the kill switch did not answer: {e!r}", file=sys.stderr)
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0


def halt_main(argv: list[str]) -> int:
    return _run(_parser("tradefleet halt", True).parse_args(argv), True)


def resume_main(argv: list[str]) -> int:
    return _run(_parser("tradefleet resume", False).parse_args(argv), False)
