"""What each import costs a bot process: RSS and USS added by importing one package, each in a fresh
interpreter that has already imported what every bot imports first (asyncio, msgspec, aiohttp).

    python -m bench.imports            # the table, then one machine-readable line
    python -m bench.imports --json

RSS counts shared library pages in full (they are shared between bots on a node); USS is what the
process alone holds. Packages a bot never needs are listed too, to show what the import diet keeps
out (`tests/perf/test_import_diet.py` holds a real bot to it). Each figure is the median of three
fresh interpreters. Last line:

    imports base_rss_mib=<x> aiohttp_rss_mib=<x> redis_rss_mib=<x> ccxt_rss_mib=<x> pymongo_rss_mib=<x> ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

# name -> the statement that imports it (ccxt: the way `tradefleet bot` does, Binance only).
CANDIDATES = {
    "aiohttp.web": "import aiohttp.web",
    "aiohttp low-level server": "import aiohttp.web_server, aiohttp.web_response",
    "prometheus_client": "import prometheus_client",
    "psutil": "import psutil",
    "sqlite3": "import sqlite3",
    "yaml": "import yaml",
    "redis": "import redis.asyncio",
    "ccxt": "from bench import ccxt_lean; ccxt_lean.install(); import ccxt.async_support",
    "pymongo": "import pymongo",
    "websockets": "import websockets.asyncio.client",
    "numpy": "import numpy",
    "pandas": "import pandas",
    "tradefleet_native": "import tradefleet_native",
}
BASE = ("asyncio", "asyncio (with ssl)"), ("msgspec", "msgspec"), ("aiohttp", "aiohttp (client)")

_PROBE = """
import json, sys, importlib
def mem():
    d = {}
    with open('/proc/self/smaps_rollup') as f:
        for line in f:
            p = line.split()
            if len(p) >= 2 and p[1].isdigit():
                d[p[0].rstrip(':')] = int(p[1]) / 1024
    return d['Rss'], d['Private_Clean'] + d['Private_Dirty']
out = {'start': mem()}
for name in sys.argv[1:-1]:
    importlib.import_module(name)
    out[name] = mem()
before = mem()
n0 = len(sys.modules)
try:
    exec(sys.argv[-1])
except ImportError as e:
    out['error'] = str(e)
after = mem()
out['last'] = [after[0] - before[0], after[1] - before[1], len(sys.modules) - n0]
print(json.dumps(out))
"""


def probe(base: list[str], statement: str) -> dict[str, object]:
    run = subprocess.run([sys.executable, "-c", _PROBE, *base, statement], capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"probe failed for {statement!r}: {run.stderr[-2000:]}")
    result: dict[str, object] = json.loads(run.stdout)
    return result


def median3(base: list[str], statement: str) -> tuple[float, float, int, str | None]:
    runs = [probe(base, statement) for _ in range(3)]
    last = [r["last"] for r in runs]
    rss = statistics.median(float(x[0]) for x in last)  # type: ignore[index]
    uss = statistics.median(float(x[1]) for x in last)  # type: ignore[index]
    return rss, uss, int(last[0][2]), runs[0].get("error")  # type: ignore[index,return-value]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows: list[tuple[str, float, float, int, str | None]] = []
    start = probe([], "pass")["start"]
    print(f"bare interpreter: rss {start[0]:.1f} MiB, uss {start[1]:.1f}")  # type: ignore[index]
    base: list[str] = []
    for module, label in BASE:
        rss, uss, n, err = median3(base, f"import {module}")
        rows.append((label, rss, uss, n, err))
        base.append(module)
    for label, statement in CANDIDATES.items():
        rows.append((label, *median3(base, statement)))
    print(f"{'import':28} {'+rss MiB':>9} {'+uss MiB':>9} {'modules':>8}")
    for label, rss, uss, n, err in rows:
        note = f"  (not installed: {err})" if err else ""
        print(f"{label:28} {rss:9.1f} {uss:9.1f} {n:8d}{note}")
    if args.json:
        print(
            json.dumps(
                {label: {"rss_mib": rss, "uss_mib": uss, "modules": n} for label, rss, uss, n, _ in rows}
            )
        )
    key = {"asyncio (with ssl)": "base", "aiohttp (client)": "aiohttp", "redis": "redis", "ccxt": "ccxt",
           "pymongo": "pymongo", "aiohttp.web": "aiohttp_web", "psutil": "psutil", "numpy": "numpy",
           "pandas": "pandas"}  # fmt: skip
    print(
        "imports "
        + " ".join(f"{key[label]}_rss_mib={rss:.1f}" for label, rss, _, _, _ in rows if label in key)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
