"""Stopping asyncio tasks so that a stop always ends.

`task.cancel(); with suppress(CancelledError): await task` has two flaws this module exists for:

- On Python 3.11 a cancellation can be swallowed: `asyncio.wait_for` returns the inner result when the
  inner awaitable finished at the moment the task was cancelled (fixed in 3.12; redis-py sends every
  command through `wait_for` when a socket timeout is set). A `while True` loop (the lease's renewal,
  the risk poll) then carries on as if nothing had happened, and `await task` never returns: a bot
  stopped just after it became ready once hung there for 30 s until it was killed.
- The `suppress` cannot tell the task's CancelledError from the caller's own: a caller cancelled while
  it waits has its cancellation swallowed too.

`stop_task` cancels again until the task has ended (the next `await` in its loop takes the repeated
request), never waits longer than its bound, names a task that did not end in the log, and lets the
caller's own cancellation through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from tradefleet.logs import log_event

log = logging.getLogger("tradefleet.tasks")

RECANCEL_S = 0.5
"""How often a task that has not ended yet is asked again (not sooner: a task's cleanup after the first
request, such as a final flush in a `finally`, should not be cut by the second)."""


async def stop_task(task: asyncio.Task[Any] | None, timeout_s: float = 5.0) -> bool:
    """Cancel `task` and wait until it has ended, at most `timeout_s`: True if it ended."""
    if task is None:
        return True
    return not await stop_tasks((task,), timeout_s)


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], timeout_s: float = 10.0) -> list[str]:
    """Cancel every task and wait until all have ended, at most `timeout_s`; the names of those that
    did not (logged as `task_not_ended`)."""
    tasks = [t for t in tasks if t is not asyncio.current_task()]
    pending = set(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        for t in pending:
            t.cancel()  # again: an earlier request may have been swallowed (see the module's doc)
        left = deadline - loop.time()
        if not pending or left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: an error it ended with is not reported again at exit
    stuck = sorted(_name(t) for t in pending)
    if stuck:
        log_event(log, "task_not_ended", logging.WARNING, tasks=stuck, waited_s=timeout_s)
    return stuck


def _name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return f"{task.get_name()} ({getattr(coro, '__qualname__', coro)})"
