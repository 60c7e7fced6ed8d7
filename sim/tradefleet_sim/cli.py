"""`tradefleet sim`: run the exchange simulator until SIGINT/SIGTERM.

Prints exactly one line on stdout once it accepts connections:
    tradefleet-sim ready rest=http://127.0.0.1:8765 ws=ws://127.0.0.1:8765
and exits 0 on SIGINT/SIGTERM (2 for bad options, with the reason on stderr).

`--fault KIND[:key=value,...][@SECONDS]` (repeatable) schedules a fault, e.g.
`--fault gap:diffs=5@10` or `--fault fail_rest:status=429,count=2`; values parse as JSON numbers
or booleans when they can, strings otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from tradefleet_sim.clock import Clock, OffsetClock
from tradefleet_sim.exchange import SimExchange
from tradefleet_sim.options import SimOptions
from tradefleet_sim.server import SimServer
from tradefleet_sim.tls import self_signed

FAULT_HELP = """\
faults (--fault KIND[:key=value,...][@SECONDS], also POST /sim/faults with the same keys as JSON):
  drop                                  cut every websocket
  gap:diffs=N[,symbol=S]                apply N depth diffs without sending them
  malformed:count=N[,shape=...]         invalid_json | truncated | wrong_types | mixed
  stall:seconds=S                       websockets open and silent for S seconds
  slow_rest:delay_ms=MS[,count=N]       delay REST replies (all, or the next N)
  fail_rest:status=429|418|500|503,count=N[,retry_after=S]
  server_shutdown[:close_after=S]       send serverShutdown, close 1001 after S seconds
  clear                                 end stall/slow/fail/gap faults
example: tradefleet sim --port 8765 --fault gap:diffs=5@10 --fault-every 4
"""


def parse_fault(spec: str) -> tuple[float, dict[str, Any]]:
    """`gap:diffs=5@10` -> (10.0, {"kind": "gap", "diffs": 5})."""
    at = 0.0
    if "@" in spec:
        spec, when = spec.rsplit("@", 1)
        at = float(when)
    kind, _, rest = spec.partition(":")
    req: dict[str, Any] = {"kind": kind}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"fault option {item!r} must be key=value")
        try:
            req[key] = json.loads(value)
        except ValueError:
            req[key] = value
    return at, req


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tradefleet sim",
        description="Binance Spot-compatible exchange simulator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FAULT_HELP,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--symbols", default="BTCUSDT", help="comma-separated generated markets ('' for none)")
    p.add_argument(
        "--klines", default=None, help="candle CSV (default: real BTCUSDT daily); 'none' to disable"
    )
    p.add_argument("--kline-interval", default=None, help="serve the candles under this interval label")
    p.add_argument("--history", type=int, default=260, help="closed candles served before the replay")
    p.add_argument("--speed", type=float, default=200.0, help="replayed candles per second")
    p.add_argument(
        "--loop", action="store_true", help="after the last candle, replay mirrored then forwards, for ever"
    )
    p.add_argument("--progress-frames", type=int, default=2, help="x=false frames before each close")
    p.add_argument("--autostart", action="store_true", help="start replays now, not on first subscriber")
    p.add_argument(
        "--depth-rate", type=float, default=10.0, help="diffs/s per symbol; 0 = as fast as possible"
    )
    p.add_argument("--levels", type=int, default=1000, help="generated levels per side")
    p.add_argument("--replay-capture", default=None, help="2021-10-12 or 2021-08-14")
    p.add_argument("--capture-speed", type=float, default=1.0)
    p.add_argument("--fault-every", type=float, default=None, help="inject a random fault every S seconds")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[:k=v,...][@S]")
    p.add_argument("--ping-interval", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--relax-limits",
        action="store_true",
        help="count weights and orders, never answer 429/418 (default: enforce)",
    )
    p.add_argument(
        "--record-order-arrivals",
        action="store_true",
        help="keep each order request's arrival time (monotonic ns) for GET /sim/orders/arrivals",
    )
    p.add_argument(
        "--tls-port",
        type=int,
        default=None,
        help="also serve wss:// and https:// here (fresh self-signed cert)",
    )
    p.add_argument(
        "--clock-start",
        type=int,
        default=None,
        metavar="MS",
        help="run the exchange clock at real rate from this epoch ms (a testnet in the past)",
    )
    return p


def options_from(args: argparse.Namespace) -> tuple[SimOptions, list[tuple[float, dict[str, Any]]]]:
    faults = [parse_fault(s) for s in args.fault]
    klines: Path | None
    if args.klines is None:
        klines = SimOptions().klines
    elif args.klines.lower() == "none":
        klines = None
    else:
        klines = Path(args.klines)
        if not klines.exists():
            raise ValueError(f"--klines {klines}: no such file")
    opts = SimOptions(
        symbols=tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip()),
        klines=klines,
        kline_interval=args.kline_interval,
        history=args.history,
        speed=args.speed,
        loop=args.loop,
        progress_frames=args.progress_frames,
        autostart=args.autostart,
        depth_rate=args.depth_rate,
        levels_per_side=args.levels,
        replay_capture=args.replay_capture,
        capture_speed=args.capture_speed,
        fault_every=args.fault_every,
        ping_interval=args.ping_interval,
        seed=args.seed,
        enforce_limits=not args.relax_limits,
        record_arrivals=args.record_order_arrivals,
        startup_faults=tuple(req for at, req in faults if at <= 0),
    )
    return opts, [(at, req) for at, req in faults if at > 0]


async def serve(
    opts: SimOptions,
    host: str,
    port: int,
    later: list[tuple[float, dict[str, Any]]],
    *,
    clock: Clock | None = None,
    tls_port: int | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    exchange = SimExchange(opts, clock=clock)
    with tempfile.TemporaryDirectory(prefix="tradefleet-sim-tls-") as tmp:
        tls = self_signed(Path(tmp), host) if tls_port is not None else None
        async with SimServer(exchange, host=host, port=port, tls=tls, tls_port=tls_port or 0) as sim:
            for at, req in later:
                exchange.faults.validate(req)
                loop.call_later(at, exchange.faults.apply, req)
            extra = f" wss={sim.wss_url} cert={tls.cert}" if tls is not None else ""
            print(f"tradefleet-sim ready rest={sim.rest_url} ws={sim.ws_url}{extra}", flush=True)
            await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        opts, later = options_from(args)
        # Fail on a bad fault spec before binding the port (startup faults fail in SimExchange).
        probe = SimExchange(opts)
        for _, req in later:
            probe.faults.validate(req)
        clock = OffsetClock(args.clock_start) if args.clock_start is not None else None
        asyncio.run(serve(opts, args.host, args.port, later, clock=clock, tls_port=args.tls_port))
    except (ValueError, OSError) as e:
        print(f"tradefleet sim: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
