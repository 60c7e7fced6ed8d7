"""A replica reduced to its lease: holds a RedisLease and "places an order" (prints a line) every
few milliseconds while it may trade. Tests pause it (SIGSTOP), kill it (SIGKILL) or let it run.

Output lines (flushed), `t` = time.monotonic() (one clock for every process on a Linux host) taken
BEFORE the check, so a check that began before a pause is never mistaken for one after it:
    state <leader|standby|unknown> <fencing_token>
    may <t> <fencing_token>          may_trade() said True
    order <t> <fencing_token>        may_trade() and confirm() said True

usage: python lease_holder.py REDIS_URL KEY HOLDER_ID TTL_MS RENEW_MS
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from tradefleet.coord.lease import RedisLease


async def main(url: str, key: str, holder: str, ttl_ms: int, renew_ms: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    lease: RedisLease | None = None

    def changed(state: str) -> None:
        token = lease.fencing_token if lease is not None else None
        print(f"state {state} {token}", flush=True)

    lease = RedisLease(url, key, holder, ttl_ms=ttl_ms, renew_ms=renew_ms, on_change=changed)
    await lease.start()
    while not stop.is_set():
        t = time.monotonic()
        if lease.may_trade():
            token = lease.fencing_token
            print(f"may {t:.6f} {token}", flush=True)
            if await lease.confirm():
                print(f"order {t:.6f} {token}", flush=True)
        await asyncio.sleep(0.01)
    await lease.stop()


if __name__ == "__main__":
    url, key, holder, ttl, renew = sys.argv[1:6]
    asyncio.run(main(url, key, holder, int(ttl), int(renew)))
