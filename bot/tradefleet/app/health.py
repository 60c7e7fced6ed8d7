"""`tradefleet health`: the images' HEALTHCHECK, asking the process the container runs the question
that fits it. One image runs `bot`, `sim` or `operator`, so a fixed probe cannot fit all three (it
used to ask the bot's /livez, and a simulator container was reported unhealthy for ever).

- bot: `GET /readyz`: can it trade (history loaded, book in sync, stream up, orders reconciled, lease
  leader or standby)? A bot that is alive but cannot trade is not healthy: that is the truth Docker
  and compose should show.
- sim: `GET /sim/state`: it answers and its market still moves (a kline replay that ended without
  `--loop` leaves bots a market with no candles to trade on).
- operator: `GET /livez` (readiness of an operator is kopf's business with the API server).

The process is PID 1's command line (`tradefleet CMD …`, as the images' ENTRYPOINT starts it); the
port is its `--http-port`/`--port`, else `TRADEFLEET_HTTP_PORT`, else the default. Standard library
only and no tradefleet imports beyond this module: it runs every few seconds in each container.
Exit 0 healthy, 1 not, with one line saying why (Docker keeps it in `docker inspect`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORTS = {"bot": 8080, "operator": 8080, "sim": 8765}

# --help's description, not `__doc__`: the bot image runs with PYTHONOPTIMIZE=2 (no docstrings).
SUMMARY = (
    "`tradefleet health`: the images' HEALTHCHECK, asking the process the container runs (bot, sim or"
    " operator) the question that fits it."
)


def process_of(argv: list[str]) -> tuple[str, int]:
    """(command, port) from a `tradefleet COMMAND …` command line."""
    words = [Path(argv[0]).name, *argv[1:]] if argv else []
    command = next((w for w in words if w in DEFAULT_PORTS), "bot")
    port: int | None = None
    for flag in ("--http-port", "--port"):
        for i, word in enumerate(words):
            if word == flag and i + 1 < len(words):
                port = int(words[i + 1])
            elif word.startswith(flag + "="):
                port = int(word.split("=", 1)[1])
    if port is None and command == "bot" and os.environ.get("TRADEFLEET_HTTP_PORT"):
        port = int(os.environ["TRADEFLEET_HTTP_PORT"])
    return command, port if port is not None else DEFAULT_PORTS[command]


def check(command: str, port: int, timeout: float = 4.0) -> tuple[bool, str]:
    base = f"http://127.0.0.1:{port}"
    path = {"bot": "/readyz", "operator": "/livez", "sim": "/sim/state"}[command]
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        return False, f"{command} {path}: HTTP {e.code} {e.read()[:300].decode(errors='replace')}"
    except OSError as e:
        return False, f"{command} {path}: {e}"
    if command != "sim":
        return True, f"{command} {path}: 200"
    klines = json.loads(body).get("klines")
    if klines and klines.get("replay_done"):
        return False, "sim: the kline replay has ended: no more candles (run it with --loop)"
    return True, "sim: answering, market moving"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tradefleet health", description=SUMMARY)
    p.add_argument("--process", choices=sorted(DEFAULT_PORTS), help="default: from PID 1's command line")
    p.add_argument("--port", type=int, help="default: from PID 1's command line")
    args = p.parse_args(argv)
    try:
        pid1 = Path("/proc/1/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        pid1 = []
    command, port = process_of(pid1)
    ok, why = check(args.process or command, args.port or port)
    print(why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
