"""Why the hot close writes to the disk before a candle closes: an order's fsync after the disk sat
idle, against the same fsync right after a cadence of small writes, interleaved in one run.

    python -m bench.disk_warm                    # 60 of each, 100 ms apart
    python -m bench.disk_warm --n 100 --dir /var/lib/somewhere

Each sample waits `--gap-ms` (100) first, as a bot waits between candles, then:
- `fdatasync after idle`: one 4 KiB page written over a page of a preallocated file, then
  `fdatasync`, after the whole gap idle;
- `fdatasync after a warm-up`: the same, after the gap's last 20 ms spent writing and syncing another
  page of the same file every 2 ms;
- `commit after idle`: `SqliteStore.commit_order` (signal + PENDING order, `synchronous=FULL`, WAL,
  on the loop's thread as a bot's is) after the whole gap idle;
- `commit after rehearsals`: the same after the gap's last 20 ms spent in `rehearse_commit` every
  2 ms, which is what the hot close does (`engine.hot_close`: the order's rows rolled back, the
  WAL file's `fdatasync` on the store's thread with nothing written; until 2026-12-05 the health
  row's commit, which warmed the disk as well: 593 against 937 µs after idle then, 514 against 864
  with the flush alone).

Prints p50/p90/p99 in µs per row and one line `disk_warm …` with the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.commit_fsync import _order, _signal
from tradefleet import awake
from tradefleet.store import SqliteStore

PAGE = b"\x5a" * 4096
WARM_S = 0.020
EVERY_S = 0.002


async def _warm_file(fd: int, until: float) -> None:
    while time.perf_counter() < until:
        os.pwrite(fd, PAGE, 0)
        os.fdatasync(fd)
        await asyncio.sleep(EVERY_S)


async def run(n: int, gap_s: float, where: Path) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {k: [] for k in ROWS}
    path = where / "warm.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    os.posix_fallocate(fd, 0, 64 << 20)
    os.fsync(fd)
    store = SqliteStore(str(where / "warm.sqlite"))
    await store.open()
    try:
        for i in range(n):
            offset = (1 + i % 8000) * 4096
            for row in ROWS:
                warm = row.endswith(("warm-up", "rehearsals"))
                await asyncio.sleep(gap_s - WARM_S if warm else gap_s)
                signal = _signal(i * len(ROWS) + ROWS.index(row))
                order = _order(signal)
                if row.startswith("fdatasync"):
                    if warm:
                        await _warm_file(fd, time.perf_counter() + WARM_S)
                    t = time.perf_counter_ns()
                    os.pwrite(fd, PAGE, offset)
                    os.fdatasync(fd)
                else:
                    if warm:  # as the hot close does it: the loop held awake, a rehearsal every 2 ms
                        until = time.perf_counter() + WARM_S
                        awake.keep_awake(time.monotonic() + WARM_S)
                        while time.perf_counter() < until:
                            store.rehearse_commit(signal, order)
                            await asyncio.sleep(EVERY_S)
                        await store.warmed()  # the last warm-up flush (the close's quiet period)
                    t = time.perf_counter_ns()
                    assert await store.commit_order(signal, order)
                out[row].append(time.perf_counter_ns() - t)
    finally:
        await store.close()
        os.close(fd)
    return out


ROWS = ("fdatasync after idle", "fdatasync after a warm-up", "commit after idle", "commit after rehearsals")


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.disk_warm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="samples of each (default 60)")
    parser.add_argument("--gap-ms", type=float, default=100.0, help="idle before each sample (default 100)")
    parser.add_argument("--dir", default=None, help="where the files go (default: a temp dir)")
    args = parser.parse_args()
    if args.gap_ms / 1000 <= WARM_S:
        raise SystemExit(f"--gap-ms must be above {WARM_S * 1000:.0f} (the warm-up is the gap's end)")
    with tempfile.TemporaryDirectory(prefix="disk-warm-", dir=args.dir) as tmp:
        got = awake.run(run(args.n, args.gap_ms / 1000, Path(tmp)))
    print(f"{'µs':28} {'p50':>8} {'p90':>8} {'p99':>8}")
    for row in ROWS:
        v = got[row]
        print(f"{row:28} {statistics.median(v) / 1000:8.0f} {_pct(v, 0.9):8.0f} {_pct(v, 0.99):8.0f}")
    keys = ("idle", "warm", "commit_idle", "commit_rehearsed")
    pairs = zip(keys, ROWS, strict=True)
    medians = " ".join(f"{k}_p50_us={statistics.median(got[r]) / 1000:.0f}" for k, r in pairs)
    print(f"disk_warm {medians}")


if __name__ == "__main__":
    main()
